"""Baselines (BC, MOPO): they learn, the MOPO penalty means what it should, the steps are pure."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ampl_jax.baselines import bc, get, mopo
from ampl_jax.buffer import buffer_init, buffer_insert
from ampl_jax.data import preprocess
from ampl_jax.world_model import fit, init_model_state, rollout, termination_fn
from ampl_jax.world_model.ensemble import ensemble_apply
from tests import tiny_config
from tests.test_update import ACT, OBS, _data
from tests.test_world_model import _hopper



def _config(**mopo_over):
    c = tiny_config.get_config()
    c.bc.hidden_dims = (64, 64)
    c.bc.batch_size = 64
    c.rollout.period = 4
    c.mopo.hidden_dims = (32, 32)
    c.mopo.batch_size = 32
    c.mopo.update(mopo_over)
    return c


def _agent(module, config, data, info):
    obs_range = preprocess.obs_range(data.observations, data.next_observations)
    bound = float(preprocess.reward_bound(data.scaled_rewards))
    return module.make_agent(config, info, termination_fn(info.env_id), np.asarray(obs_range), bound)


def _model(config, data):
    """A fresh (unfitted) ensemble; jitted: one compile instead of many eager ops."""
    return jax.jit(lambda k: init_model_state(k, data.transitions(), config.model))(jax.random.PRNGKey(1))


def _init(module, agent, seed, model):
    """A fresh state holding a copy of `model` (update steps donate their state)."""
    return jax.jit(lambda k, m: module.init_state(agent, k, m))(jax.random.PRNGKey(seed), _copy(model))


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _copy(tree):
    """A fresh copy: the jitted steps donate their input state."""
    return jax.tree.map(jnp.copy, tree)


# --------------------------------------------------------------------------------------------
# BC


def test_registry():
    assert get("bc") is bc and get("mopo") is mopo
    assert bc.NEEDS_MODEL is False and mopo.NEEDS_MODEL is True
    with pytest.raises(ValueError, match="unknown baseline"):
        get("cql")


def test_bc_fits_a_deterministic_policy():
    w = np.random.default_rng(1).normal(size=(OBS, ACT)).astype(np.float32)
    centre = np.zeros(OBS, np.float32)
    centre[0] = 1.25
    teacher = lambda s: (0.9 * np.tanh(10.0 * (s - centre) @ w)).astype(np.float32)
    data, info = _data(n=2000, policy=teacher)
    config = _config()
    config.rollout.period = 250
    agent = _agent(bc, config, data, info)
    state = _init(bc, agent, 0, None)
    step = bc.make_update_step(agent)
    losses = []
    for _ in range(6):
        state, metrics = step(state, data)
        losses.append(float(metrics["bc_loss"]))
    assert int(state.step) == 6 * 250
    assert losses[-1] < losses[0] / 10, losses
    test_obs, _ = _data(n=500, seed=7)
    pred = bc.make_select_action(agent)(state, jax.random.PRNGKey(0), test_obs.observations)
    err = float(jnp.mean(jnp.abs(pred - teacher(np.asarray(test_obs.observations)))))
    print(f"BC loss {losses[0]:.4f} -> {losses[-1]:.5f}; held-out mean |a - a*| {err:.4f}")
    assert err < 0.1
    assert pred.shape == (500, ACT) and bool(jnp.all(jnp.abs(pred) <= agent.max_action))


# --------------------------------------------------------------------------------------------
# MOPO: the penalty


def test_penalty_is_the_max_over_elites_of_the_std_norm(mopo_setup):
    _, _, data, model, _ = mopo_setup
    model = model.replace(elites=jnp.asarray([2, 0], jnp.int32))  # not the first members, not sorted
    obs, act = data.observations[:64] * 3.0, data.actions[:64]
    pen = mopo.aleatoric_penalty(model, obs, act)
    _, logstd = ensemble_apply(model.params, model.input_norm(jnp.concatenate([obs, act], -1)))  # [M, B, D]
    std = np.exp(np.asarray(logstd, np.float64)) * np.asarray(model.target_norm.std)
    expected = np.max(np.linalg.norm(std[[2, 0]], axis=-1), axis=0)
    assert pen.shape == (64,) and bool(jnp.all(pen >= 0))
    np.testing.assert_allclose(np.asarray(pen), expected, rtol=1e-5)


def test_penalty_larger_off_the_data():
    """On real Hopper dynamics, a fitted ensemble's max-aleatoric penalty grows away from the data.

    The "far" points are dataset states moved 10 and 30 per-dimension standard deviations in a
    random direction (same actions). The margin is what a 2000-step fit gives on 5 seeds
    (far/in ratio at 30 std: 1.3 to 1.9).
    """
    train = _hopper(2000, seed=0)
    cfg = _config().model
    cfg.update(dict(num_members=3, num_elites=2, hidden_dims=(32, 32), weight_decays=(2.5e-5, 5e-5),
                    batch_size=128, epoch_steps=100, max_epochs=20, patience=100))
    model = jax.jit(lambda k: init_model_state(k, train, cfg))(jax.random.PRNGKey(0))
    model, _ = fit(model, jax.random.PRNGKey(1), train, None, cfg)
    pen_in = float(jnp.mean(mopo.aleatoric_penalty(model, train.observations, train.actions)))
    d = np.random.default_rng(0).normal(size=train.observations.shape).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    sd = jnp.std(train.observations, axis=0)
    pen_far = [float(jnp.mean(mopo.aleatoric_penalty(model, train.observations + r * sd * d, train.actions)))
               for r in (10.0, 30.0)]
    print(f"mean penalty: data {pen_in:.3f}, 10 std away {pen_far[0]:.3f}, 30 std away {pen_far[1]:.3f}")
    assert pen_in < pen_far[0] < pen_far[1]
    assert pen_far[1] > 1.2 * pen_in


# --------------------------------------------------------------------------------------------
# MOPO: the update step


@pytest.fixture(scope="module")
def mopo_setup():
    """penalty_coef = 0: one compiled step serves every update_step test (compiles dominate)."""
    config = _config(penalty_coef=0.0)
    data, info = _data()
    agent = _agent(mopo, config, data, info)
    return config, agent, data, _model(config, data), mopo.make_update_step(agent)


def _run(setup, seed, chunks=2):
    _, agent, data, model, step = setup
    state = _init(mopo, agent, seed, model)
    for _ in range(chunks):
        state, metrics = step(state, data)
    return jax.device_get(state), jax.device_get(metrics)


def test_mopo_step_deterministic_finite_and_scheduled(mopo_setup):
    config, _, _, model, _ = mopo_setup
    s1, m1 = _run(mopo_setup, seed=0)
    s2, m2 = _run(mopo_setup, seed=0)
    s3, _ = _run(mopo_setup, seed=1)
    assert _leaves_equal(s1, s2) and _leaves_equal(m1, m2)
    assert not _leaves_equal(s1.actor, s3.actor)
    period = config.rollout.period
    assert int(s1.step) == 2 * period
    assert int(s1.critic_opt[0].count) == 2 * period and int(s1.actor_opt[0].count) == 2 * period
    assert 0 < int(s1.buffer.size) <= 2 * config.rollout.transitions_per_rollout
    for name in ("critic_loss", "actor_loss", "alpha", "entropy", "penalty_mean", "rollout_valid_fraction"):
        assert name in m1 and np.isfinite(m1[name]), name
    assert m1["penalty_mean"] > 0  # computed (and logged) even when it is not applied
    assert _leaves_equal(s1.model, model)  # the step never changes the world model


def test_zero_penalty_buffer_rewards_are_the_model_rewards(mopo_setup):
    """penalty_coef = 0: the buffer gets exactly what AMPL's `rollout` returns for the same keys.

    Also: model_rollout's penalty is u(s, a) of those very transitions, and a nonzero lambda
    inserts r - lambda * u row for row.
    """
    config, agent, data, model, step = mopo_setup
    state0 = _init(mopo, agent, 3, model)
    # the keys update_step derives, replayed by hand through the shared rollout()
    r = config.rollout
    _, k_roll, _ = jax.random.split(state0.key, 3)
    k_start, k_r = jax.random.split(k_roll)
    n_starts = max(1, r.transitions_per_rollout // r.horizon)
    start = data.observations[jax.random.randint(k_start, (n_starts,), 0, data.observations.shape[0])]
    trans, valid = rollout(k_r, state0.model, lambda k, o: agent.sample(state0.actor, k, o)[0], start, r.horizon,
                           agent.termination_fn, agent.obs_range, agent.reward_bound,
                           elite_sampling=config.model.rollout_elite_sampling)
    state, _ = step(_copy(state0), data)
    v = np.asarray(valid)
    n = int(v.sum())
    assert int(state.buffer.size) == n > 0
    np.testing.assert_array_equal(np.asarray(state.buffer.data.rewards[:n]), np.asarray(trans.rewards)[v])
    np.testing.assert_array_equal(np.asarray(state.buffer.data.next_observations[:n]),
                                  np.asarray(trans.next_observations)[v])

    trans2, valid2, pen = mopo.model_rollout(agent, state0, data, k_roll)
    assert _leaves_equal((trans2, valid2), (trans, valid))
    np.testing.assert_array_equal(pen, mopo.aleatoric_penalty(model, trans.observations, trans.actions))
    buf = buffer_insert(buffer_init(config.rollout.buffer_capacity, OBS, ACT), mopo.penalise(trans, pen, 2.5), valid)
    np.testing.assert_allclose(np.asarray(buf.data.rewards[:n]), (np.asarray(trans.rewards) - 2.5 * np.asarray(pen))[v],
                               rtol=1e-6, atol=1e-6)


def test_select_action_and_seed_vmap(mopo_setup):
    config, agent, data, model, _ = mopo_setup
    state = _init(mopo, agent, 0, model)
    a = mopo.make_select_action(agent)(state, jax.random.PRNGKey(0), data.observations[:7])
    assert a.shape == (7, ACT) and bool(jnp.all(jnp.abs(a) <= agent.max_action))
    # both steps trace under vmap over seeds (no Python control flow on traced values)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    states = jax.eval_shape(jax.vmap(lambda k: mopo.init_state(agent, k, model)), keys)
    out, metrics = jax.eval_shape(jax.vmap(mopo.build_update_step(agent), in_axes=(0, None)), states, data)
    assert out.step.shape == (2,) and metrics["critic_loss"].shape == (2,)
    bc_agent = _agent(bc, config, data, _data()[1])
    bc_states = jax.eval_shape(jax.vmap(lambda k: bc.init_state(bc_agent, k, None)), keys)
    _, bc_metrics = jax.eval_shape(jax.vmap(bc.build_update_step(bc_agent), in_axes=(0, None)), bc_states, data)
    assert bc_metrics["bc_loss"].shape == (2,)
