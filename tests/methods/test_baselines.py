"""Baselines (BC, MOPO, TD3+BC): they learn, the MOPO penalty means what it should, the steps are pure."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ampl_jax.methods import bc, get, mopo, td3bc
from ampl_jax.world_model.buffer import buffer_init, buffer_insert
from ampl_jax.data import preprocess
from ampl_jax.world_model import fit, init_model_state, termination_fn
from ampl_jax.world_model.ensemble import ensemble_apply
from tests import tiny_config
from tests.methods.ampl.test_update import ACT, OBS, _data
from tests.world_model.test_world_model import _hopper



def _config(**mopo_over):
    """Tiny; MOPO with its settings from the config (the test data are no MOPO dataset): h = 2,
    16 rollouts per period of 4 iterations, a pool of 5 epochs of 4 iterations."""
    c = tiny_config.get_config()
    c.bc.hidden_dims = (64, 64)
    c.bc.batch_size = 64
    c.rollout.period = 4
    c.mopo.hidden_dims = (32, 32)
    c.mopo.batch_size = 32
    c.mopo.update(dict(settings="config", horizon=2, rollout_batch_size=16, rollout_every=4, epoch_length=4))
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
    from ampl_jax import methods
    from ampl_jax.methods import ampl

    assert get("bc") is bc and get("mopo") is mopo and get("td3bc") is td3bc and get("ampl") is ampl
    assert bc.NEEDS_MODEL is False and mopo.NEEDS_MODEL is True and td3bc.NEEDS_MODEL is False and ampl.NEEDS_MODEL
    for name in methods.MODULES:  # every method implements the whole protocol the loop calls
        module = get(name)
        for attr in ("make_agent", "init_state", "build_update_step", "make_select_action", "make_hook",
                     "make_diagnostics"):
            assert callable(getattr(module, attr, None)), (name, attr)
    with pytest.raises(ValueError, match="unknown method 'cql'"):
        get("cql")


@pytest.mark.parametrize("method", ["ampl", "bc", "mopo", "td3bc"])
def test_agents_close_over_frozen_hyperparameters_not_the_config(method):
    import dataclasses

    from ampl_jax.methods import build_agent

    c = _config()
    c.method = method
    data, info = _data()
    agent = build_agent(c, data, info)
    assert not hasattr(agent, "config")
    assert dataclasses.is_dataclass(agent.hp)
    field = dataclasses.fields(agent.hp)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(agent.hp, field, None)
    # a key the step never reads leaves what it closes over unchanged
    other = _config()
    other.method, other.train.eval_every = method, 7
    assert _flat(build_agent(other, data, info).hp) == _flat(agent.hp)


def _flat(hp) -> dict:
    import dataclasses

    return {k: (_flat(v) if dataclasses.is_dataclass(v) else repr(v)) for k, v in vars(hp).items()}


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
# MOPO: its published settings, its penalty in its own units


def test_mopo_picks_its_published_settings_per_benchmark_cell():
    """configs/benchmark.py:<cell> with --config.method=mopo gets MOPO's own horizon and lambda
    (tianheyu927/mopo examples/config/d4rl), whatever rollout.horizon AMPL uses there."""
    from ampl_jax.config import validation as configuration
    from configs import benchmark

    expected = {"hopper-medium": (5, 5.0), "hopper-medium_replay": (5, 1.0), "hopper-medium_expert": (5, 1.0),
                "walker-medium": (5, 5.0), "walker-medium_replay": (1, 1.0), "walker-medium_expert": (1, 2.0)}
    for cell, (h, coef) in expected.items():
        for suffix in ("", "-long"):
            c = benchmark.get_config(cell + suffix)
            c.method = "mopo"
            configuration.validate(c)
            got = mopo.resolve_settings(c.mopo, c.dataset.id)
            assert got[:2] == (h, coef), cell  # before: rollout.horizon (1, 3 or 5) and lambda 1 everywhere
            assert "tianheyu927/mopo" in got[2]
    assert mopo.dataset_key("mujoco/walker2d/medium-replay-v0") == ("walker2d", "medium-replay")
    c = _config()
    c.mopo.settings = "published"
    with pytest.raises(configuration.ConfigError, match="MOPO published no settings for dataset 'ampl/test/x-v0'"):
        mopo.resolve_settings(c.mopo, "ampl/test/x-v0")
    c.mopo.update(settings="config", horizon=2, penalty_coef=0.25)
    assert mopo.resolve_settings(c.mopo, "ampl/test/x-v0")[:2] == (2, 0.25)


def test_mopo_rollout_volume_pool_and_real_rows_are_mopos():
    from ampl_jax.config import defaults as config_default, validation as configuration

    c = config_default.get_config()
    c.method = "mopo"
    starts, pool = mopo.rollout_volume(c.mopo, c.rollout.period, 5)
    assert (starts, pool) == (12_500, 1_250_000)  # 50,000 every 1,000 iterations; 5 epochs of 50,000 h
    assert mopo.rollout_volume(c.mopo, 250, 1) == (12_500, 250_000)
    data, info = _data()
    agent = _agent(mopo, _config(), data, info)
    assert mopo.n_real(agent) == int(agent.hp.batch_size * 0.05)
    assert mopo.n_real(dataclasses_replace(agent, batch_size=256)) == 12  # int(12.8), before: round -> 13
    c.mopo.rollout_every = 300  # 50,000 * 250 / 300 is no whole number of starts
    with pytest.raises(configuration.ConfigError, match="config.mopo.rollout_every=300"):
        configuration.validate(c)


def dataclasses_replace(agent, **hp):
    import dataclasses

    return dataclasses.replace(agent, hp=dataclasses.replace(agent.hp, **hp))


def test_penalty_is_the_max_over_all_members_in_mopos_units(mopo_setup):
    """u = max over ALL members (not the elites) of the std's norm over (reward, s' - s) in raw
    units: the reward's std in raw reward units (r~'s times r_max - r_min)."""
    _, agent, data, model, _ = mopo_setup
    model = model.replace(elites=jnp.asarray([2], jnp.int32))  # one elite: the max must still see all 3
    obs, act = data.observations[:64] * 3.0, data.actions[:64]
    span = agent.reward_span
    assert span == pytest.approx(float(jnp.max(data.rewards) - jnp.min(data.rewards)))
    pen = mopo.aleatoric_penalty(model, obs, act, span)
    _, logstd = ensemble_apply(model.params, model.input_norm(jnp.concatenate([obs, act], -1)))  # [M, B, D]
    std = np.exp(np.asarray(logstd, np.float64)) * np.asarray(model.target_norm.std)
    std[..., 0] *= span
    expected = np.max(np.linalg.norm(std, axis=-1), axis=0)
    assert pen.shape == (64,) and bool(jnp.all(pen >= 0))
    np.testing.assert_allclose(np.asarray(pen), expected, rtol=1e-5)
    elites_only = np.max(np.linalg.norm(std[[2]], axis=-1), axis=0)
    assert np.any(np.abs(np.asarray(pen) - elites_only) > 1e-3 * expected)  # the old rule differs here


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
    pen_in = float(jnp.mean(mopo.aleatoric_penalty(model, train.observations, train.actions, 1.0)))
    d = np.random.default_rng(0).normal(size=train.observations.shape).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    sd = jnp.std(train.observations, axis=0)
    pen_far = [float(jnp.mean(mopo.aleatoric_penalty(model, train.observations + r * sd * d, train.actions, 1.0)))
               for r in (10.0, 30.0)]
    print(f"mean penalty: data {pen_in:.3f}, 10 std away {pen_far[0]:.3f}, 30 std away {pen_far[1]:.3f}")
    assert pen_in < pen_far[0] < pen_far[1]
    assert pen_far[1] > 1.2 * pen_in


def test_model_step_samples_an_elite_in_raw_units(mopo_setup):
    """model_step's s' and r are a Gaussian draw of an elite, mapped back to raw units (r = the
    un-scaled r~); its penalty is aleatoric_penalty's."""
    _, agent, data, model, _ = mopo_setup
    obs, act = data.observations[:32], data.actions[:32]
    key = jax.random.PRNGKey(5)
    nxt, rew, pen = mopo.model_step(agent, model, key, obs, act)
    # the same draw by hand
    k_member, k_noise = jax.random.split(key)
    member = np.asarray(model.elites)[np.asarray(jax.random.randint(k_member, (32,), 0, model.elites.shape[0]))]
    mean, logstd = ensemble_apply(model.params, model.input_norm(jnp.concatenate([obs, act], -1)))
    rows = np.arange(32)
    z = np.asarray(mean)[member, rows] + np.exp(np.asarray(logstd))[member, rows] * np.asarray(
        jax.random.normal(k_noise, (32, mean.shape[-1])))
    y = z * np.asarray(model.target_norm.std) + np.asarray(model.target_norm.mean)
    r_min, r_max = float(jnp.min(data.rewards)), float(jnp.max(data.rewards))
    np.testing.assert_allclose(np.asarray(rew), y[:, 0] * (r_max - r_min) + r_min - 1e-3, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(nxt), np.asarray(obs) + y[:, 1:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(pen), np.asarray(mopo.aleatoric_penalty(model, obs, act, agent.reward_span)),
                               rtol=1e-5)


def test_mopo_rollouts_end_by_the_env_rule_only():
    """A model state far outside the data's range ends an AMPL rollout (rollout.py's extra rules)
    but not a MOPO one: its dones are the env rule's, and a rollout goes on exactly while it is
    alive; a hopper whose height falls below 0.7 stops after that step."""
    config = _config(penalty_coef=0.0, horizon=3)
    data, info = _data()
    agent = _agent(mopo, config, data, info)
    model = _model(config, data)
    mean0 = np.asarray(model.target_norm.mean)
    term = termination_fn(info.env_id)
    obs_range = np.asarray(preprocess.obs_range(data.observations, data.next_observations))

    def roll(shift):
        m = model.replace(target_norm=model.target_norm._replace(mean=jnp.asarray(mean0 + shift)))
        state = _init(mopo, agent, 0, m)
        out = jax.jit(lambda s, k: mopo.model_rollout(agent, s, data, k))(state, jax.random.PRNGKey(2))
        return jax.device_get(out)

    # the joints (obs[2:], targets 3:) move by 5 per step: |s'| > obs_range, healthy for hopper
    shift = np.zeros_like(mean0)
    shift[3:] = 5.0
    trans, valid, _ = roll(shift)
    done = np.asarray(term(trans.observations, trans.actions, trans.next_observations))
    np.testing.assert_array_equal(trans.dones, done.astype(np.float32))
    out_of_range = ~np.all(np.abs(trans.next_observations) <= obs_range, axis=-1)
    assert (valid & out_of_range & ~done).sum() > 0.5 * valid.sum()  # AMPL would stop all of these
    v, d = valid.reshape(3, -1), done.reshape(3, -1)
    np.testing.assert_array_equal(v[1:], v[:-1] & ~d[:-1])
    assert v[2].sum() > 0.5 * v[0].sum()
    # the height (obs[0], target 1) falls by 5: every rollout ends after its first step
    shift = np.zeros_like(mean0)
    shift[1] = -5.0
    trans, valid, _ = roll(shift)
    v, d = valid.reshape(3, -1), np.asarray(trans.dones).reshape(3, -1)
    assert v[0].all() and d[0].all() and not v[1:].any()


def test_mopo_runs_saved_before_are_refused_on_resume():
    from ampl_jax.config import defaults as config_default, validation as configuration

    new = configuration.to_dict(config_default.get_config())
    old = configuration.to_dict(config_default.get_config())
    for key in ("settings", "horizon", "rollout_batch_size", "rollout_every", "model_retain_epochs", "epoch_length",
                "target_entropy"):
        del old["mopo"][key]
    assert configuration.differences(old, new) == []  # an AMPL run resumes
    old["method"] = new["method"] = "mopo"
    assert [d.split(":")[0] for d in configuration.differences(old, new)] == ["mopo.settings"]


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
    config, agent, _, model, _ = mopo_setup
    s1, m1 = _run(mopo_setup, seed=0)
    s2, m2 = _run(mopo_setup, seed=0)
    s3, _ = _run(mopo_setup, seed=1)
    assert _leaves_equal(s1, s2) and _leaves_equal(m1, m2)
    assert not _leaves_equal(s1.actor, s3.actor)
    period = config.rollout.period
    assert int(s1.step) == 2 * period
    assert int(s1.critic_opt[0].count) == 2 * period and int(s1.actor_opt[0].count) == 2 * period
    assert agent.hp.starts_per_rollout == 16 and agent.hp.horizon == 2 and agent.hp.buffer_capacity == 160
    assert 0 < int(s1.buffer.size) <= 2 * 16 * 2
    for name in ("critic_loss", "actor_loss", "alpha", "entropy", "penalty_mean", "rollout_valid_fraction"):
        assert name in m1 and np.isfinite(m1[name]), name
    assert m1["penalty_mean"] > 0  # computed (and logged) even when it is not applied
    assert (m1["rollout_horizon"], m1["penalty_coef"]) == (2.0, 0.0)
    assert _leaves_equal(s1.model, model)  # the step never changes the world model


def test_buffer_holds_the_rollout_with_rewards_minus_lambda_u(mopo_setup):
    """The buffer gets exactly model_rollout's valid transitions for the step's keys (lambda = 0),
    and a nonzero lambda inserts r - lambda * u row for row; real rows carry the raw reward."""
    config, agent, data, model, step = mopo_setup
    state0 = _init(mopo, agent, 3, model)
    _, k_roll, _ = jax.random.split(state0.key, 3)
    trans, valid, pen = mopo.model_rollout(agent, state0, data, k_roll)
    state, _ = step(_copy(state0), data)
    v = np.asarray(valid)
    n = int(v.sum())
    assert int(state.buffer.size) == n > 0
    np.testing.assert_array_equal(np.asarray(state.buffer.data.rewards[:n]), np.asarray(trans.rewards)[v])
    np.testing.assert_array_equal(np.asarray(state.buffer.data.next_observations[:n]),
                                  np.asarray(trans.next_observations)[v])
    buf = buffer_insert(buffer_init(config.mopo.model_retain_epochs * 64, OBS, ACT), mopo.penalise(trans, pen, 2.5),
                        valid)
    np.testing.assert_allclose(np.asarray(buf.data.rewards[:n]), (np.asarray(trans.rewards) - 2.5 * np.asarray(pen))[v],
                               rtol=1e-6, atol=1e-6)
    batch = mopo._batch(agent, state, data, jax.random.PRNGKey(0))
    nr = mopo.n_real(agent)
    assert set(np.asarray(batch.rewards[:nr]).tolist()) <= set(np.asarray(data.rewards).tolist())


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


def test_mopo_actor_clamps_its_log_std_as_softlearning(mopo_setup):
    _, agent, data, model, _ = mopo_setup
    assert agent.actor.clamp_log_std and (agent.actor.log_std_min, agent.actor.log_std_max) == (-20.0, 2.0)
    assert agent.hp.target_entropy == -3.0


# --------------------------------------------------------------------------------------------
# TD3+BC


def _td3bc_agent(data, info, **over):
    config = _config()
    config.td3bc.hidden_dims = (32, 32)
    config.td3bc.batch_size = 32
    config.td3bc.update(over)
    return td3bc.make_agent(config, info, data=data)


def _teacher():
    """A deterministic behaviour policy the data follow (as in the BC test)."""
    w = np.random.default_rng(1).normal(size=(OBS, ACT)).astype(np.float32)
    centre = np.zeros(OBS, np.float32)
    centre[0] = 1.25
    return lambda s: (0.9 * np.tanh(10.0 * (s - centre) @ w)).astype(np.float32)


@pytest.fixture(scope="module")
def td3bc_setup():
    """One agent, one compiled init and one compiled step for every TD3+BC test (compiles dominate)."""
    data, info = _data(policy=_teacher())
    agent = _td3bc_agent(data, info)
    init = jax.jit(lambda k: td3bc.init_state(agent, k, None))
    return agent, data, init, td3bc.make_update_step(agent)


def _td3bc_run(setup, seed, chunks=2):
    _, data, init, step = setup
    state = init(jax.random.PRNGKey(seed))
    for _ in range(chunks):
        state, metrics = step(state, data)
    return jax.device_get(state), jax.device_get(metrics)


def test_td3bc_step_deterministic_finite_and_delayed(td3bc_setup):
    agent, _, init, _ = td3bc_setup
    s1, m1 = _td3bc_run(td3bc_setup, seed=0)
    s2, m2 = _td3bc_run(td3bc_setup, seed=0)
    s3, _ = _td3bc_run(td3bc_setup, seed=1)
    assert _leaves_equal(s1, s2) and _leaves_equal(m1, m2)
    assert not _leaves_equal(s1.actor, s3.actor)
    period = agent.hp.period
    assert int(s1.step) == 2 * period
    # policy delay 2: one actor (and target) step per two critic steps
    assert int(s1.critic_opt[0].count) == 2 * period and int(s1.actor_opt[0].count) == period
    for name in ("critic_loss", "q_mean", "target_mean", "actor_loss", "bc_mse", "q_lambda"):
        assert name in m1 and np.isfinite(m1[name]), name
    assert all(bool(np.all(np.isfinite(x))) for x in jax.tree.leaves(s1))
    # the targets moved by Polyak steps: neither where they started nor equal to the online networks
    s0 = jax.device_get(init(jax.random.PRNGKey(0)))
    for online, target, start in ((s1.critic, s1.critic_target, s0.critic_target),
                                  (s1.actor, s1.actor_target, s0.actor_target)):
        assert not _leaves_equal(target, start) and not _leaves_equal(target, online)


def test_td3bc_normalises_states_and_uses_raw_rewards(td3bc_setup):
    agent, data, init, _ = td3bc_setup
    obs = np.asarray(data.observations, np.float64)
    np.testing.assert_allclose(agent.obs_mean, obs.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(agent.obs_std, obs.std(0) + 1e-3, rtol=1e-5)
    batch = jax.jit(lambda k: td3bc.sample_batch(agent, data, k))(jax.random.PRNGKey(0))
    norm = np.asarray(batch.observations)
    assert abs(norm.mean()) < 0.5 and 0.5 < norm.std() < 1.5  # the 0.1-std states are blown up to ~1
    assert set(np.asarray(batch.rewards).tolist()) <= set(np.asarray(data.rewards).tolist())  # raw, not r~
    # evaluation sees the same normalisation as training
    state = init(jax.random.PRNGKey(0))
    a = td3bc.make_select_action(agent)(state, jax.random.PRNGKey(0), data.observations[:7])
    expected = jax.jit(lambda p, o: agent.act(p, (o - agent.obs_mean) / agent.obs_std))(state.actor, data.observations[:7])
    np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-6)
    assert a.shape == (7, ACT) and bool(jnp.all(jnp.abs(a) <= agent.max_action))
    off = _td3bc_agent(data, _data()[1], normalize_states=False)
    assert np.all(off.obs_mean == 0) and np.all(off.obs_std == 1)


def test_td3bc_actor_loss_is_lambda_q_plus_mse(td3bc_setup):
    agent, data, init, _ = td3bc_setup
    state = init(jax.random.PRNGKey(0))
    obs, act = agent.normalise(data.observations[:64]), data.actions[:64]

    @jax.jit
    def check(actor, critic):
        (loss, m), grads = jax.value_and_grad(lambda p: td3bc.actor_loss(agent, p, critic, obs, act),
                                              has_aux=True)(actor)
        pi = agent.act(actor, obs)
        q1 = agent.critic.apply(critic, obs, pi)[0]
        lam = 2.5 / jnp.mean(jnp.abs(q1))
        # lambda is a constant of the gradient
        ref = jax.grad(lambda p: -lam * jnp.mean(agent.critic.apply(critic, obs, agent.act(p, obs))[0])
                       + jnp.mean(jnp.square(agent.act(p, obs) - act)))(actor)
        return loss, m, lam, -lam * jnp.mean(q1) + jnp.mean(jnp.square(pi - act)), grads, ref

    loss, m, lam, expected, grads, ref = jax.device_get(check(state.actor, state.critic))
    assert float(m["q_lambda"]) == pytest.approx(float(lam), rel=1e-5)
    assert float(loss) == pytest.approx(float(expected), rel=1e-4, abs=1e-6)
    for x, y in zip(jax.tree.leaves(grads), jax.tree.leaves(ref)):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-6)


