"""Train a SAC behaviour policy online and ship its "medium" and "expert" snapshots.

    nice -n 10 python -m ampl_jax.datagen.train_sac --env=Hopper-v5 --steps=150000 --seed=0

The env is stepped on the host with a NumPy actor; every `train_every` env steps the learner
does as many gradient steps in one scanned, jitted call (update-to-data ratio 1). Every
`eval_every` steps the policy is evaluated (stochastic and deterministic) and its parameters
kept, so the snapshots are chosen after the fact, the D4RL way: expert = best stochastic
evaluation, medium = the evaluation closest to one third of the expert's. Both are then
re-evaluated over `final_episodes` episodes (deterministic and stochastic) for the JSON sidecar,
and the replay buffer up to the medium snapshot (the medium-replay dataset) is shipped as
medium_replay.npz or, for a run mirrored inside the repository, regenerated from its mirror.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium
import jax
import numpy as np

from ampl_jax.datagen import mirror as mirror_lib
from ampl_jax.datagen import snapshots
from ampl_jax.datagen.run_dir import HostReplay, RunDir, atomic_write
from ampl_jax.datagen.sac import SAC, SACConfig, act_np, actor_layers, to_env_action
from ampl_jax.checkpoint import list_steps


def evaluate(
    env: gymnasium.Env,
    layers: list[tuple[np.ndarray, np.ndarray]],
    episodes: int,
    seed: int,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Returns of `episodes` episodes: deterministic tanh(mean) if rng is None, else sampled."""
    low, high = env.action_space.low, env.action_space.high
    out = np.zeros(episodes)
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done, total = False, 0.0
        while not done:
            a = to_env_action(act_np(layers, obs, rng), low, high)
            obs, r, terminated, truncated, _ = env.step(a)
            total += float(r)
            done = terminated or truncated
        out[i] = total
    return out


@dataclasses.dataclass
class TrainResult:
    evaluations: list[dict[str, float]]  # step, mean/std (stochastic), det_mean/det_std, wall_s
    params: dict[int, Any]  # step -> actor params (host NumPy) at that evaluation
    replay: HostReplay
    wall_time: float
    env_steps: int


