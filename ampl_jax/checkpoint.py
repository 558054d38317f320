"""Orbax checkpoints of a run: the whole TrainState plus a JSON sidecar, kept in workdir/checkpoints.

Each checkpoint `checkpoints/<step>/` holds two items: `state` (every array of the TrainState:
params, optimiser states, targets, world model, model buffer, counters, PRNG key) and `extra`
(the resolved config, the metric sums pending since the last CSV row, the last evaluation, and a
SHA-256 fingerprint of the state). Orbax writes into a temporary directory and renames it when
complete, so a kill mid-save leaves the previous checkpoints untouched. The fingerprint catches
what orbax cannot: bytes that still parse but changed on disk. A checkpoint that fails to load
is skipped for the next older one and, once one loads, moved to `checkpoints.corrupt/` (never
deleted).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from typing import Any, Callable

import jax
import numpy as np

CKPT_DIR = "checkpoints"
CORRUPT_DIR = "checkpoints.corrupt"
FIT_DIR = "model_fit_checkpoint"  # the first model fit's progress (world_model.fit.FitCheckpoint)


class CheckpointError(RuntimeError):
    """No checkpoint of a run can be loaded; the message says where and what to do."""


def leaf_name(path: tuple) -> str:
    """'actor/params/MLP_0/Dense_0/kernel' for a key path: the same for a TrainState and its saved dict."""
    parts = []
    for k in path:
        for attr in ("name", "key", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def named_leaves(tree: Any) -> list[tuple[str, Any]]:
    """(name, leaf) pairs sorted by name, so trees of different container types line up."""
    pairs = jax.tree_util.tree_flatten_with_path(tree)[0]
    return sorted(((leaf_name(p), x) for p, x in pairs), key=lambda t: t[0])


def fingerprint(tree: Any) -> str:
    """SHA-256 over every leaf's name, dtype, shape and bytes (order-independent of containers)."""
    h = hashlib.sha256()
    for name, x in named_leaves(jax.device_get(tree)):
        a = np.ascontiguousarray(np.asarray(x))
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def abstract_like(tree: Any) -> Any:
    """Restore target: shapes and dtypes of `tree` (arrays or ShapeDtypeStructs) on the default device."""
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def _ocp():
    import orbax.checkpoint as ocp  # imported lazily: it is slow to import and only needed here

    return ocp


