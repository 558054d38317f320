"""Where the paper is silent, ampl-jax does what the authors' code does (docs/fidelity.md).

One test per fixed deviation; each fails on the behaviour before the fix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ampl_jax import networks
from ampl_jax.methods.ampl import update as update_lib
from ampl_jax.methods.ampl.state import init_train_state
from ampl_jax.methods import build_agent as build
from ampl_jax.methods.ampl.update import iteration, make_update_step
from ampl_jax.methods.ampl.miw_step import make_miw_phase
from ampl_jax.world_model.fit import init_model_state
from ampl_jax.world_model.rollout import predict
from tests import tiny_config
from tests.methods.ampl.test_update import _data


def _setup(seed=0, **overrides):
    config = tiny_config.get_config()
    for name, value in overrides.items():
        section, key = name.split("__")
        config[section][key] = value
    data, info = _data()
    agent = build(config, data, info)
    model = init_model_state(jax.random.PRNGKey(1), data.transitions(), config.model)
    return config, agent, data, init_train_state(agent, jax.random.PRNGKey(seed), model)


def _at_epoch(state, config, epoch):
    return state.replace(step=jnp.asarray((epoch - 1) * config.train.epoch_length, jnp.int32))


def _finite_tree(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree)
               if np.issubdtype(np.asarray(x).dtype, np.floating))


def _nan_model(state):
    """A world model that emits inf/NaN for about half of all inputs: one input column's first-layer
    weights are huge, so inputs on one side of it overflow and the other side stays finite."""
    params = state.model.params
    first = params["hidden"][0]
    poisoned = {**first, "w": first["w"].at[:, 1, :].set(3e38)}  # [members, in, out]
    params = {**params, "hidden": [poisoned, *params["hidden"][1:]]}
    return state.replace(model=state.model.replace(params=params))


def test_non_finite_model_samples_never_reach_a_loss():
    config, agent, data, state = _setup()
    state = _nan_model(state)
    next_obs, rew = predict(state.model, jax.random.PRNGKey(0), data.observations[:200], data.actions[:200])
    bad = ~np.all(np.isfinite(np.asarray(next_obs)), axis=-1) | ~np.isfinite(np.asarray(rew))
    assert 0.1 < bad.mean() < 0.9, bad.mean()  # some samples are non-finite, some are not

    # the whole step: rollouts into the buffer, critic targets on those rows, the GAN's fake s'
    state = _at_epoch(state, config, 100)  # past the warm start: the critic batch is half model data
    new, metrics = make_update_step(agent)(state, data)
    assert all(np.isfinite(float(v)) for v in jax.device_get(metrics).values()), metrics
    assert float(metrics["fake_alive_fraction"]) < 0.95  # non-finite fakes were dropped, not kept
    new = jax.device_get(new)
    for field in ("actor", "critic", "disc", "miw", "buffer"):
        assert _finite_tree(getattr(new, field)), field


def test_phased_schedule_starts_q1_slow_copy_from_the_critic_target():
    config, agent, data, state = _setup(miw__schedule="phased", miw__phased_steps=1)
    # make the three critics differ: Q1' must start from the target, not from its own past
    state = state.replace(
        critic_target=jax.tree.map(lambda p: p + 0.1, state.critic),
        miw_critic=jax.tree.map(lambda p: p - 0.3, state.critic),
    )
    tau = config.miw.tau
    expected = jax.tree.map(lambda c, t: tau * c + (1 - tau) * t, state.critic, state.critic_target)
    critic = jax.device_get(state.critic)
    new, _ = make_miw_phase(agent, 1)(state, data)
    for got, exp in zip(jax.tree.leaves(jax.device_get(new.miw_critic)), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(exp), rtol=1e-6, atol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(critic), jax.tree.leaves(new.critic)))


def test_no_regularizer_keeps_the_gan_in_the_warm_start_then_unscaled_q():
    config, agent, data, state = _setup(agent__regularizer="none")
    step = jax.jit(lambda s: iteration(agent, s, data, jax.random.PRNGKey(5), True))
    warm, m_warm = step(_at_epoch(state, config, 1))
    assert float(m_warm["actor_loss"]) == pytest.approx(float(m_warm["generator_loss"]))
    assert float(m_warm["actor_q_term"]) == 0.0 and "disc_loss" in m_warm
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(warm.disc), jax.tree.leaves(state.disc)))
    # after the warm start: -mean Q, whatever |Q|avg is (no 10 / |Q|avg scale), no generator term
    late = _at_epoch(state, config, 100)
    _, m1 = step(late.replace(q_abs_avg=jnp.asarray(1.0)))
    _, m2 = step(late.replace(q_abs_avg=jnp.asarray(123.0)))
    assert float(m1["actor_loss"]) == pytest.approx(float(m1["actor_q_term"]))
    assert float(m1["actor_loss"]) == pytest.approx(float(m2["actor_loss"]), rel=1e-6)


def test_target_actor_and_q_average_move_every_iteration():
    config, agent, data, state = _setup()
    assert float(state.q_abs_avg) < 0  # unset until the first batch
    state = state.replace(actor_target=jax.tree.map(lambda p: p + 0.05, state.actor))
    tau = config.agent.actor_tau
    expected = jax.tree.map(lambda a, t: tau * a + (1 - tau) * t, state.actor, state.actor_target)
    plain = jax.jit(lambda s, k: iteration(agent, s, data, k, False))
    s1, _ = plain(state, jax.random.PRNGKey(0))  # no actor step in this iteration
    for got, exp in zip(jax.tree.leaves(s1.actor_target), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(exp), rtol=1e-6, atol=1e-7)
    first = float(s1.q_abs_avg)
    assert first > 0 and first != pytest.approx(1.0)  # the first batch's mean |Q|, not an EMA from 1.0
    s2, _ = plain(s1, jax.random.PRNGKey(1))
    assert float(s2.q_abs_avg) != first  # the EMA moves on a non-actor iteration too


def test_gan_draws_its_own_fake_states_and_true_pairs():
    config, agent, data, state = _setup()
    n = config.agent.batch_size
    pairs = jax.jit(lambda s: update_lib._gan_pairs(agent, s, data, jax.random.PRNGKey(2), jnp.asarray(n)))(state)
    fake_states, true_states = np.asarray(pairs.fake_obs[:n]), np.asarray(pairs.true_obs[:n])
    same_rows = np.mean(np.all(fake_states == true_states, axis=-1))
    assert same_rows < 0.2, same_rows  # independent batches (500 rows: ~1/500 coincide by chance)
    # as many true pairs as live fake pairs
    assert float(jnp.sum(pairs.true_w)) == float(jnp.sum(pairs.fake_w)) == n + float(jnp.sum(pairs.fake_w[n:]))


def test_generator_loss_reads_the_discriminator_before_its_step():
    """The actor's update equals the one computed against the pre-step discriminator."""
    config, agent, data, state = _setup()
    state = _at_epoch(state, config, 1)  # warm start: the generator loss alone drives the actor
    key = jax.random.PRNGKey(7)
    new, _ = jax.jit(lambda s: iteration(agent, s, data, key, True))(state)

    @jax.jit  # one program rather than op-by-op dispatch of every piece
    def replay(state):
        """The iteration's pieces with the same keys: critic step, then the policy loss."""
        k_real, k_model, k_critic, k_gan, k_q, _, _ = jax.random.split(key, 7)
        n = config.agent.batch_size
        f = update_lib.real_fraction(update_lib._epoch(agent, state.step), config.rollout)
        batch = update_lib._mix(
            data.sample(k_real, n),
            update_lib.buffer_sample(state.buffer, k_model, n), jnp.round(f * n))
        after_critic, _ = update_lib.critic_step(agent, state, batch, k_critic)
        pairs = update_lib._gan_pairs(agent, after_critic, data, k_gan, jnp.round(f * n))
        q_noise = agent.noise(k_q, n)

        def policy_grads(disc):
            return jax.grad(lambda p: update_lib._policy_loss(
                agent, after_critic.replace(disc=disc), p, batch.observations, q_noise, pairs)[0])(after_critic.actor)

        grads = policy_grads(after_critic.disc)
        expected = update_lib._actor_step(agent, after_critic, grads).actor
        stepped = update_lib._disc_step(agent, after_critic, pairs, jax.random.PRNGKey(0))[0]
        return expected, grads, policy_grads(stepped.disc)

    expected, grads, grads_after = replay(state)
    for got, exp in zip(jax.tree.leaves(new.actor), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(exp), rtol=1e-5, atol=1e-6)
    # and differs from an update against the stepped discriminator
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_after)))


