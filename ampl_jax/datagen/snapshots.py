"""Shipped behaviour-policy snapshots: actor parameters (msgpack) + a JSON sidecar, per env id.

Layout: ampl_jax/datagen/snapshots/<env id>/<name>.msgpack and <name>.json, with name in
{"medium", "expert"}, and the SAC replay buffer up to the medium snapshot: either shipped as
medium_replay.npz (short runs) or, when it would be tens of MB, regenerated from the run's committed
mirror (`medium.json`'s `replay_mirror`, by re-simulating the stored actions; see mirror.py) and
cached in ~/.cache/ampl_jax/replay. Parameters are stored as a plain msgpack state dict, so loading needs no template
and no JAX: the dataset generator runs the actor in NumPy.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization

from ampl_jax.datagen.sac import actor_layers

SNAPSHOT_DIR = Path(__file__).resolve().parent / "snapshots"
# Where the SAC runs' mirrors live (medium.json's `replay_mirror` names a folder in it): an input,
# $AMPL_SAC_STATE, defaulting to a clone's assets/sac-state (112 MB, not part of the package).
SAC_STATE_ENV = "AMPL_SAC_STATE"
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
            f"with `python -m ampl_jax.datagen.train_sac --env={env_id}`"
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
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")  # atomic: a reader never sees half a file
    np.savez_compressed(tmp, **episodes)
    tmp.replace(path)


def replay_digest(episodes: dict[str, np.ndarray]) -> str:
    """SHA-256 of a replay in episode layout, recorded at shipping to check a regenerated one."""
    h = hashlib.sha256()
    for k in sorted(episodes):
        a = np.ascontiguousarray(episodes[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def sac_state_root() -> Path:
    """The folder of the SAC runs' mirrors: $AMPL_SAC_STATE, else assets/sac-state of the clone this
    package is installed from (pip install -e .)."""
    root = os.environ.get(SAC_STATE_ENV)
    return Path(root) if root else Path(__file__).resolve().parents[2] / "assets" / "sac-state"


def replay_cache_dir() -> Path:
    root = os.environ.get("AMPL_REPLAY_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ampl_jax", "replay")
    return Path(root)


def load_replay(env_id: str, root: Path | None = None) -> dict[str, np.ndarray]:
    """The medium-replay buffer: observations (N + E rows: each episode's states and its last
    next state), actions, rewards, terminations, truncations (N rows), lengths (E).

    The shipped medium_replay.npz if there is one; else the buffer is rebuilt from the mirror that
    medium.json names (about a minute per 300k steps, then cached) and checked against the digest
    recorded when the snapshot was shipped: a different MuJoCo build may differ in the last bits,
    which is warned about, not fatal.
    """
    path = medium_replay_path(env_id, root)
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    meta_file = snapshot_dir(env_id, root) / "medium.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    if "replay_mirror" not in meta:
        raise SnapshotError(
            f"no medium-replay buffer is shipped for {env_id} ({path}); regenerate it with "
            f"`python -m ampl_jax.datagen.train_sac --env={env_id}` (see README)"
        )
    mirror = sac_state_root() / meta["replay_mirror"]
    n, digest = int(meta["replay_transitions"]), meta["replay_sha256"]
    cached = replay_cache_dir() / f"{env_id}-{digest[:16]}.npz"
    if cached.exists():
        with np.load(cached) as z:
            return {k: z[k] for k in z.files}
    if not mirror.exists():
        raise SnapshotError(
            f"the medium-replay buffer of {env_id} is regenerated from the SAC run's mirror {mirror}, which "
            f"is not here: set ${SAC_STATE_ENV} to the folder that holds {meta['replay_mirror']} (a clone's "
            "assets/sac-state), or install from a clone of the repository (pip install -e .)"
        )
    from ampl_jax.datagen.mirror import MirrorError, replay_prefix

    try:
        replay, inexact = replay_prefix(mirror, n)
    except MirrorError as e:
        raise SnapshotError(f"cannot regenerate the medium-replay buffer of {env_id}: {e}") from None
    episodes = replay.episodes(n, np.asarray(meta["action_low"], np.float32), np.asarray(meta["action_high"], np.float32))
    if replay_digest(episodes) != digest:
        warnings.warn(
            f"the regenerated medium-replay buffer of {env_id} differs in its bits from the one the snapshot was "
            f"shipped with (chunks {inexact} re-simulate differently: another MuJoCo build?); using it as regenerated"
        )
    else:  # cache only an exact copy, so the cache never outlives a mismatch
        save_replay(cached, episodes)
    return episodes
