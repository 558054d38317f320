"""Train a SAC behaviour policy online and ship its "medium" and "expert" snapshots.

    nice -n 10 python -m ampl_jax.behaviour.train_sac --env=Hopper-v5 --steps=150000 --seed=0

The env is stepped on the host with a NumPy actor; every `train_every` env steps the learner
does as many gradient steps in one scanned, jitted call (update-to-data ratio 1). Every
`eval_every` steps the deterministic policy is evaluated and its parameters kept, so the
snapshots are chosen after the fact, the D4RL way: expert = best evaluation, medium = the
evaluation closest to one third of the expert's. Both are then re-evaluated over
`final_episodes` episodes (deterministic and stochastic) for the JSON sidecar, and the replay
buffer up to the medium snapshot is written as medium_replay.npz (the medium-replay dataset).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium
import jax
import numpy as np

from ampl_jax.behaviour import snapshots
from ampl_jax.behaviour.sac import SAC, Batch, SACConfig, act_np, actor_layers, from_env_action, to_env_action


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
    evaluations: list[dict[str, float]]  # step, mean, std of each periodic evaluation
    params: dict[int, Any]  # step -> actor params (host NumPy) at that evaluation
    replay: HostReplay
    wall_time: float
    env_steps: int


def train(
    env_id: str,
    steps: int,
    seed: int = 0,
    *,
    config: SACConfig = SACConfig(),
    start_steps: int = 5000,
    train_every: int = 50,
    eval_every: int = 10_000,
    eval_episodes: int = 5,
    log: Callable[[str], None] | None = print,
) -> TrainResult:
    """Online SAC in `env_id` for `steps` env steps; periodic deterministic evaluations + params."""
    t0 = time.time()
    env = gymnasium.make(env_id)
    eval_env = gymnasium.make(env_id)
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(env.action_space.shape))
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    sac = SAC(obs_dim, act_dim, config)
    state = sac.init(jax.random.key(seed))
    rng = np.random.default_rng([seed, 0])  # behaviour noise and warm-up actions
    batch_rng = np.random.default_rng([seed, 1])  # minibatch indices
    replay = HostReplay(steps, obs_dim, act_dim)
    layers = actor_layers(jax.device_get(state.actor))

    evaluations, params = [], {}
    obs, _ = env.reset(seed=seed)
    ep_return, ep_returns, metrics = 0.0, [], {}
    for t in range(1, steps + 1):
        if t <= start_steps:
            a = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
        else:
            a = act_np(layers, obs, rng)
        next_obs, r, terminated, truncated, _ = env.step(to_env_action(a, low, high))
        replay.add(obs, a, r, next_obs, terminated, truncated)
        ep_return += float(r)
        obs = next_obs
        if terminated or truncated:
            ep_returns.append(ep_return)
            ep_return = 0.0
            obs, _ = env.reset(seed=int(rng.integers(2**31)))

        if t % train_every == 0 and t >= start_steps:
            batches = replay.sample(batch_rng, (train_every, config.batch_size))
            state, metrics = sac.update_many(state, batches)
            layers = actor_layers(jax.device_get(state.actor))

        if t % eval_every == 0 or t == steps:
            returns = evaluate(eval_env, layers, eval_episodes, seed=10_000 + t)
            evaluations.append({"step": t, "mean": float(returns.mean()), "std": float(returns.std())})
            params[t] = jax.device_get(state.actor)
            if log is not None:
                m = {k: round(float(v), 3) for k, v in metrics.items()}
                train_ret = np.mean(ep_returns[-10:]) if ep_returns else float("nan")
                log(
                    f"step {t} eval {returns.mean():.1f} +- {returns.std():.1f} train(last10) "
                    f"{train_ret:.1f} {m} {t / (time.time() - t0):.0f} steps/s"
                )
    env.close()
    eval_env.close()
    return TrainResult(evaluations, params, replay, time.time() - t0, steps)


def choose_snapshots(evaluations: list[dict[str, float]], fraction: float = 1 / 3) -> dict[str, int]:
    """{"expert": step of the best evaluation, "medium": step closest to fraction * best}."""
    best = max(evaluations, key=lambda e: e["mean"])
    medium = min(evaluations, key=lambda e: abs(e["mean"] - fraction * best["mean"]))
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
) -> dict[str, dict]:
    """Choose, re-evaluate and write the expert/medium snapshots (+ medium replay) for `env_id`."""
    chosen = choose_snapshots(result.evaluations)
    env = gymnasium.make(env_id)
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    out_dir = snapshots.snapshot_dir(env_id, out_root)
    metas = {}
    for name, step in chosen.items():
        params = result.params[step]
        layers = actor_layers(params)
        det = evaluate(env, layers, final_episodes, seed=20_000)
        sto = evaluate(env, layers, final_episodes, seed=30_000, rng=np.random.default_rng([seed, 2]))
        meta = {
            "env_id": env_id,
            "name": name,
            "algorithm": "SAC (ampl_jax.behaviour.sac), tanh-Gaussian actor",
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
                "best periodic deterministic evaluation"
                if name == "expert"
                else "periodic evaluation closest to 1/3 of the expert's (D4RL convention)"
            ),
            "eval_episodes": final_episodes,
            "return_mean": float(det.mean()),
            "return_std": float(det.std()),
            "stochastic_return_mean": float(sto.mean()),
            "stochastic_return_std": float(sto.std()),
            "periodic_evaluations": result.evaluations,
        }
        snapshots.save_snapshot(out_dir, name, params, meta)
        metas[name] = meta
    if save_replay:
        eps = result.replay.episodes(chosen["medium"], low, high)
        snapshots.save_replay(snapshots.medium_replay_path(env_id, out_root), eps)
    env.close()
    return metas


def main(argv: list[str]) -> None:
    from absl import flags

    del argv
    f = flags.FLAGS
    config = SACConfig(hidden_dims=tuple(int(h) for h in f.hidden), batch_size=f.batch_size)
    command = "python -m ampl_jax.behaviour.train_sac " + " ".join(sys.argv[1:])
    result = train(
        f.env,
        f.steps,
        f.seed,
        config=config,
        start_steps=f.start_steps,
        train_every=f.train_every,
        eval_every=f.eval_every,
        eval_episodes=f.eval_episodes,
    )
    out_root = Path(f.out) if f.out else snapshots.SNAPSHOT_DIR
    metas = ship(result, f.env, out_root, command, config, f.seed, f.final_episodes, f.replay)
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
    flags.DEFINE_integer("eval_episodes", 5, "Deterministic episodes per periodic evaluation.")
    flags.DEFINE_integer("final_episodes", 10, "Episodes of the final evaluation of shipped snapshots.")
    flags.DEFINE_list("hidden", ["256", "256"], "Hidden layer widths of actor and critics.")
    flags.DEFINE_integer("batch_size", 256, "Minibatch size.")
    flags.DEFINE_string("out", "", "Snapshot root (default: the package's ampl_jax/behaviour/snapshots).")
    flags.DEFINE_boolean("replay", True, "Also write medium_replay.npz.")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
