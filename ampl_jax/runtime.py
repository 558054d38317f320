"""Where a run's seeds live: which process trains which seeds, on which devices, and how they agree.

A run trains seeds config.seed + i for i < num_seeds. Each seed's keys are those of a run with
that seed alone; with several seeds the state gets a leading seed axis (a vmapped step, the axis
sharded over the local devices), and process p of P trains seeds p*n .. p*n+n-1 (n = num_seeds/P).
Everything the host loop needs to know about that layout sits here, so the loop itself reads the
same for one seed on a laptop and many seeds over many hosts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from ampl_jax import distributed


def seed_keys(seed: int) -> jax.Array:
    """A seed's [4] root keys: model init, first fit, train state, evaluation."""
    return jax.random.split(jax.random.PRNGKey(seed), 4)


def eval_keys(seed: int, step: int) -> tuple[jax.Array, jax.Array]:
    """Seed `seed`'s evaluation keys at `step`: (actions, diagnostics), two independent streams.

    Derived from (seed, step) alone, never carried: a resumed run draws the same, and the lab's
    tools (eval_rules) replay a logged evaluation exactly. Call t of the policy uses
    fold_in(actions, t), so no action call shares the diagnostics' key.
    """
    return tuple(jax.random.split(jax.random.fold_in(seed_keys(seed)[3], step)))


@dataclasses.dataclass(frozen=True, eq=False)
class SeedRuntime:
    all_seeds: tuple[int, ...]  # every seed of the run, in order
    seeds: tuple[int, ...]  # this process's seeds
    all_keys: tuple[jax.Array, ...]  # per seed of the run: [4] keys (model init, first fit, state, evaluation)
    mesh: Any  # the seed mesh when stacked, else None
    multi: bool  # more than one process
    is_main: bool  # process 0: the one that writes files

    @classmethod
    def from_config(cls, base_seed: int, num_seeds: int) -> SeedRuntime:
        all_seeds = tuple(base_seed + i for i in range(num_seeds))
        seeds = tuple(distributed.agree(lambda: distributed.process_seeds(base_seed, num_seeds)))
        keys = tuple(seed_keys(s) for s in all_seeds)
        mesh = distributed.seed_mesh(len(seeds)) if num_seeds > 1 else None
        return cls(all_seeds, seeds, keys, mesh, jax.process_count() > 1, distributed.is_main_process())

    @property
    def stacked(self) -> bool:
        """Several seeds: the state carries a leading seed axis."""
        return len(self.all_seeds) > 1

    @property
    def local(self) -> slice:
        """This process's seeds within the run's seed order."""
        lo = self.seeds[0] - self.all_seeds[0]
        return slice(lo, lo + len(self.seeds))

    @property
    def keys(self) -> tuple[jax.Array, ...]:
        """This process's seeds' keys."""
        return self.all_keys[self.local]

    def eval_keys(self, i: int, step: int) -> tuple[jax.Array, jax.Array]:
        """Local seed i's evaluation keys at `step` (actions, diagnostics): `eval_keys` of its seed."""
        return eval_keys(self.seeds[i], step)

    # --- agreement across processes -------------------------------------------------------

    def agree(self, fn: Callable[[], Any]) -> Any:
        """fn() on every process; an error on any raises on all."""
        return distributed.agree(fn)

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """fn() on process 0 only (None elsewhere), errors shared with every process."""
        return distributed.agree(lambda: fn() if self.is_main else None)

    def gathered(self, local: list) -> list:
        """Per-seed values of every process, in seed order."""
        return [x for block in distributed.gather_json(local) for x in block]

    def first_of_any(self, values: Sequence[Any]) -> list[Any]:
        """Per position, the first non-empty value over all processes (e.g. an error, a signal)."""
        if not self.multi:
            return list(values)
        rows = distributed.gather_json(list(values))
        return [next((row[j] for row in rows if row[j]), None) for j in range(len(values))]

    # --- the seed axis ----------------------------------------------------------------------

    def stack(self, per_seed: Sequence[Any], place: bool = True) -> Any:
        """Per-seed trees -> the state the step takes (seed-stacked when the run has several seeds)."""
        if not self.stacked:
            return per_seed[0]
        stacked = distributed.stack_seeds(per_seed)
        return self.place(stacked) if place else stacked

    def place(self, state: Any) -> Any:
        return state if self.mesh is None else distributed.shard_seeds(state, self.mesh)

    def seed_view(self, state: Any, i: int) -> Any:
        """Local seed i's slice of the state."""
        return distributed.unstack_seed(state, i) if self.stacked else state

    def per_seed(self, values: Any) -> list[Any]:
        """A metric leaf (scalar, or [seeds]) -> one float per local seed."""
        flat = np.asarray(values).reshape(-1)
        return [float(flat[i]) for i in range(len(self.seeds))]

    def step_of(self, state: Any) -> int:
        """The iteration counter (every seed's is the same)."""
        return int(np.asarray(jax.device_get(state.step)).reshape(-1)[0])

    def compile(self, pure_step: Callable, data: Any) -> tuple[Callable, Any]:
        """(jitted step, data as it must be passed): the plain step for one seed, vmapped over seeds else."""
        if not self.stacked:
            return jax.jit(pure_step, donate_argnums=0), data
        return distributed.make_seeded_step(pure_step, self.mesh), distributed.replicate(data, self.mesh)

    def whole(self, state: Any) -> Any:
        """The run's whole state (every process's seeds), for process 0 to save."""
        return distributed.gather_seeds(state) if self.multi else state

    def share_restored(self, restored: tuple | None, target: Any) -> tuple | None:
        """Process 0's restored (step, whole state, extra) -> every process's (step, its seeds' state, extra)."""
        if not self.multi:
            return restored
        head = distributed.gather_json(None if restored is None else [restored[0], restored[2]])[0]
        if head is None:
            return None
        full = distributed.broadcast_from_main(
            restored[1] if self.is_main else jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), target))
        return head[0], jax.tree.map(lambda x: x[self.local], full), head[1]