def cpu_model() -> str:
    """The host CPU's model name (timings are only comparable on one kind of machine)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    """Versions that decide a run's bits (a curve is only retraced with the same ones)."""
    import importlib.metadata as md

    out = {}
    for pkg in ("jax", "jaxlib", "mujoco", "numpy", "gymnasium"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return rng.bit_generator.state


def _set_rng_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state


def _open_run(env_id, seed, config, start_steps, train_every, eval_every, eval_episodes, checkpoint_every, steps,
              workdir, mirror, state, replay, log):
    """(RunDir or None, its newest checkpoint (step, state, extra) or None): a workdir missing or
    older than the mirror is first rebuilt from it."""
    if workdir is None:
        return None, None
    settings = {
        "env_id": env_id, "seed": seed, "config": dataclasses.asdict(config), "start_steps": start_steps,
        "train_every": train_every, "eval_every": eval_every, "eval_episodes": eval_episodes,
        "checkpoint_every": checkpoint_every, "steps": steps,
    }
    if mirror is not None:
        have, mirrored = (list_steps(str(workdir)) or [0])[-1], mirror_lib.mirror_step(mirror)
        if mirrored is not None and mirrored > have:
            mirror_lib.restore(mirror, workdir, log=log)
    run = RunDir(workdir, settings)
    got = run.restore(state, replay)
    if got is not None and log is not None:
        log(f"resumed {workdir} at step {got[0]} ({got[2]['wall_s'] / 60:.1f} min of training so far)")
    return run, got


def _progress_line(t: int, last: dict, metrics: dict, ep_returns: list[float], steps_per_s: float) -> str:
    m = {k: round(float(v), 3) for k, v in metrics.items()}
    train_ret = np.mean(ep_returns[-10:]) if ep_returns else float("nan")
    return (f"step {t} eval {last['mean']:.1f} +- {last['std']:.1f} (deterministic {last['det_mean']:.1f}) "
            f"train(last10) {train_ret:.1f} {m} {steps_per_s:.0f} steps/s")


def _evaluate(eval_env, layers, state, t, eval_episodes, eval_rng, evaluations, wall, run, curve_out, env_id, seed,
              steps):
    """One periodic evaluation (stochastic, then deterministic on half as many episodes), appended
    to `evaluations` and written (the run's evaluations.json, the curve file); returns the actor.
    `wall()`: the run's training wall time so far, read after the evaluation."""
    sto = evaluate(eval_env, layers, eval_episodes, seed=10_000 + t, rng=eval_rng)
    det = evaluate(eval_env, layers, max(1, eval_episodes // 2), seed=10_000 + t)
    wall = wall()
    evaluations.append({
        "step": t, "mean": float(sto.mean()), "std": float(sto.std()),
        "det_mean": float(det.mean()), "det_std": float(det.std()), "wall_s": round(wall, 1),
    })
    actor = jax.device_get(state.actor)
    if run is not None:
        run.save_eval_params(t, actor)
        atomic_write(run.path / "evaluations.json", (json.dumps(evaluations, indent=0) + "\n").encode())
    if curve_out is not None:
        curve = {"env_id": env_id, "seed": seed, "steps": steps, "cpu": cpu_model(), "versions": versions(),
                 "evaluations": evaluations}
        Path(curve_out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(Path(curve_out), (json.dumps(curve, indent=0) + "\n").encode())
    return actor


def train(
    env_id: str,
    steps: int,
    seed: int = 0,
    *,
    config: SACConfig = SACConfig(),
    start_steps: int = 5000,
    train_every: int = 50,
    eval_every: int = 10_000,
    eval_episodes: int = 10,
    workdir: str | Path | None = None,
    checkpoint_every: int = 50_000,
    curve_out: str | Path | None = None,
    log: Callable[[str], None] | None = print,
    mirror: str | Path | None = None,
) -> TrainResult:
    """Online SAC in `env_id` for `steps` env steps; periodic evaluations + the actor at each.

    Each periodic evaluation runs the stochastic policy (it makes the datasets; snapshots are
    chosen by it) for `eval_episodes` episodes, the deterministic one for half as many. With a
    `workdir` the run checkpoints every `checkpoint_every` steps and the same call resumes it (a
    larger `steps` extends it). At each checkpoint step the episode in progress is cut as a
    truncation (no done: bootstrapping goes on) and the env reset from the behaviour generator,
    workdir or not, so a checkpoint needs no simulator state and a resumed run equals an
    uninterrupted one. With a `mirror` folder (`mirror.py`: a few MB to commit) every checkpoint is
    also exported there, and a workdir missing or older than the mirror is rebuilt from it first.
    """
    if checkpoint_every <= 0 or checkpoint_every % train_every:
        raise ValueError(f"checkpoint_every={checkpoint_every} must be a positive multiple of train_every={train_every}")
    t0 = time.time()
    env = gymnasium.make(env_id)
    eval_env = gymnasium.make(env_id)
    obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    sac = SAC(obs_dim, act_dim, config)
    state = sac.init(jax.random.key(seed))
    rng = np.random.default_rng([seed, 0])  # behaviour noise, warm-up actions and resets
    batch_rng = np.random.default_rng([seed, 1])  # minibatch indices
    eval_rng = np.random.default_rng([seed, 3])  # noise of the stochastic evaluations
    replay = HostReplay(steps, obs_dim, act_dim)
    rngs = {"rng": rng, "batch_rng": batch_rng, "eval_rng": eval_rng}  # checkpointed by name

    run, got = _open_run(env_id, seed, config, start_steps, train_every, eval_every, eval_episodes, checkpoint_every,
                         steps, workdir, mirror, state, replay, log)
    evaluations, params, t_start, wall_before, reset_seed = [], {}, 0, 0.0, seed
    if got is not None:
        t_start, state, extra = got
        for name, g in rngs.items():
            _set_rng_state(g, extra[name])
        evaluations, wall_before, reset_seed = extra["evaluations"], extra["wall_s"], extra["reset_seed"]
        params = run.load_eval_params(t_start)
    layers = actor_layers(jax.device_get(state.actor))

    def reset_env() -> np.ndarray:
        nonlocal reset_seed
        reset_seed = int(rng.integers(2**31))
        return env.reset(seed=reset_seed)[0]

    if t_start == 0:
        reset_seed = seed
    obs = env.reset(seed=reset_seed)[0]  # on resume: the reset the checkpoint step did
    ep_return, ep_returns, metrics = 0.0, [], {}
    last_ckpt = t_start
    for t in range(t_start + 1, steps + 1):
        if t <= start_steps:
            a = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
        else:
            a = act_np(layers, obs, rng)
        next_obs, r, terminated, truncated, _ = env.step(to_env_action(a, low, high))
        cut = t % checkpoint_every == 0 or t == steps
        replay.add(obs, a, r, next_obs, terminated, truncated or cut)
        ep_return += float(r)
        obs = next_obs
        if terminated or truncated or cut:
            ep_returns.append(ep_return)
            ep_return = 0.0
            obs = reset_env()

        if t % train_every == 0 and t >= start_steps:
            batches = replay.sample(batch_rng, (train_every, config.batch_size))
            state, metrics = sac.update_many(state, batches)
            layers = actor_layers(jax.device_get(state.actor))

        if t % eval_every == 0 or t == steps:
            params[t] = _evaluate(eval_env, layers, state, t, eval_episodes, eval_rng, evaluations,
                                  lambda: wall_before + time.time() - t0, run, curve_out, env_id, seed, steps)
            if log is not None:
                log(_progress_line(t, evaluations[-1], metrics, ep_returns, (t - t_start) / (time.time() - t0)))
        if run is not None and (t % checkpoint_every == 0 or t == steps):
            extra = {**{name: _rng_state(g) for name, g in rngs.items()}, "evaluations": evaluations,
                     "wall_s": wall_before + time.time() - t0, "reset_seed": reset_seed}
            run.save(t, last_ckpt, state, replay, extra)
            last_ckpt = t
            if mirror is not None:
                mirror_lib.export(run.path, mirror)
    env.close()
    eval_env.close()
    if run is not None:
        run.close()
    return TrainResult(evaluations, params, replay, wall_before + time.time() - t0, steps)


def choose_snapshots(
    evaluations: list[dict[str, float]], fraction: float = 1 / 3, available: set[int] | None = None
) -> dict[str, int]:
    """{"expert": step of the best evaluation, "medium": step closest to fraction * best}.

    `available`: the steps whose actor is kept (a run restored from a mirror keeps all early ones
    and the bests); the medium snapshot is chosen among them.
    """
    best = max(evaluations, key=lambda e: e["mean"])
    pool = [e for e in evaluations if available is None or int(e["step"]) in available]
    medium = min(pool, key=lambda e: abs(e["mean"] - fraction * best["mean"]))
    return {"expert": int(best["step"]), "medium": int(medium["step"])}


def ship(
    result: TrainResult,
    env_id: str,
    out_root: Path,
    command: str,
    config: SACConfig,
    seed: int,
    final_episodes: int = 10,
    save_replay: bool = True,
    mirror: str | Path | None = None,
) -> dict[str, dict]:
    """Choose, re-evaluate and write the expert/medium snapshots (+ medium replay) for `env_id`.

    With a `mirror` inside the repository the medium replay is not written: medium.json names the
    mirror, the number of rows and their digest, and `snapshots.load_replay` regenerates it (a 1M-step
    run's medium buffer would be tens of MB in the package; its actions are in the mirror already).
    """
    chosen = choose_snapshots(result.evaluations, available=set(result.params))
    env = gymnasium.make(env_id)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    out_dir = snapshots.snapshot_dir(env_id, out_root)
    metas = {}
    replay_meta: dict[str, Any] = {}
    eps = result.replay.episodes(chosen["medium"], low, high) if save_replay else None
    if eps is not None and mirror is not None:
        where = Path(mirror).resolve()
        # a mirror outside the SAC state folder cannot travel with the repository: ship the npz
        if where.parent == snapshots.sac_state_root().resolve():
            replay_meta = {"replay_mirror": where.name, "replay_transitions": int(chosen["medium"]),
                           "replay_sha256": snapshots.replay_digest(eps)}
    for name, step in chosen.items():
        params = result.params[step]
        layers = actor_layers(params)
        det = evaluate(env, layers, final_episodes, seed=20_000)
        sto = evaluate(env, layers, final_episodes, seed=30_000, rng=np.random.default_rng([seed, 2]))
        meta = {
            "env_id": env_id,
            "name": name,
            "algorithm": "SAC (ampl_jax.datagen.sac), tanh-Gaussian actor",
            "hidden_dims": list(config.hidden_dims),
            "obs_dim": int(np.prod(env.observation_space.shape)),
            "act_dim": int(np.prod(env.action_space.shape)),
            "action_low": low.tolist(),
            "action_high": high.tolist(),
            "snapshot_env_steps": step,
            "training_env_steps": result.env_steps,
            "training_wall_time_s": round(result.wall_time, 1),
            "seed": seed,
            "command": command,
            "selection": (
                "best periodic evaluation (stochastic policy, mean return)"
                if name == "expert"
                else "periodic evaluation closest to 1/3 of the expert's (D4RL convention)"
            ),
            "eval_episodes": final_episodes,
            "return_mean": float(det.mean()),
            "return_std": float(det.std()),
            "stochastic_return_mean": float(sto.mean()),
            "stochastic_return_std": float(sto.std()),
            "periodic_evaluations": result.evaluations,
            **(replay_meta if name == "medium" else {}),
        }
        snapshots.save_snapshot(out_dir, name, params, meta)
        metas[name] = meta
    npz = snapshots.medium_replay_path(env_id, out_root)
    if eps is not None and not replay_meta:
        snapshots.save_replay(npz, eps)
    elif npz.exists():  # the previous snapshots' buffer: it would shadow the regenerated one
        npz.unlink()
    env.close()
    return metas


def default_workdir(env_id: str, seed: int) -> Path:
    """Outside the work tree, so a run survives a fresh checkout on the same machine."""
    root = os.environ.get("AMPL_SAC_ROOT") or os.path.join(os.path.expanduser("~"), ".cache", "ampl_jax", "sac")
    return Path(root) / f"{env_id}-s{seed}"


def main(argv: list[str]) -> None:
    from absl import flags

    del argv
    f = flags.FLAGS
    config = SACConfig(hidden_dims=tuple(int(h) for h in f.hidden), batch_size=f.batch_size)
    command = "python -m ampl_jax.datagen.train_sac " + " ".join(sys.argv[1:])
    result = train(
        f.env,
        f.steps,
        f.seed,
        config=config,
        start_steps=f.start_steps,
        train_every=f.train_every,
        eval_every=f.eval_every,
        eval_episodes=f.eval_episodes,
        workdir=f.workdir or default_workdir(f.env, f.seed),
        checkpoint_every=f.checkpoint_every,
        curve_out=f.curve_out or None,
        mirror=f.mirror or None,
    )
    out_root = Path(f.out) if f.out else snapshots.SNAPSHOT_DIR
    metas = ship(result, f.env, out_root, command, config, f.seed, f.final_episodes, f.replay, f.mirror or None)
    for name, m in metas.items():
        print(
            f"{name}: step {m['snapshot_env_steps']} return {m['return_mean']:.1f} +- {m['return_std']:.1f} "
            f"(stochastic {m['stochastic_return_mean']:.1f} +- {m['stochastic_return_std']:.1f})"
        )
    print(json.dumps({"wall_time_s": result.wall_time, "out": str(snapshots.snapshot_dir(f.env, out_root))}))


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("env", None, "Gymnasium environment id, e.g. Hopper-v5.", required=True)
    flags.DEFINE_integer("steps", 150_000, "Environment steps (= gradient steps).", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed of the networks, behaviour noise and resets.")
    flags.DEFINE_integer("start_steps", 5000, "Uniform-random warm-up steps before learning.")
    flags.DEFINE_integer("train_every", 50, "Env steps between update calls (= gradient steps per call).")
    flags.DEFINE_integer("eval_every", 10_000, "Env steps between evaluations / kept snapshots.")
    flags.DEFINE_integer("eval_episodes", 10, "Stochastic episodes per periodic evaluation (half as many deterministic).")
    flags.DEFINE_string("workdir", "", "Run directory (checkpoints, replay chunks, eval snapshots); the same "
                        "command resumes it. Default: $AMPL_SAC_ROOT or ~/.cache/ampl_jax/sac, then <env>-s<seed>.")
    flags.DEFINE_string("mirror", "", "Also export every checkpoint to this compact folder (a few MB, for git) "
                        "and rebuild the run from it when the workdir is missing or older (mirror.py).")
    flags.DEFINE_string("curve_out", "", "Also write the periodic evaluations (with wall time) to this JSON file.")
    flags.DEFINE_integer("checkpoint_every", 50_000, "Env steps between checkpoints (a multiple of train_every).")
    flags.DEFINE_integer("final_episodes", 10, "Episodes of the final evaluation of shipped snapshots.")
    flags.DEFINE_list("hidden", ["256", "256"], "Hidden layer widths of actor and critics.")
    flags.DEFINE_integer("batch_size", 256, "Minibatch size.")
    flags.DEFINE_string("out", "", "Snapshot root (default: the package's ampl_jax/datagen/snapshots).")
    flags.DEFINE_boolean("replay", True, "Also ship the medium replay: medium_replay.npz, or with --mirror inside "
                         "the repository a pointer to the mirror it is regenerated from.")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