def test_rollouts_add_batches_until_the_transition_budget():
    config, agent, data, state = _setup(rollout__transitions_per_rollout=100, rollout__batch_size=16,
                                        rollout__horizon=3)
    buf, count, starts = jax.jit(lambda s: update_lib.model_rollouts(agent, s, data, jax.random.PRNGKey(0)))(state)
    count, starts = int(count), int(starts)
    # batches of 16 starts until 100 transitions; the last batch starts only as many as are missing
    assert 100 <= count < 100 + 16 * 3 and int(buf.size) == count
    assert -(-100 // 3) <= starts <= 100


def test_torch_linear_initialisation():
    _, agent, _, state = _setup()
    kernel, bias = map(np.asarray, networks.dense_layers(networks.first_head(agent.critic, state.critic)[1])[0])
    bound = 1 / np.sqrt(kernel.shape[0])
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound  # U(+-1/sqrt(fan_in))
    assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0.5 * bound  # biases too, not zeros
    last = state.miw["params"]["MLP_0"]["Dense_2"]
    assert np.abs(np.asarray(last["kernel"])).max() <= 3e-3 and not np.any(np.asarray(last["bias"]))


def test_mean_bound_correction_per_tensor_as_the_authors():
    """The authors' Constraint optimiser corrects every parameter tensor with its own lambda."""
    from ampl_jax.methods.ampl.miw import constrained_direction

    gf = {"a": jnp.asarray([1.0, 0.0]), "b": jnp.asarray([-2.0])}
    gg = {"a": jnp.asarray([0.0, 1.0]), "b": jnp.asarray([1.0])}
    g, bound = 12.0, 10.0  # violated by 2
    d, _ = constrained_direction(gf, gg, jnp.asarray(g), bound, per_tensor=True)
    # tensor a: phi = min(2, 1) = 1, <gf, gg> = 0 -> lambda 1; tensor b: phi = min(2, 1) = 1, dot -2 -> lambda 3
    np.testing.assert_allclose(np.asarray(d["a"]), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(d["b"]), [1.0], rtol=1e-6)
    d_global, lam = constrained_direction(gf, gg, jnp.asarray(g), bound, per_tensor=False)
    # one vector: phi = min(2, 2) = 2, dot = -2 -> lambda 2
    assert float(lam) == pytest.approx(2.0)
    np.testing.assert_allclose(np.asarray(d_global["a"]), [1.0, 2.0], rtol=1e-6)
