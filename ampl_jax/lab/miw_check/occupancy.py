"""Discounted-occupancy samples of a fixed policy in the real environment: the "pi" side of the truth.

Why real rollouts: they give d_pi without any offline estimator, so the ratio built from them can
check the estimators. Every visited (s, a) is kept with its discounted-occupancy weight
(1 - gamma) gamma^t, from the env's own initial states. Episodes are cut at `horizon` steps
(gamma^horizon of the mass is never seen; `default_horizon` makes that 1 %). A termination ends
the occupancy there: TD-DICE's fixed point drops the next-state term at done rows, so its d_pi
has total mass E[1 - gamma^T] (T the termination time), below 1 when the policy falls.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import numpy as np

PolicyFn = Callable[[int, np.ndarray], np.ndarray]  # (call index, obs [n, obs_dim]) -> actions [n, act_dim]


def default_horizon(gamma: float, tail: float = 0.01) -> int:
    """Steps after which only `tail` of the discounted mass is left: ceil(log tail / log gamma)."""
    return int(math.ceil(math.log(tail) / math.log(gamma)))


class Occupancy(NamedTuple):
    """Every (s, a) pi visited, with its time step, episode and weight (1 - gamma) gamma^t."""

    observations: np.ndarray  # [n, obs_dim] float32
    actions: np.ndarray  # [n, act_dim] float32
    t: np.ndarray  # [n] int
    episode: np.ndarray  # [n] int
    weights: np.ndarray  # [n] float64, (1 - gamma) gamma^t
    lengths: np.ndarray  # [episodes] steps taken (<= horizon)
    terminated: np.ndarray  # [episodes] bool: fell before the horizon
    returns: np.ndarray  # [episodes] undiscounted raw return over the steps taken
    gamma: float
    horizon: int

    @property
    def mass(self) -> float:
        """E[1 - gamma^T], T the termination time (never, for an episode cut at the horizon): the
        total mass of the masked occupancy TD-DICE's fixed point describes, so E_D[w*] = mass."""
        return float(np.mean(np.where(self.terminated, 1.0 - self.gamma ** self.lengths, 1.0)))

    def summary(self) -> dict[str, float]:
        """The rollouts in a few numbers, for the report."""
        return {"episodes": len(self.lengths), "horizon": self.horizon, "samples": len(self.t),
                "mean_length": float(self.lengths.mean()), "fell_fraction": float(self.terminated.mean()),
                "mass": self.mass, "mean_return": float(self.returns.mean())}


def occupancy_samples(env_fn: Callable[[], Any], policy: PolicyFn, episodes: int, gamma: float,
                      horizon: int, seed: int, num_envs: int = 50) -> Occupancy:
    """Roll `policy` out for `episodes` episodes of at most `horizon` steps, `num_envs` side by side.

    Episode i is reset with seed `seed + i` (the env's own initial-state distribution). `policy` is
    always called on `num_envs` observations (a fixed shape keeps a jitted policy from
    recompiling), with a running call index for its noise. Time limits of the env count as
    truncations (the episode ends, not terminated); `horizon` should lie below them.
    """
    obs_l, act_l, t_l, ep_l = [], [], [], []
    lengths = np.zeros(episodes, np.int64)
    terminated = np.zeros(episodes, bool)
    returns = np.zeros(episodes, np.float64)
    calls = 0
    for start in range(0, episodes, num_envs):
        ids = list(range(start, min(start + num_envs, episodes)))
        envs = [env_fn() for _ in ids]
        try:
            obs = np.zeros((num_envs,) + envs[0].observation_space.shape, np.float32)
            for j, i in enumerate(ids):
                obs[j] = envs[j].reset(seed=seed + i)[0]
            alive = np.zeros(num_envs, bool)
            alive[:len(ids)] = True
            for t in range(horizon):
                if not alive.any():
                    break
                act = np.asarray(policy(calls, obs), np.float32)
                calls += 1
                for j, i in enumerate(ids):
                    if not alive[j]:
                        continue
                    obs_l.append(obs[j].copy())
                    act_l.append(act[j])
                    t_l.append(t)
                    ep_l.append(i)
                    nxt, r, term, trunc, _ = envs[j].step(act[j])
                    returns[i] += float(r)
                    lengths[i] = t + 1
                    obs[j] = nxt
                    if term or trunc:
                        alive[j] = False
                        terminated[i] = bool(term)
        finally:
            for env in envs:
                env.close()
    t = np.asarray(t_l, np.int64)
    return Occupancy(np.stack(obs_l).astype(np.float32), np.stack(act_l).astype(np.float32), t,
                     np.asarray(ep_l, np.int64), (1.0 - gamma) * gamma ** t.astype(np.float64),
                     lengths, terminated, returns, float(gamma), int(horizon))
