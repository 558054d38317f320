"""Many seeds in one compiled program, spread over every device of a host or a pod.

A seed axis is a leading axis on every leaf of the TrainState; `update_step` runs under
`jax.vmap` over it, and the axis is sharded over a 1-D `jax.sharding.Mesh` of all devices, so
each device advances its own seeds with no communication. The offline data is replicated.

Several hosts (a TPU pod, or processes joined by JAX_COORDINATOR_ADDRESS): every process trains
its own contiguous block of the seeds on its local devices with no cross-host traffic in the
update step; the hosts meet only to agree (errors, SIGTERM), to gather per-seed metrics for the
logs, and to gather the state into one checkpoint that process 0 writes. That checkpoint has the
same layout as a single-host run with the same num_seeds, so either can resume the other.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

SEED_AXIS = "seeds"


def maybe_initialize_multihost() -> None:
    """Join a multi-process job before any device use; on one host (neither variable set) a no-op.

    JAX_COORDINATOR_ADDRESS (host:port of process 0) with JAX_NUM_PROCESSES and JAX_PROCESS_ID
    joins explicitly (any cluster, or several processes on one machine); AMPL_MULTIHOST=1 lets
    `jax.distributed.initialize()` find the job itself (every worker of a Cloud TPU pod slice,
    SLURM). Nothing is inferred otherwise, so independent runs on the hosts of a slice (the
    sweep launcher's sharded mode) never join by accident.
    """
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    elif os.environ.get("AMPL_MULTIHOST", "") == "1":
        jax.distributed.initialize()


def is_main_process() -> bool:
    """Only process 0 writes shared logs and checkpoints."""
    return jax.process_index() == 0


def process_seeds(seed: int, num_seeds: int) -> list[int]:
    """This process's block of the run's seeds seed, seed+1, ..., seed+num_seeds-1."""
    count, index = jax.process_count(), jax.process_index()
    if num_seeds % count:
        raise ValueError(f"num_seeds={num_seeds} does not divide over {count} processes: "
                         f"use a multiple of {count} (each host trains num_seeds / {count} seeds)")
    n = num_seeds // count
    return [seed + index * n + i for i in range(n)]


class ProcessFailed(RuntimeError):
    """Another process of a multi-process job failed; the message says which and why."""


def gather_json(obj: Any) -> list[Any]:
    """Every process's JSON-serialisable `obj`, in process order (no communication on one process)."""
    if jax.process_count() == 1:
        return [obj]
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.asarray([data.size], np.int64))).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
    return [json.loads(rows[i, :sizes[i]].tobytes().decode()) for i in range(len(sizes))]


def agree(fn: Callable[[], Any]) -> Any:
    """Run fn() on every process; if it raised on any, raise on all (so none waits on the others).

    The process that failed re-raises its own exception; the others raise ProcessFailed naming it.
    """
    if jax.process_count() == 1:
        return fn()
    result, error, message = None, None, None
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 - re-raised below, after the others have heard of it
        error, message = e, f"{type(e).__name__}: {e}"
    messages = gather_json(message)
    if error is not None:
        raise error
    for index, m in enumerate(messages):
        if m is not None:
            raise ProcessFailed(f"process {index} failed: {m}")
    return result


def gather_seeds(tree: Any) -> Any:
    """Every process's seed-stacked tree -> the whole run's (numpy), seeds in process order."""
    tree = jax.device_get(tree)
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(np.asarray(x), tiled=True)), tree)


def broadcast_from_main(tree: Any) -> Any:
    """Process 0's `tree` on every process (others pass any tree of the same shapes)."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(jax.device_get(tree)))


def seed_mesh(num_seeds: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over the local devices that the seeds divide evenly (all of them when possible)."""
    devices = list(jax.local_devices() if devices is None else devices)
    n = len(devices)
    while num_seeds % n:
        n -= 1
    return Mesh(np.asarray(devices[:n]), (SEED_AXIS,))


def stack_seeds(trees: Sequence[Any]) -> Any:
    """[tree_seed0, tree_seed1, ...] -> one tree with a leading seed axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack_seed(tree: Any, i: int) -> Any:
    """Seed i's slice of a seed-stacked tree."""
    return jax.tree.map(lambda x: x[i], tree)


def shard_seeds(tree: Any, mesh: Mesh) -> Any:
    """Place a seed-stacked tree with its leading axis split over the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P(SEED_AXIS)))


def replicate(tree: Any, mesh: Mesh) -> Any:
    return jax.device_put(tree, NamedSharding(mesh, P()))


def make_seeded_step(step_fn: Callable, mesh: Mesh | None = None) -> Callable:
    """jit(vmap(step_fn)) over the seed axis of the state; data shared by every seed.

    With a mesh, the state (and the outputs) are sharded along the seed axis, so every device
    runs its own seeds of the same program.
    """
    vstep = jax.vmap(step_fn, in_axes=(0, None))
    if mesh is None:
        return jax.jit(vstep, donate_argnums=0)
    seeds, rep = NamedSharding(mesh, P(SEED_AXIS)), NamedSharding(mesh, P())
    return jax.jit(vstep, in_shardings=(seeds, rep), out_shardings=(seeds, seeds), donate_argnums=0)
