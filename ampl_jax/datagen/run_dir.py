"""Where a resumable SAC run keeps its state: the replay buffer in host memory and the run folder.

Split from train_sac so that the trainer reads as a loop: the replay buffer keeps insertion order
(its prefix up to any step is the medium-replay dataset of that step) and the run folder writes
everything atomically, so a kill at any moment resumes bit-identically from the newest checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ampl_jax.datagen.sac import Batch, to_env_action


class HostReplay:
    """Replay buffer in host NumPy arrays, in insertion order (never overwritten: capacity = budget).

    Insertion order is kept so that the prefix up to any step is the replay buffer "as of then".
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.act = np.zeros((capacity, act_dim), np.float32)  # tanh space [-1, 1]
        self.rew = np.zeros((capacity,), np.float32)
        self.term = np.zeros((capacity,), np.float32)
        self.trunc = np.zeros((capacity,), np.float32)
        self.size = 0

    def add(self, obs, act, rew, next_obs, terminated, truncated) -> None:
        i = self.size
        self.obs[i], self.act[i], self.rew[i], self.next_obs[i] = obs, act, rew, next_obs
        self.term[i], self.trunc[i] = terminated, truncated
        self.size += 1

    def sample(self, rng: np.random.Generator, shape: tuple[int, int]) -> Batch:
        idx = rng.integers(0, self.size, shape)
        return Batch(self.obs[idx], self.act[idx], self.rew[idx], self.next_obs[idx], self.term[idx])

    def episodes(self, n: int, low: np.ndarray, high: np.ndarray) -> dict[str, np.ndarray]:
        """The first n transitions in episode layout (env-space actions); the cut one is truncated.

        observations holds, per episode, its states and then its final next state (N + E rows),
        as Minari stores them; lengths gives the episode lengths.
        """
        ends = np.flatnonzero((self.term[:n] + self.trunc[:n]) > 0)
        if len(ends) == 0 or ends[-1] != n - 1:
            ends = np.append(ends, n - 1)
        starts = np.concatenate([[0], ends[:-1] + 1])
        obs = [np.concatenate([self.obs[s : e + 1], self.next_obs[e : e + 1]]) for s, e in zip(starts, ends)]
        trunc = self.trunc[:n].copy()
        trunc[n - 1] = 0.0 if self.term[n - 1] else 1.0
        return {
            "observations": np.concatenate(obs),
            "actions": to_env_action(self.act[:n], low, high),
            "rewards": self.rew[:n].copy(),
            "terminations": self.term[:n].astype(bool),
            "truncations": trunc.astype(bool),
            "lengths": (ends - starts + 1).astype(np.int64),
        }


class RunDir:
    """A resumable SAC run on disk: orbax checkpoints of the learner, replay chunks, eval snapshots.

    Layout: `run.json` (what may not change on resume), `checkpoints/<t>/` (orbax: the SACState
    and a JSON sidecar with the NumPy generators' states, the evaluations and wall time so far),
    `replay/<t>.npz` (the rows added since the previous checkpoint, written before it, so a
    checkpoint at t always has every row below t on disk) and `evals/<t>.msgpack` (the actor at
    each periodic evaluation, from which snapshots are chosen at the end). Every file is written
    to a temporary name and renamed, so a kill at any point leaves the newest complete checkpoint.
    """

    def __init__(self, path: str | Path, settings: dict[str, Any]):
        settings = json.loads(json.dumps(settings))  # tuples -> lists, as they read back
        self.path = Path(path)
        (self.path / "replay").mkdir(parents=True, exist_ok=True)
        (self.path / "evals").mkdir(parents=True, exist_ok=True)
        run_file = self.path / "run.json"
        if run_file.exists():
            old = json.loads(run_file.read_text())
            diff = {k: (old.get(k), v) for k, v in settings.items() if k != "steps" and old.get(k) != v}
            if diff:
                k, (a, b) = next(iter(diff.items()))
                raise ValueError(
                    f"{self.path} holds a SAC run with {k}={a!r}, not {b!r}; use the same flags "
                    f"(only --steps may change on resume) or another --workdir"
                )
        atomic_write(run_file, (json.dumps(settings, indent=1, sort_keys=True) + "\n").encode())
        from ampl_jax.checkpoint import Checkpoints

        self.checkpoints = Checkpoints(str(self.path), keep=2)

    def save_eval_params(self, step: int, params: Any) -> None:
        from flax import serialization

        blob = serialization.msgpack_serialize(serialization.to_state_dict(jax.device_get(params)))
        atomic_write(self.path / "evals" / f"{step}.msgpack", blob)

    def load_eval_params(self, upto: int) -> dict[int, Any]:
        from flax import serialization

        out = {}
        for f in (self.path / "evals").glob("*.msgpack"):
            if f.stem.isdigit() and int(f.stem) <= upto:
                out[int(f.stem)] = serialization.msgpack_restore(f.read_bytes())
        return dict(sorted(out.items()))

    def save_replay_chunk(self, start: int, end: int, replay: HostReplay) -> None:
        """replay/<end>.npz: the rows [start, end) (start stored inside)."""
        rows = slice(start, end)
        chunk = {k: getattr(replay, k)[rows] for k in ("obs", "next_obs", "act", "rew", "term", "trunc")}
        tmp = self.path / "replay" / f".{end}.tmp.npz"
        np.savez(tmp, start=np.int64(start), **chunk)
        tmp.rename(self.path / "replay" / f"{end}.npz")

    def save(self, t: int, last_t: int, state: Any, replay: HostReplay, extra: dict[str, Any]) -> None:
        self.save_replay_chunk(last_t, t, replay)
        saved = state.replace(key=jax.random.key_data(state.key))
        self.checkpoints.save(t, saved, extra)

    def restore(self, template: Any, replay: HostReplay) -> tuple[int, Any, dict[str, Any]] | None:
        """(t, state, extra) of the newest checkpoint with the replay rows below t loaded, or None."""
        target = template.replace(key=jax.random.key_data(template.key))
        got = self.checkpoints.restore_latest(target)
        if got is None:
            return None
        t, state, extra = got
        state = state.replace(key=jax.random.wrap_key_data(state.key))
        ends = sorted(int(f.stem) for f in (self.path / "replay").glob("*.npz") if f.stem.isdigit())
        for end in (e for e in ends if e <= t):
            with np.load(self.path / "replay" / f"{end}.npz") as z:
                start = int(z["start"])
                for k in ("obs", "next_obs", "act", "rew", "term", "trunc"):
                    getattr(replay, k)[start:end] = z[k]
        replay.size = t
        return t, state, extra

    def close(self) -> None:
        self.checkpoints.close()


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name, then rename: a kill leaves the old file or the new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.rename(path)
