"""Shipped behaviour-policy snapshots: actor parameters (msgpack) + a JSON sidecar, per env id.

Layout: ampl_jax/behaviour/snapshots/<env id>/<name>.msgpack and <name>.json, with name in
{"medium", "expert"}, and optionally medium_replay.npz (the SAC replay buffer up to the medium
snapshot). Parameters are stored as a plain msgpack state dict, so loading needs no template
and no JAX: the dataset generator runs the actor in NumPy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization

from ampl_jax.behaviour.sac import actor_layers

SNAPSHOT_DIR = Path(__file__).resolve().parent / "snapshots"
SNAPSHOT_NAMES: tuple[str, ...] = ("medium", "expert")


class SnapshotError(ValueError):
    """A snapshot that is not shipped (or unreadable); the message says which ones exist."""


class Snapshot:
    """A loaded actor: NumPy layers, the action box, and the sidecar metadata."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], meta: dict[str, Any]):
        self.layers = layers
        self.meta = meta
        self.low = np.asarray(meta["action_low"], np.float32)
        self.high = np.asarray(meta["action_high"], np.float32)

    @property
    def return_mean(self) -> float:
        """Mean return of the snapshot's stochastic policy (the behaviour that makes datasets)."""
        return float(self.meta["stochastic_return_mean"])


def snapshot_dir(env_id: str, root: Path | None = None) -> Path:
    return (root or SNAPSHOT_DIR) / env_id


def available_snapshots(root: Path | None = None) -> dict[str, list[str]]:
    """{env id: [snapshot names]} of everything shipped under `root`."""
    root = root or SNAPSHOT_DIR
    if not root.exists():
        return {}
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        names = [n for n in SNAPSHOT_NAMES if (d / f"{n}.msgpack").exists()]
        if names:
            out[d.name] = names
    return out


def save_snapshot(
    directory: Path, name: str, actor_params: Any, meta: dict[str, Any]
) -> tuple[Path, Path]:
    """Write <name>.msgpack (actor state dict) and <name>.json (meta) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    state = serialization.to_state_dict(actor_params)
    state = _to_numpy(state)
    params_file = directory / f"{name}.msgpack"
    params_file.write_bytes(serialization.msgpack_serialize(state))
    meta_file = directory / f"{name}.json"
    meta_file.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return params_file, meta_file


def _to_numpy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return np.asarray(tree, np.float32)


def load_snapshot(env_id: str, name: str, root: Path | None = None) -> Snapshot:
    """The shipped snapshot `name` of `env_id`; SnapshotError naming what exists otherwise."""
    d = snapshot_dir(env_id, root)
    params_file, meta_file = d / f"{name}.msgpack", d / f"{name}.json"
    if not (params_file.exists() and meta_file.exists()):
        shipped = available_snapshots(root)
        listing = ", ".join(f"{e}: {'/'.join(n)}" for e, n in shipped.items()) or "none"
        raise SnapshotError(
            f"no '{name}' behaviour policy is shipped for {env_id} (shipped: {listing}); train one "
            f"with `python -m ampl_jax.behaviour.train_sac --env={env_id}`"
        )
    try:
        state = serialization.msgpack_restore(params_file.read_bytes())
        meta = json.loads(meta_file.read_text())
    except Exception as e:  # msgpack/json raise many kinds; the fix is the same
        raise SnapshotError(f"snapshot {params_file} is unreadable ({type(e).__name__}: {e})") from None
    return Snapshot(actor_layers(state), meta)


def medium_replay_path(env_id: str, root: Path | None = None) -> Path:
    return snapshot_dir(env_id, root) / "medium_replay.npz"


def save_replay(path: Path, episodes: dict[str, np.ndarray]) -> None:
    """Compressed npz of a replay buffer in episode layout (see `replay_episodes`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **episodes)


def load_replay(env_id: str, root: Path | None = None) -> dict[str, np.ndarray]:
    """The shipped medium-replay buffer: observations (N + E rows: each episode's states and its
    last next state), actions, rewards, terminations, truncations (N rows), lengths (E)."""
    path = medium_replay_path(env_id, root)
    if not path.exists():
        raise SnapshotError(
            f"no medium-replay buffer is shipped for {env_id} ({path}); regenerate it with "
            f"`python -m ampl_jax.behaviour.train_sac --env={env_id}` (see README)"
        )
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