def test_td3bc_pulls_the_policy_to_the_data_actions(td3bc_setup):
    """Constant rewards, so Q is flat in the action: the BC term must fit the teacher's actions.

    (With rewards of pure noise Q ~ 0 and lambda = 2.5 / mean |Q| is huge: the noise wins, as it
    would in the authors' code.) 200 chunks = 800 critic and 400 actor steps: MSE 0.56 -> 0.09.
    """
    agent, data, init, step = td3bc_setup
    data = data._replace(rewards=jnp.ones_like(data.rewards))
    state = init(jax.random.PRNGKey(0))
    select = td3bc.make_select_action(agent)
    mse = lambda s: float(jnp.mean(jnp.square(select(s, jax.random.PRNGKey(0), data.observations) - data.actions)))
    before, history = mse(state), []
    for _ in range(200):
        state, metrics = step(state, data)
        history.append(jax.device_get(metrics))
    after = mse(state)
    first, last = history[:20], history[-20:]
    mean = lambda rows, k: float(np.mean([r[k] for r in rows]))
    print(f"TD3+BC: policy MSE to the data actions {before:.4f} -> {after:.4f}; actor loss "
          f"{mean(first, 'actor_loss'):.3f} -> {mean(last, 'actor_loss'):.3f}")
    assert after < before / 4, (before, after)
    assert mean(last, "bc_mse") < mean(first, "bc_mse") / 3
    assert mean(last, "actor_loss") < mean(first, "actor_loss")


