"""Dynamics ensemble: it learns real Hopper dynamics, weights matter, warm starts, determinism."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ampl_jax.types import Transitions
from ampl_jax.world_model import fit, init_model_state, predict
from ampl_jax.world_model.ensemble import gaussian_nll, member_apply, member_loss


def _cfg(**over) -> ml_collections.ConfigDict:
    """The `model` block of configs/default.py, shrunk for tests."""
    c = ml_collections.ConfigDict(dict(
        num_members=3, num_elites=2, hidden_dims=(64, 64), learning_rate=1e-3,
        weight_decays=(2.5e-5, 5e-5), head_weight_decay=1e-4, max_logstd_init=0.25,
        min_logstd_init=-5.0, logstd_bound_coef=0.01, batch_size=128, epoch_steps=100,
        holdout_fraction=0.2, max_holdout=8092, patience=3, improvement_threshold=0.01,
        max_epochs=30, refit_max_epochs=30))
    c.update(over)
    return c


def _hopper(n: int, seed: int) -> Transitions:
    env = gym.make("Hopper-v5")
    env.action_space.seed(seed)
    o, _ = env.reset(seed=seed)
    rows = []
    while len(rows) < n:
        a = env.action_space.sample()
        n_o, r, term, trunc, _ = env.step(a)
        rows.append((o, a, r, n_o, float(term)))
        o = env.reset()[0] if term or trunc else n_o
    env.close()
    return Transitions(*(jnp.asarray(np.asarray(x), jnp.float32) for x in zip(*rows)))


@pytest.fixture(scope="module")
def hopper():
    return _hopper(3000, seed=0), _hopper(1000, seed=1)


def _leaves_equal(a, b) -> bool:
    return all(bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_learns_hopper_dynamics(hopper):
    train, test = hopper
    cfg = _cfg(max_epochs=15)
    state = init_model_state(jax.random.PRNGKey(0), train, cfg)
    state, info = fit(state, jax.random.PRNGKey(1), train, None, cfg)
    nxt, rew = predict(state, jax.random.PRNGKey(2), test.observations, test.actions,
                       deterministic=True)
    mse = float(jnp.mean(jnp.sum(jnp.square(nxt - test.next_observations), -1)))
    mse_identity = float(jnp.mean(jnp.sum(jnp.square(test.observations - test.next_observations), -1)))
    ratio = mse / mse_identity
    print(f"hopper next-state MSE ratio (model / s'=s): {ratio:.3f}, epochs {info['epochs']}")
    assert ratio < 0.5
    assert float(jnp.mean(jnp.abs(rew - test.rewards))) < float(jnp.std(test.rewards))
    # bookkeeping
    assert info["elites"].shape == (2,) and state.elites.dtype == jnp.int32
    np.testing.assert_array_equal(np.argsort(info["holdout_losses"])[:2], info["elites"])
    assert info["num_holdout"] == 600 and info["train_loss_history"].shape == (info["epochs"], 3)


def _two_regimes(n=4000, seed=0):
    """Same input distribution, two dynamics: regime B's next state is offset by +1."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, 3)).astype(np.float32)
    a = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    regime_b = np.arange(n) % 2 == 1
    nxt = s + 0.5 * a + 0.1 * np.sin(s) + np.where(regime_b[:, None], 1.0, 0.0)
    r = (a[:, 0] + s[:, 0]).astype(np.float32)
    data = Transitions(*(jnp.asarray(x, jnp.float32) for x in (s, a, r, nxt, np.zeros(n))))
    return data, regime_b


def test_weights_matter():
    data, regime_b = _two_regimes()
    cfg = _cfg(max_epochs=8, patience=8)
    state0 = init_model_state(jax.random.PRNGKey(0), data, cfg)
    w = jnp.asarray(~regime_b, jnp.float32)  # fit regime A only
    weighted, _ = fit(state0, jax.random.PRNGKey(1), data, w, cfg)
    plain, _ = fit(state0, jax.random.PRNGKey(1), data, None, cfg)
    a = ~regime_b

    def err(state):
        nxt, _ = predict(state, jax.random.PRNGKey(3), data.observations[a], data.actions[a],
                         deterministic=True)
        return float(jnp.mean(jnp.square(nxt - data.next_observations[a])))

    e_w, e_p = err(weighted), err(plain)
    print(f"regime-A next-state MSE: weighted {e_w:.4f}, unweighted {e_p:.4f}")
    assert e_w < 0.3 * e_p  # unweighted has to split the +1 offset: ~0.25 per dim


