"""A compact, committable copy of a resumable SAC run, so a 1M-step training can span machines.

A run folder (`run_dir.RunDir`) holds the whole replay buffer: ~100-200 MB at 1M steps, too big
for git, and lost when a sitting ends on a fresh machine. The mirror keeps only what cannot be
recomputed cheaply:

- `run.json`: the run's settings (seed, schedule, network sizes);
- `actions/<end>.npz`: the actions taken at steps [start, end) (float32, tanh space), with a
  SHA-256 of that chunk's observations, rewards and end flags as the original run stored them;
- `state.msgpack` + `extra.json`: the newest checkpoint (learner, optimisers, PRNG key; the NumPy
  generators' states, evaluations and wall time), overwritten at each export;
- `evals/<t>.msgpack`: the actor at periodic evaluations, every one up to `keep_all_until` and
  after that each new best (the expert candidates); the medium snapshot is chosen among these.

Everything else is recomputed by `restore`: the simulator is stepped again with the stored
actions from the reset seeds that the behaviour generator draws (its draws are replayed call by
call, so its final state must equal the checkpoint's: a strong check), which rebuilds the replay
buffer row for row; each chunk's hash says whether it is bit-identical (it is on one machine; a
different MuJoCo build may differ in the last bits, which is reported, not fatal). Actions are
~12-24 bytes per step, so a 1M-step run mirrors in ~12-24 MB plus ~3 MB of learner state.

    python -m ampl_jax.datagen.mirror export --workdir=RUN --mirror=assets/sac-state/Hopper-v5-s0
    python -m ampl_jax.datagen.mirror restore --workdir=RUN --mirror=assets/sac-state/Hopper-v5-s0
    python -m ampl_jax.datagen.mirror check --mirror=assets/sac-state/Hopper-v5-s0   # before a commit
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ampl_jax.datagen.run_dir import HostReplay, RunDir, atomic_write

KEEP_ALL_UNTIL = 300_000  # every evaluation's actor is mirrored up to here (medium candidates)
REPLAY_KEYS = ("obs", "next_obs", "rew", "term", "trunc")


class MirrorError(RuntimeError):
    """A mirror cannot be written or read back; the message says which file and what to do."""


def chunk_hash(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of a replay chunk's recomputable columns (everything but the actions)."""
    h = hashlib.sha256()
    for k in REPLAY_KEYS:
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _sac_template(settings: dict[str, Any]):
    """An initial SACState shaped like the run's (key as raw data, as checkpoints hold it)."""
    import gymnasium

    from ampl_jax.datagen.sac import SAC, SACConfig

    env = gymnasium.make(settings["env_id"])
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(env.action_space.shape))
    env.close()
    cfg = dict(settings["config"])
    cfg["hidden_dims"] = tuple(cfg["hidden_dims"])
    state = SAC(obs_dim, act_dim, SACConfig(**cfg)).init(jax.random.key(settings["seed"]))
    return state.replace(key=jax.random.key_data(state.key)), obs_dim, act_dim


def _mirrored_eval_steps(evaluations: list[dict[str, float]], keep_all_until: int) -> list[int]:
    """Steps whose actor is mirrored: all up to keep_all_until, then each new best (by mean)."""
    out, best = [], -np.inf
    for e in evaluations:
        if e["step"] <= keep_all_until or e["mean"] > best:
            out.append(int(e["step"]))
        best = max(best, e["mean"])
    return out


def export(workdir: str | Path, mirror: str | Path, keep_all_until: int = KEEP_ALL_UNTIL) -> int:
    """Bring `mirror` up to the newest checkpoint of the run in `workdir`; returns its step.

    Incremental: action chunks and eval actors already there are kept (they never change).
    """
    from flax import serialization

    from ampl_jax.checkpoint import Checkpoints, list_steps

    workdir, mirror = Path(workdir), Path(mirror)
    run_file = workdir / "run.json"
    if not run_file.exists() or not list_steps(str(workdir)):
        raise MirrorError(f"{workdir} holds no SAC checkpoint to mirror; run train_sac with --workdir={workdir} first")
    settings = json.loads(run_file.read_text())
    template, _, _ = _sac_template(settings)
    with Checkpoints(str(workdir), keep=2) as ckpts:
        got = ckpts.restore_latest(template)
    if got is None:
        raise MirrorError(f"no checkpoint of {workdir} could be loaded")
    t, state, extra = got
    for sub in ("actions", "evals"):
        (mirror / sub).mkdir(parents=True, exist_ok=True)
    old = mirror / "run.json"
    if old.exists() and {k: v for k, v in json.loads(old.read_text()).items() if k != "steps"} != {
        k: v for k, v in settings.items() if k != "steps"
    }:
        raise MirrorError(f"{mirror} mirrors another run (different run.json); give another --mirror")
    ends = sorted(int(f.stem) for f in (workdir / "replay").glob("*.npz") if f.stem.isdigit())
    for end in (e for e in ends if e <= t):
        out = mirror / "actions" / f"{end}.npz"
        if out.exists():
            continue
        with np.load(workdir / "replay" / f"{end}.npz") as z:
            arrays = {k: z[k] for k in ("act",) + REPLAY_KEYS}
            start = int(z["start"])
        tmp = out.with_name(f".{end}.tmp.npz")
        np.savez_compressed(tmp, start=np.int64(start), act=arrays["act"], sha256=np.str_(chunk_hash(arrays)))
        tmp.rename(out)
    for step in _mirrored_eval_steps(extra["evaluations"], keep_all_until):
        src, dst = workdir / "evals" / f"{step}.msgpack", mirror / "evals" / f"{step}.msgpack"
        if src.exists() and not dst.exists():
            shutil.copyfile(src, dst.with_name(f".{step}.tmp"))
            dst.with_name(f".{step}.tmp").rename(dst)
    # The state before the sidecar: a reader takes the step from extra.json, and a mismatch is caught.
    blob = serialization.msgpack_serialize(serialization.to_state_dict(jax.device_get(state)))
    atomic_write(mirror / "state.msgpack", blob)
    atomic_write(mirror / "extra.json", (json.dumps({"step": t, "extra": extra}, indent=0) + "\n").encode())
    atomic_write(old, (json.dumps(settings, indent=1, sort_keys=True) + "\n").encode())
    return t