def test_td3bc_vmaps_over_seeds(td3bc_setup):
    agent, data, _, _ = td3bc_setup
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    states = jax.eval_shape(jax.vmap(lambda k: td3bc.init_state(agent, k, None)), keys)
    out, metrics = jax.eval_shape(jax.vmap(td3bc.build_update_step(agent), in_axes=(0, None)), states, data)
    assert out.step.shape == (2,) and metrics["critic_loss"].shape == (2,) and metrics["bc_mse"].shape == (2,)


def test_td3bc_config_checks():
    from ampl_jax.config import validation as configuration
    from configs import default

    c = default.get_config()
    assert (c.td3bc.alpha, c.td3bc.batch_size, c.td3bc.policy_delay, tuple(c.td3bc.hidden_dims)) == (2.5, 256, 2, (256, 256))
    c.method = "td3bc"
    configuration.validate(c)
    for key, value, needle in (("policy_delay", 3, "multiple of config.td3bc.policy_delay=3"),
                               ("alpha", -1.0, "config.td3bc.alpha=-1.0 must be >= 0"),
                               ("tau", 2.0, "config.td3bc.tau=2.0 must lie in [0, 1]"),
                               ("batch_size", 0, "config.td3bc.batch_size=0 must be a positive integer")):
        bad = default.get_config()
        bad.method = "td3bc"
        bad.td3bc[key] = value
        with pytest.raises(configuration.ConfigError, match=re.escape(needle)):
            configuration.validate(bad)
