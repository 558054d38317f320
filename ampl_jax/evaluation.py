"""Policy evaluation in the real Gymnasium environment (host side, outside jit).

All episodes run side by side in one synchronous vector env so that the (jitted) policy is
called once per time step on a batch of observations. Exactly the first episode of every
sub-env counts: sub-env i is reset with the i-th seed given, and once it has finished its later
rewards and the actions chosen for it are ignored. A training run's episodes are
`episode_seeds(seed, step, n)`: distinct across episodes, training seeds and steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import gymnasium
import numpy as np

ActionFn = Callable[[np.ndarray], np.ndarray]


class EvalResult(NamedTuple):
    """Undiscounted raw returns and lengths of one episode per sub-env; with `record`, also the
    first real transitions (s, a, s') of the episodes, for diagnostics of the world model."""

    returns: np.ndarray  # [episodes] float64
    lengths: np.ndarray  # [episodes] int64
    return_mean: float
    return_std: float
    transitions: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # obs, act, next_obs [<= record]


# Tags the evaluation's reset seeds apart from any other use of numpy's SeedSequence on (seed, step).
_EPISODE_SEED_TAG = 0xE7A1


def episode_seeds(seed: int, step: int, n: int) -> list[int]:
    """Reset seeds of training seed `seed`'s n evaluation episodes at `step`.

    Hashed (numpy SeedSequence), not `seed + i`: with consecutive seeds s and s + 1 in one run,
    `seed + i` gave them n - 1 of their n episodes in common.
    """
    return [int(x) for x in np.random.SeedSequence([_EPISODE_SEED_TAG, seed, step]).generate_state(n)]


def _limit(max_episode_steps: int | None) -> int | None:
    """None or <= 0 (the config's -1) means: keep the environment's own time limit."""
    if max_episode_steps is None or max_episode_steps <= 0:
        return None
    return int(max_episode_steps)


def make_env(env_id: str, max_episode_steps: int | None = None) -> gymnasium.Env:
    """One evaluation environment, built exactly as every sub-env of `evaluate` is."""
    limit = _limit(max_episode_steps)
    if limit is None:
        return gymnasium.make(env_id)
    return gymnasium.make(env_id, max_episode_steps=limit)


def check_env_matches(env_id: str, obs_dim: int, act_dim: int) -> None:
    """Fail early, in one line, when a dataset's shapes do not fit its evaluation env."""
    env = gymnasium.make(env_id)
    try:
        obs_shape = env.observation_space.shape
        act_shape = env.action_space.shape
    finally:
        env.close()
    if obs_shape != (obs_dim,) or act_shape != (act_dim,):
        raise ValueError(
            f"dataset shapes obs_dim={obs_dim}, act_dim={act_dim} do not match env {env_id!r} "
            f"(observation space {obs_shape}, action space {act_shape})"
        )


def evaluate(
    action_fn: ActionFn,
    env_id: str,
    num_episodes: int,
    seed: int | Sequence[int],
    max_episode_steps: int | None = None,
    record: int = 0,
) -> EvalResult:
    """Run one complete episode in each of `num_episodes` sub-envs, reset with the seeds given
    (one per episode), or with seed, seed+1, ... for an int.

    `action_fn` maps float32 observations [n, obs_dim] to actions [n, act_dim]; it is always
    called on all n sub-envs (a fixed shape keeps a jitted policy from recompiling). `record` > 0
    keeps up to that many (s, a, s') of the counted episodes' non-final steps (a final step's s'
    is the reset state under autoreset, so it is left out).
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    seeds = [seed + i for i in range(num_episodes)] if isinstance(seed, int) else [int(s) for s in seed]
    if len(seeds) != num_episodes:
        raise ValueError(f"{len(seeds)} reset seeds for {num_episodes} episodes")
    limit = _limit(max_episode_steps)
    # SAME_STEP autoreset: a sub-env that finishes is reset within that same step, so its
    # reward/termination flags still belong to the finished episode and no env is ever
    # stepped past its end.
    envs = gymnasium.vector.SyncVectorEnv(
        [lambda: make_env(env_id, limit) for _ in range(num_episodes)],
        autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP,
    )
    try:
        spec_limit = envs.envs[0].spec.max_episode_steps if envs.envs[0].spec else None
        if limit is None and spec_limit is None:
            raise ValueError(f"env {env_id!r} has no time limit: pass max_episode_steps")
        act_shape = (num_episodes, *envs.single_action_space.shape)
        act_dtype = envs.single_action_space.dtype

        obs, _ = envs.reset(seed=seeds)
        returns = np.zeros(num_episodes, dtype=np.float64)
        lengths = np.zeros(num_episodes, dtype=np.int64)
        active = np.ones(num_episodes, dtype=bool)
        kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        n_kept = 0
        while active.any():
            actions = np.asarray(action_fn(np.asarray(obs, dtype=np.float32)))
            if actions.shape != act_shape:
                raise ValueError(
                    f"action_fn returned shape {actions.shape}, env {env_id!r} needs {act_shape} "
                    f"({num_episodes} envs x action space {envs.single_action_space.shape})"
                )
            prev = obs
            obs, rewards, terminated, truncated, _ = envs.step(actions.astype(act_dtype))
            if n_kept < record:
                keep = active & ~(terminated | truncated)
                kept.append((np.asarray(prev, np.float32)[keep], actions[keep].astype(np.float32),
                             np.asarray(obs, np.float32)[keep]))
                n_kept += int(keep.sum())
            returns[active] += rewards[active]
            lengths[active] += 1
            active &= ~(terminated | truncated)
    finally:
        envs.close()
    transitions = None
    if record > 0 and kept:
        transitions = tuple(np.concatenate([k[j] for k in kept])[:record] for j in range(3))
    return EvalResult(returns, lengths, float(returns.mean()), float(returns.std()), transitions)