def gradient_steps(t: int, start_steps: int, train_every: int) -> int:
    """Gradient steps a run has taken after t env steps (train_sac: `train_every` per call, one
    call every `train_every` steps from `start_steps` on)."""
    if t < start_steps:
        return 0
    calls = t // train_every - (start_steps + train_every - 1) // train_every + 1
    return calls * train_every


def mirror_step(mirror: str | Path) -> int | None:
    """The checkpoint step a mirror holds, or None if it holds none."""
    f = Path(mirror) / "extra.json"
    return int(json.loads(f.read_text())["step"]) if f.exists() else None


def _action_chunks(mirror: Path, t: int, with_actions: bool) -> list[tuple[int, int, np.ndarray | None, str]]:
    """(start, end, actions or None, sha256) of the chunks below step t, checked to cover [0, t)."""
    chunks, covered = [], 0
    for f in sorted((mirror / "actions").glob("*.npz"), key=lambda f: int(f.stem) if f.stem.isdigit() else -1):
        if not f.stem.isdigit() or int(f.stem) > t:
            continue
        with np.load(f) as z:
            start, end = int(z["start"]), int(f.stem)
            act = z["act"].copy() if with_actions else None
            if start != covered or (act is not None and len(act) != end - start):
                raise MirrorError(f"{mirror}/actions is missing steps {covered}..{start} (or a chunk is malformed)")
            chunks.append((start, end, act, str(z["sha256"])))
        covered = end
    if covered != t:
        raise MirrorError(f"{mirror}/actions covers steps up to {covered}, the checkpoint is at {t}")
    return chunks


def check(mirror: str | Path) -> int:
    """Cheap consistency check before committing a mirror (no simulation): the learner's gradient
    steps match extra.json's step and the action chunks cover every step below it. Returns the step."""
    from flax import serialization

    mirror = Path(mirror)
    t = mirror_step(mirror)
    if t is None or not (mirror / "state.msgpack").exists():
        raise MirrorError(f"{mirror} holds no mirrored checkpoint (extra.json and state.msgpack)")
    settings = json.loads((mirror / "run.json").read_text())
    learner_steps = int(serialization.msgpack_restore((mirror / "state.msgpack").read_bytes())["step"])
    if learner_steps != gradient_steps(t, settings["start_steps"], settings["train_every"]):
        # state.msgpack is written before extra.json: a copy taken between the two (say a commit
        # during an export) pairs a newer learner with older bookkeeping.
        raise MirrorError(f"{mirror}: state.msgpack and extra.json are from different checkpoints (copied during "
                          "an export?); copy the mirror again")
    _action_chunks(mirror, t, with_actions=False)
    return t


def _resimulate(
    settings: dict[str, Any], chunks: list[tuple[int, int, np.ndarray | None, str]], capacity: int
) -> tuple[HostReplay, np.random.Generator, int, list[int]]:
    """Step the env again from step 0 with the mirrored actions of `chunks` (contiguous from 0).

    Returns the rebuilt replay, the behaviour generator after its replayed draws, the last reset
    seed, and the ends of the chunks whose rows differ from the original's hash.
    """
    import gymnasium

    from ampl_jax.datagen.sac import to_env_action

    seed, start_steps = settings["seed"], settings["start_steps"]
    ckpt_every = settings["checkpoint_every"]
    env = gymnasium.make(settings["env_id"])
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(env.action_space.shape))
    rng = np.random.default_rng([seed, 0])  # the behaviour generator: its draws are replayed, values unused
    replay = HostReplay(capacity, obs_dim, act_dim)
    reset_seed = seed
    obs = env.reset(seed=reset_seed)[0]
    inexact = []
    step = 0
    for start, end, act, sha in chunks:
        for a in act:
            step += 1
            if step <= start_steps:
                rng.uniform(-1.0, 1.0, act_dim)
            else:
                rng.standard_normal(act_dim)
            next_obs, r, terminated, truncated, _ = env.step(to_env_action(a, low, high))
            cut = step % ckpt_every == 0
            replay.add(obs, a, r, next_obs, terminated, truncated or cut)
            obs = next_obs
            if terminated or truncated or cut:
                reset_seed = int(rng.integers(2**31))
                obs = env.reset(seed=reset_seed)[0]
        rows = slice(start, end)
        if chunk_hash({k: getattr(replay, k)[rows] for k in REPLAY_KEYS}) != sha:
            inexact.append(end)
    env.close()
    return replay, rng, reset_seed, inexact