class Checkpoints:
    """A synchronous orbax CheckpointManager for (TrainState, extra) keeping the newest `keep`.

    Saves are synchronous on purpose: the next `update_step` donates the state's buffers, and a
    save that returned has committed (renamed its temporary directory) before training goes on.
    In a multi-process job only process 0 makes one (orbax's active_processes={0}): the caller
    gathers the whole state to it first (distributed.gather_seeds).
    """

    def __init__(self, workdir: str, keep: int, subdir: str = CKPT_DIR, keep_steps: tuple[int, ...] = ()):
        ocp = _ocp()
        self.workdir = workdir
        self.directory = os.path.abspath(os.path.join(workdir, subdir))
        self._keep = keep
        multiprocessing = {}
        if jax.process_count() > 1:  # orbax cannot create the directory itself for a subset of processes
            os.makedirs(self.directory, exist_ok=True)
            multiprocessing["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
                primary_host=0, active_processes={0})
        if keep_steps:  # the newest `keep` and these steps (e.g. the ones a diagnosis reads later)
            policies = ocp.checkpoint_managers
            kept = {"preservation_policy": policies.AnyPreservationPolicy(
                [policies.LatestN(keep), policies.CustomSteps(sorted(int(s) for s in keep_steps))])}
        else:
            kept = {"max_to_keep": keep}
        options = ocp.CheckpointManagerOptions(
            create=not multiprocessing, enable_async_checkpointing=False, cleanup_tmp_directories=True,
            **kept, **multiprocessing,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, extra: dict[str, Any]) -> None:
        """Write checkpoint `step` (state + extra with its fingerprint); the oldest beyond `keep` go."""
        ocp = _ocp()
        extra = {**extra, "step": int(step), "fingerprint": fingerprint(state)}
        self._manager.save(
            int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra))
        )
        self._manager.wait_until_finished()

    def restore(self, step: int, target: Any) -> tuple[Any, dict[str, Any]]:
        """Load checkpoint `step` into the structure of `target`; raises if unreadable or altered."""
        ocp = _ocp()
        out = self._manager.restore(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_like(target)), extra=ocp.args.JsonRestore()),
        )
        state, extra = out.state, dict(out.extra)
        if extra.get("fingerprint") != fingerprint(state):
            raise CheckpointError(f"checkpoint {step}: its contents do not match the fingerprint saved with it")
        return state, extra

    def restore_latest(
        self, target: Any, warn: Callable[[str], None] | None = None
    ) -> tuple[int, Any, dict[str, Any]] | None:
        """Newest loadable checkpoint as (step, state, extra), or None when there is none.

        Unreadable newer checkpoints are then moved to workdir/checkpoints.corrupt (so their steps
        can be saved again), with one warning line each. If none loads, CheckpointError, and
        nothing is moved.
        """
        warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr, flush=True))
        steps = self.steps()
        failed: list[tuple[int, str]] = []
        for step in reversed(steps):
            try:
                state, extra = self.restore(step, target)
            except Exception as e:  # orbax/tensorstore/json raise many kinds; all mean "unreadable"
                failed.append((step, _first_line(e)))
                continue
            for bad, why in failed:
                moved = self._quarantine(bad)
                warn(f"checkpoint at step {bad} is unreadable ({why}); moved it to {moved}; "
                     f"resuming from step {step}")
            return step, state, extra
        if failed:
            raise CheckpointError(
                f"no checkpoint in {self.directory} can be loaded (step {failed[0][0]}: {failed[0][1]}); "
                "re-run with --overwrite to start afresh"
            )
        return None

    def _quarantine(self, step: int) -> str:
        """Move checkpoint `step` out of the manager's directory (kept for inspection), then rescan."""
        src = os.path.join(self.directory, str(step))
        dst_dir = os.path.join(self.workdir, CORRUPT_DIR)
        os.makedirs(dst_dir, exist_ok=True)
        dst = os.path.join(dst_dir, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        if os.path.exists(src):
            shutil.move(src, dst)
        self._manager.reload()
        return dst

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__


def read_extra(workdir: str, step: int | None = None, subdir: str = CKPT_DIR) -> dict[str, Any] | None:
    """The JSON sidecar of checkpoint `step` (default newest) without touching the arrays; None if absent."""
    import json

    directory = os.path.join(workdir, subdir)
    steps = list_steps(workdir, subdir)
    if not steps:
        return None
    step = steps[-1] if step is None else step
    for name in ("metadata", "extra"):  # orbax stores a JsonSave item as <item>/metadata
        path = os.path.join(directory, str(step), "extra", name)
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    return json.load(f)
            except (OSError, ValueError):
                return None
    return None


def list_steps(workdir: str, subdir: str = CKPT_DIR) -> list[int]:
    """Committed checkpoint steps in workdir (directories named by an integer), ascending."""
    directory = os.path.join(workdir, subdir)
    if not os.path.isdir(directory):
        return []
    return sorted(int(n) for n in os.listdir(directory) if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def load_tree(workdir: str, step: int | None = None) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """(step, state as nested dicts of numpy arrays, extra) without a target: for comparisons and tools."""
    ocp = _ocp()
    steps = list_steps(workdir)
    if not steps:
        raise CheckpointError(f"no checkpoint in {os.path.join(workdir, CKPT_DIR)}")
    step = steps[-1] if step is None else int(step)
    directory = os.path.abspath(os.path.join(workdir, CKPT_DIR))
    with ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=False)) as m:
        out = m.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), extra=ocp.args.JsonRestore()))
    return step, jax.device_get(out.state), dict(out.extra)
