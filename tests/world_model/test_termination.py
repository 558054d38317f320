"""The pure termination rules agree with the real Gymnasium v5 envs on every transition."""

from __future__ import annotations

import gymnasium as gym
import jax
import numpy as np
import pytest

from ampl_jax.world_model.termination import termination_fn


def _collect(env_id: str, steps: int, seed: int, policy: str = "random", z_perturb=None):
    """Roll the real env; returns (obs, act, next_obs, terminated) arrays of `steps` rows."""
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    obs_l, act_l, nobs_l, term_l = [], [], [], []
    obs, _ = env.reset(seed=seed)
    t = 0

    def reset():
        o, _ = env.reset(seed=int(rng.integers(1 << 30)))
        if z_perturb is not None:  # start some episodes off the healthy range (Ant)
            u = env.unwrapped
            qpos, qvel = u.data.qpos.copy(), u.data.qvel.copy()
            qpos[2] = rng.uniform(*z_perturb)
            u.set_state(qpos, qvel)
            o = u._get_obs()
        return o

    obs = reset()
    sign = 1.0
    while len(obs_l) < steps:
        if policy == "push":  # a constant push in one direction makes the body fall
            a = np.clip(sign * np.abs(env.action_space.sample()), env.action_space.low,
                        env.action_space.high)
        else:
            a = env.action_space.sample()
        nobs, _, terminated, truncated, _ = env.step(a)
        obs_l.append(obs), act_l.append(a), nobs_l.append(nobs), term_l.append(terminated)
        obs = nobs
        t += 1
        if terminated or truncated or t >= 200:
            obs, t, sign = reset(), 0, -sign
    env.close()
    return (np.asarray(obs_l, np.float32), np.asarray(act_l, np.float32),
            np.asarray(nobs_l, np.float32), np.asarray(term_l))


CASES = [
    # env id, steps, policy, ant z perturbation, min terminations expected
    ("Hopper-v5", 3000, "random", None, 20),
    ("Walker2d-v5", 3000, "random", None, 10),
    ("HalfCheetah-v5", 500, "random", None, 0),
    ("Ant-v5", 1500, "random", (0.05, 1.4), 10),
    ("InvertedPendulum-v5", 2000, "random", None, 20),
    ("InvertedDoublePendulum-v5", 2000, "random", None, 20),
    ("Swimmer-v5", 300, "random", None, 0),
    ("Reacher-v5", 300, "random", None, 0),
    ("Pusher-v5", 300, "random", None, 0),
]


@pytest.mark.parametrize("env_id,steps,policy,zp,min_terms", CASES)
def test_termination_matches_env(env_id, steps, policy, zp, min_terms):
    obs, act, nobs, term = _collect(env_id, steps, seed=0, policy=policy, z_perturb=zp)
    pred = np.asarray(jax.jit(termination_fn(env_id))(obs, act, nobs))
    assert pred.shape == term.shape and pred.dtype == bool
    mismatch = np.flatnonzero(pred != term)
    assert mismatch.size == 0, f"{env_id}: {mismatch.size} disagreements, first at {mismatch[:5]}"
    assert term.sum() >= min_terms, f"{env_id}: only {term.sum()} terminations seen"
    if min_terms == 0:
        assert term.sum() == 0


def test_hopper_push_policy_and_trap():
    """Falling on purpose; also the abs-of-a-boolean trap: a huge negative entry is unhealthy."""
    obs, act, nobs, term = _collect("Hopper-v5", 1000, seed=1, policy="push")
    fn = termination_fn("Hopper-v5")
    assert (np.asarray(fn(obs, act, nobs)) == term).all() and term.sum() > 5
    x = np.zeros((2, 11), np.float32)
    x[:, 0] = 1.25  # healthy height
    x[1, 5] = -150.0  # `abs(obs[1:] < 100)` would call this healthy
    assert np.asarray(fn(x, None, x)).tolist() == [False, True]


def test_unknown_env_raises():
    with pytest.raises(ValueError, match="no termination rule"):
        termination_fn("CartPole-v5")
    with pytest.raises(ValueError, match="only Gymnasium v5"):
        termination_fn("Hopper-v4")
    assert termination_fn("mujoco/walker2d/medium-v0") is termination_fn("Walker2d-v5")