def replay_prefix(mirror: str | Path, n: int) -> tuple[HostReplay, list[int]]:
    """The run's replay buffer as of step n (its first n rows), rebuilt from the mirror's actions.

    Re-simulates only the chunks up to the one holding step n (every one checked against its
    hash); returns the replay (n rows) and the ends of the chunks that came back inexact. This is
    how the medium-replay dataset is regenerated instead of shipped (snapshots.load_replay).
    """
    mirror = Path(mirror)
    t = check(mirror)
    if not 0 < n <= t:
        raise MirrorError(f"{mirror} holds steps 0..{t}; cannot rebuild the replay as of step {n}")
    settings = json.loads((mirror / "run.json").read_text())
    chunks = _action_chunks(mirror, t, with_actions=True)
    upto = next(i for i, c in enumerate(chunks) if c[1] >= n)
    chunks = chunks[: upto + 1]
    replay, _, _, inexact = _resimulate(settings, chunks, chunks[-1][1])
    replay.size = n
    return replay, inexact


def restore(mirror: str | Path, workdir: str | Path, log=print) -> int:
    """Rebuild the run folder at `workdir` from `mirror` (replay by re-simulation); returns the step.

    Afterwards `train_sac` with the same flags and --workdir resumes as from its own checkpoint.
    """
    from flax import serialization

    mirror, workdir = Path(mirror), Path(workdir)
    t = check(mirror)
    settings = json.loads((mirror / "run.json").read_text())
    extra = json.loads((mirror / "extra.json").read_text())["extra"]
    template, _, _ = _sac_template(settings)
    state = serialization.from_state_dict(template, serialization.msgpack_restore((mirror / "state.msgpack").read_bytes()))
    chunks = _action_chunks(mirror, t, with_actions=True)
    replay, rng, reset_seed, inexact = _resimulate(settings, chunks, t)
    if rng.bit_generator.state != extra["rng"] or reset_seed != extra["reset_seed"]:
        raise MirrorError(
            f"re-simulating {mirror} did not retrace the run's episodes (behaviour generator state differs "
            f"at step {t}); the mirror is inconsistent: restore from the run folder instead"
        )
    if inexact:
        msg = (f"{mirror}: replay chunks ending at {inexact} re-simulate with different bits than the original "
               "run stored (another MuJoCo build?); training resumes on the re-simulated rows")
        warnings.warn(msg)
        extra = dict(extra, restored_inexact=sorted(set(extra.get("restored_inexact", [])) | set(inexact)))

    run = RunDir(workdir, settings)
    for start, end, _, _ in chunks:
        run.save_replay_chunk(start, end, replay)
    for f in (mirror / "evals").glob("*.msgpack"):
        dst = workdir / "evals" / f.name
        if not dst.exists():
            shutil.copyfile(f, dst)
    run.checkpoints.save(t, state, extra)
    run.close()
    if log is not None:
        log(f"restored {workdir} from {mirror} at step {t} ({'bit-identical' if not inexact else 'inexact'})")
    return t


def main(argv: list[str]) -> None:
    from absl import flags

    f = flags.FLAGS
    if len(argv) != 2 or argv[1] not in ("export", "restore", "check"):
        raise SystemExit("usage: python -m ampl_jax.datagen.mirror {export|restore|check} --workdir=RUN --mirror=DIR")
    if argv[1] != "check" and not f.workdir:
        raise SystemExit(f"error: {argv[1]} needs --workdir=RUN (the SAC run folder)")
    try:
        if argv[1] == "check":
            print(f"{f.mirror}: consistent at step {check(f.mirror)}")
        elif argv[1] == "export":
            t = export(f.workdir, f.mirror, f.keep_all_until)
            print(f"mirrored {f.workdir} at step {t} into {f.mirror}")
        else:
            restore(f.mirror, f.workdir)
    except MirrorError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("workdir", "", "The SAC run folder (train_sac's --workdir; not needed by check).")
    flags.DEFINE_string("mirror", None, "The mirror folder (e.g. assets/sac-state/<env>-s<seed>).", required=True)
    flags.DEFINE_integer("keep_all_until", KEEP_ALL_UNTIL, "Mirror every evaluation's actor up to this step.")
    app.run(main)
