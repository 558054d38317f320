"""Each AMPL loss against a hand-computed value or a property that fails if the loss is wrong."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ampl_jax import networks
from ampl_jax.methods.ampl import networks as ampl_nets
from ampl_jax.methods.ampl import actor, critic, discriminator
from ampl_jax.methods.ampl.update import real_fraction, real_rows


def test_critic_target_hand_computed():
    q_next = jnp.array([[1.0, 10.0, 3000.0], [3.0, 2.0, 3000.0]])
    r = jnp.array([0.5, 1.0, 0.0])
    d = jnp.array([0.0, 1.0, 0.0])
    y = critic.critic_target(q_next, r, d, gamma=0.99, min_weight=0.75, cap=2000.0)
    # row 0: 0.75 * 1 + 0.25 * 3 = 1.5 -> 0.5 + 0.99 * 1.5; row 1: terminal; row 2: Q' capped to 0
    np.testing.assert_allclose(y, [0.5 + 0.99 * 1.5, 1.0, 0.0], rtol=1e-6)


def test_critic_target_cap_drops_only_the_bootstrap_as_the_authors():
    """The authors zero gamma * Q' when |Q'| >= 2000 and keep the reward (actor_critic_trainer.py:147);
    zeroing the whole target would also drop row 1's reward and row 0's legitimate 2,081."""
    q_next = jnp.array([[1900.0, 2500.0, jnp.nan], [1900.0, 2500.0, jnp.nan]])
    r = jnp.array([200.0, 3.0, 4.0])
    y = critic.critic_target(q_next, r, jnp.zeros(3), gamma=0.99, min_weight=0.75, cap=2000.0)
    np.testing.assert_allclose(y, [200.0 + 0.99 * 1900.0, 3.0, 4.0], rtol=1e-6)


def test_critic_target_between_min_and_max():
    q_next = jax.random.normal(jax.random.PRNGKey(0), (2, 64))
    y = critic.critic_target(q_next, jnp.zeros(64), jnp.zeros(64), gamma=1.0)
    assert jnp.all(y >= q_next.min(0) - 1e-6) and jnp.all(y <= q_next.max(0) + 1e-6)
    # weighted towards the minimum: below the midpoint
    assert jnp.all(y <= 0.5 * (q_next.min(0) + q_next.max(0)) + 1e-6)


def test_critic_loss_huber_summed_over_heads():
    q = jnp.array([[0.0, 1000.0], [2.0, 0.0]])
    y = jnp.array([1.0, 0.0])
    loss, _ = critic.critic_loss(q, y, delta=500.0)
    # head 0: (0.5 * 1 + 500 * (1000 - 250)) / 2; head 1: (0.5 * 1 + 0) / 2
    expected = (0.5 + 500.0 * 750.0) / 2 + 0.5 / 2
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_action_to_raw_inverts_tanh_and_stays_finite():
    a = jnp.array([[-1.0, 0.0, 0.5, 1.0]])
    raw = discriminator.action_to_raw(a * 2.0, max_action=2.0)
    assert jnp.all(jnp.isfinite(raw))
    np.testing.assert_allclose(jnp.tanh(raw), a, atol=1e-6)


def test_discriminator_loss_falls_when_separating():
    n = 256
    labels = jnp.full((n,), 0.9)
    w = jnp.ones((n,))
    confused, _ = discriminator.discriminator_loss(jnp.zeros(n), jnp.zeros(n), labels, w)
    separating, aux = discriminator.discriminator_loss(jnp.full(n, 3.0), jnp.full(n, -3.0), labels, w)
    assert separating < confused
    assert aux["disc_true_prob"] > 0.9 and aux["disc_fake_prob"] < 0.1
    # confused D: both BCEs are log 2
    np.testing.assert_allclose(confused, np.log(2.0), rtol=1e-6)


def test_discriminator_training_separates_true_from_fake():
    """A few Adam steps on the loss make D tell two Gaussians apart."""
    d = ampl_nets.Discriminator((32, 32))
    k = jax.random.PRNGKey(0)
    true_obs = jax.random.normal(k, (256, 3)) + 2.0
    fake_obs = jax.random.normal(jax.random.PRNGKey(1), (256, 3)) - 2.0
    act = jnp.zeros((256, 1))
    params = d.init(k, true_obs, act)
    tx = optax.adam(1e-3)
    opt = tx.init(params)
    labels = jnp.full((256,), 0.9)

    def loss_fn(p):
        return discriminator.discriminator_loss(d.apply(p, true_obs, act), d.apply(p, fake_obs, act), labels,
                                                jnp.ones(256))[0]

    first = loss_fn(params)
    for _ in range(100):
        g = jax.grad(loss_fn)(params)
        u, opt = tx.update(g, opt)
        params = optax.apply_updates(params, u)
    assert loss_fn(params) < 0.6 * first


def test_fake_weights_mask_terminal_model_states():
    logits = jnp.array([5.0, -5.0])
    # only the first fake counts: generator loss is BCE(5, 1), tiny
    g_masked = discriminator.generator_loss(logits, jnp.array([1.0, 0.0]))
    g_all = discriminator.generator_loss(logits, jnp.array([1.0, 1.0]))
    np.testing.assert_allclose(g_masked, optax.losses.sigmoid_binary_cross_entropy(jnp.array(5.0), jnp.array(1.0)), rtol=1e-6)
    assert g_all > 10 * g_masked


def test_actor_loss_warm_start_and_scale():
    q = jnp.array([2.0, 4.0])
    scale_warm = actor.q_scale(jnp.array(40), 40, 10.0, jnp.array(5.0))
    scale_on = actor.q_scale(jnp.array(41), 40, 10.0, jnp.array(5.0))
    assert scale_warm == 0.0
    np.testing.assert_allclose(scale_on, 2.0)
    loss_warm, _ = actor.actor_loss(q, jnp.array(0.7), scale_warm)
    loss_on, _ = actor.actor_loss(q, jnp.array(0.7), scale_on)
    np.testing.assert_allclose(loss_warm, 0.7, rtol=1e-6)
    np.testing.assert_allclose(loss_on, -2.0 * 3.0 + 0.7, rtol=1e-6)


def test_best_of_n_picks_highest_min_q():
    acts = jnp.arange(2 * 3 * 1, dtype=jnp.float32).reshape(2, 3, 1)
    q = jnp.array([[0.0, 5.0, 1.0], [9.0, 2.0, 3.0]])
    np.testing.assert_array_equal(actor.best_of_n(acts, q)[:, 0], [1.0, 3.0])


def test_implicit_actor_bounds_and_raw():
    a = ampl_nets.ImplicitActor(act_dim=3, max_action=2.0, hidden_dims=(16,))
    obs = jax.random.normal(jax.random.PRNGKey(0), (8, 5)) * 100.0
    noise = ampl_nets.sample_noise(jax.random.PRNGKey(1), (8, 50), 1.0, 3.0)
    params = a.init(jax.random.PRNGKey(2), obs, noise)
    act, raw = a.apply(params, obs, noise)
    chex.assert_shape([act, raw], (8, 3))
    assert jnp.all(jnp.abs(act) <= 2.0)
    np.testing.assert_allclose(act, 2.0 * jnp.tanh(raw), rtol=1e-6)
    assert float(jnp.abs(noise).max()) <= 3.0
    # different noise gives different actions for the same state
    act2, _ = a.apply(params, obs, ampl_nets.sample_noise(jax.random.PRNGKey(3), (8, 50), 1.0, 3.0))
    assert not np.allclose(act, act2)


def test_twin_critic_heads_differ():
    c = networks.TwinCritic((16, 16))
    obs, act = jnp.ones((4, 3)), jnp.ones((4, 2))
    params = c.init(jax.random.PRNGKey(0), obs, act)
    q = c.apply(params, obs, act)
    chex.assert_shape(q, (2, 4))
    assert not np.allclose(q[0], q[1])


def test_miw_net_positive_and_starts_near_constant():
    m = ampl_nets.MIWNet((16, 16), alpha=0.5)
    obs = jax.random.normal(jax.random.PRNGKey(0), (64, 3))
    act = jax.random.normal(jax.random.PRNGKey(1), (64, 2))
    w = m.apply(m.init(jax.random.PRNGKey(2), obs, act), obs, act)
    assert jnp.all(w > 0)
    # small last layer: w starts close to softplus(0) ** 0.5
    np.testing.assert_allclose(w, np.sqrt(np.log(2.0)), atol=0.05)


@pytest.mark.parametrize(
    "epoch,expected", [(1, 1.0), (45, 1.0), (46, 0.9), (50, 0.9), (51, 0.8), (65, 0.6), (66, 0.5), (500, 0.5)]
)
def test_real_fraction_schedule(epoch, expected):
    cfg = ml_collections.ConfigDict(dict(fixed_real_fraction=-1.0, real_full_epochs=45, real_decay=0.1,
                                         real_decay_every=5, real_min=0.5))
    np.testing.assert_allclose(real_fraction(jnp.array(epoch), cfg), expected, atol=1e-6)


@pytest.mark.parametrize("batch", [512, 256])
def test_real_rows_truncate_as_the_authors_at_every_epoch(batch):
    """int(f * B) with the authors' float64 f (actor_critic_trainer.py:132-134), for every epoch of a
    paper run: 460 real rows of 512 at f = 0.9, where rounding gives 461."""
    cfg = ml_collections.ConfigDict(dict(fixed_real_fraction=-1.0, real_full_epochs=45, real_decay=0.1,
                                         real_decay_every=5, real_min=0.5))
    ours = [int(real_rows(real_fraction(jnp.array(e), cfg), batch)) for e in range(1, 101)]
    theirs = [int(min(max(1.0 - (e - 41) // 5 * 0.1, 0.5), 1.0) * batch) for e in range(1, 101)]
    assert ours == theirs
    assert int(real_rows(jnp.float32(0.9), 512)) == 460