def test_unit_weights_equal_plain_mle_exactly():
    data, _ = _two_regimes(n=1000)
    cfg = _cfg(max_epochs=2)
    state0 = init_model_state(jax.random.PRNGKey(0), data, cfg)
    ones = jnp.ones((1000,), jnp.float32)
    s1, i1 = fit(state0, jax.random.PRNGKey(5), data, ones, cfg)
    s2, i2 = fit(state0, jax.random.PRNGKey(5), data, None, cfg)
    assert _leaves_equal(s1.params, s2.params)
    np.testing.assert_array_equal(i1["train_loss_history"], i2["train_loss_history"])
    # and the loss itself: w = 1 is the plain (unweighted) Gaussian NLL
    p = jax.tree.map(lambda x: x[0], state0.params)
    x = state0.input_norm(jnp.concatenate([data.observations, data.actions], -1))[:128]
    y = jax.random.normal(jax.random.PRNGKey(0), (128, 4))
    kw = dict(decays=(0.0, 0.0), head_decay=0.0, bound_coef=0.0)
    mean, logstd = member_apply(p, x)
    assert float(member_loss(p, x, y, jnp.ones(128), **kw)) == float(
        jnp.mean(gaussian_nll(mean, logstd, y)))


def test_warm_start_keeps_adam_state_and_params():
    data, regime_b = _two_regimes(n=2000)
    w = jnp.asarray(~regime_b, jnp.float32)  # one regime: the holdout loss can go to ~0
    cfg = _cfg(max_epochs=3, patience=5)
    state0 = init_model_state(jax.random.PRNGKey(0), data, cfg)
    s1, i1 = fit(state0, jax.random.PRNGKey(1), data, w, cfg)
    count1 = int(s1.opt_state[0].count)
    assert count1 == 3 * cfg.epoch_steps and int(s1.num_fits) == 1
    s2, i2 = fit(s1, jax.random.PRNGKey(2), data, w, cfg, max_epochs=1)
    assert int(s2.opt_state[0].count) == count1 + cfg.epoch_steps  # Adam step count continues
    assert int(s2.num_fits) == 2
    # continued, not re-initialised: after one more epoch it is far better than a fresh epoch
    fresh, i_fresh = fit(state0, jax.random.PRNGKey(2), data, w, cfg, max_epochs=1)
    print("warm-start first-epoch holdout", i2["holdout_history"][0], "fresh", i_fresh["holdout_history"][0])
    assert i2["holdout_history"][0].max() < 0.5 * i_fresh["holdout_history"][0].min()
    assert i2["holdout_history"][0].max() < 1.5 * i1["holdout_losses"].max()


def test_early_stopping_and_best_snapshot():
    data, _ = _two_regimes(n=1000)
    cfg = _cfg(learning_rate=1e-9, patience=2, max_epochs=50)  # nothing can improve by 1 %
    state0 = init_model_state(jax.random.PRNGKey(0), data, cfg)
    _, info = fit(state0, jax.random.PRNGKey(1), data, None, cfg)
    assert info["epochs"] == 1 + 2  # the first epoch always counts as an improvement


def test_same_key_same_params_different_key_differs():
    data, _ = _two_regimes(n=1000)
    cfg = _cfg(max_epochs=2)
    state0 = init_model_state(jax.random.PRNGKey(0), data, cfg)
    a, _ = fit(state0, jax.random.PRNGKey(7), data, None, cfg)
    b, _ = fit(state0, jax.random.PRNGKey(7), data, None, cfg)
    c, _ = fit(state0, jax.random.PRNGKey(8), data, None, cfg)
    assert _leaves_equal(a.params, b.params) and _leaves_equal(a.opt_state, b.opt_state)
    assert not _leaves_equal(a.params, c.params)
