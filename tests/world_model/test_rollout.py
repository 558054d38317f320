"""Model sampling and rollouts: per-state actions, elites, alive mask, range and reward rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ampl_jax.types import Transitions
from ampl_jax.world_model import init_model_state, predict, rollout
from ampl_jax.world_model.ensemble import Normalizer

OBS, ACT, B, H = 4, 2, 64, 4


def _state(num_members=5, num_elites=3):
    cfg = ml_collections.ConfigDict(dict(
        num_members=num_members, num_elites=num_elites, hidden_dims=(16, 16),
        learning_rate=1e-3, max_logstd_init=0.25, min_logstd_init=-5.0))
    rng = np.random.default_rng(0)
    n = 256
    data = Transitions(*(jnp.asarray(x, jnp.float32) for x in (
        rng.normal(size=(n, OBS)), rng.normal(size=(n, ACT)), rng.normal(size=n),
        rng.normal(size=(n, OBS)), np.zeros(n))))
    return init_model_state(jax.random.PRNGKey(0), data, cfg)


def _constant_model(reward: float, delta) -> object:
    """Every member predicts exactly (reward, delta): a target normaliser with std 0."""
    st = _state()
    mean = jnp.asarray([reward, *delta], jnp.float32)
    return st.replace(target_norm=Normalizer(mean, jnp.zeros_like(mean)))


def _never(o, a, n):
    return jnp.zeros(n.shape[:-1], bool)


def test_random_elite_per_input():
    st = _state()
    # member m predicts exactly m (deterministic mean) for every target dim
    head = st.params["head"]
    m = jnp.arange(5, dtype=jnp.float32)
    head = {"w": jnp.zeros_like(head["w"]),
            "b": jnp.concatenate([jnp.broadcast_to(m[:, None], (5, OBS + 1)),
                                  jnp.zeros((5, OBS + 1))], -1)}
    st = st.replace(params={**st.params, "head": head}, elites=jnp.asarray([1, 4], jnp.int32),
                    target_norm=Normalizer(jnp.zeros(OBS + 1), jnp.ones(OBS + 1)))
    obs, act = jnp.zeros((301, OBS)), jnp.zeros((301, ACT))
    pred = jax.jit(predict, static_argnames=("deterministic", "elite_sampling"))
    for mode in ("iid", "balanced"):
        nxt, rew = pred(st, jax.random.PRNGKey(0), obs, act, deterministic=True, elite_sampling=mode)
        r = np.asarray(rew)
        assert set(np.unique(r)) == {1.0, 4.0}, mode
        assert 100 < (r == 1.0).sum() < 201, mode
        np.testing.assert_array_equal(np.asarray(nxt), np.repeat(r[:, None], OBS, 1))
    # stochastic samples differ from the mean and across keys
    a = pred(st, jax.random.PRNGKey(0), obs, act)[0]
    b = pred(st, jax.random.PRNGKey(1), obs, act)[0]
    assert not np.allclose(a, b)


def test_every_state_gets_its_own_action_and_shapes():
    st = _state()
    calls = []

    def policy(key, obs):
        calls.append(obs.shape)
        return jnp.tanh(obs[:, :ACT]) + 0.01 * jax.random.normal(key, (obs.shape[0], ACT))

    start = jax.random.normal(jax.random.PRNGKey(1), (B, OBS))
    run = jax.jit(rollout, static_argnums=(2, 4, 5))
    tr, valid = run(jax.random.PRNGKey(2), st, policy, start, H, _never, jnp.full(OBS, 1e6), 1e6)
    assert calls and all(c == (B, OBS) for c in calls)  # called on the whole batch
    assert tr.observations.shape == (H * B, OBS) and tr.actions.shape == (H * B, ACT)
    assert tr.rewards.shape == tr.dones.shape == valid.shape == (H * B,)
    a, o = np.asarray(tr.actions), np.asarray(tr.observations)
    np.testing.assert_allclose(a, np.tanh(o[:, :ACT]), atol=0.05)
    assert len(np.unique(a[:B, 0])) == B  # no broadcast of one action to the batch
    assert np.asarray(valid).all()
    # step-major layout: step t+1 starts where step t ended
    np.testing.assert_array_equal(o[B:2 * B], np.asarray(tr.next_observations[:B]))
    np.testing.assert_array_equal(o[:B], np.asarray(start))


def test_alive_mask_stops_after_termination():
    st = _constant_model(0.5, [1.0, 0.0, 0.0, 0.0])  # s'_0 = s_0 + 1

    def term(o, a, n):
        return n[:, 0] > 2.5

    start = jnp.zeros((5, OBS)).at[:, 0].set(jnp.asarray([0.0, 1.0, 2.0, -10.0, 1.6]))
    tr, valid = rollout(jax.random.PRNGKey(0), st, lambda k, o: jnp.zeros((o.shape[0], ACT)),
                        start, 3, term, jnp.full(OBS, 100.0), 10.0)
    v, d = np.asarray(valid).reshape(3, 5), np.asarray(tr.dones).reshape(3, 5)
    # s_0 after steps 1..3: start+1, +2, +3; done when > 2.5
    np.testing.assert_array_equal(d, [[0, 0, 1, 0, 1], [0, 1, 1, 0, 1], [1, 1, 1, 0, 1]])
    np.testing.assert_array_equal(v, [[1, 1, 1, 1, 1], [1, 1, 0, 1, 0], [1, 0, 0, 1, 0]])
    np.testing.assert_allclose(np.asarray(tr.rewards), 0.5)  # env terminations keep the reward


def test_obs_range_and_reward_bound():
    st = _constant_model(0.5, [0.0, 1.0, 0.0, 0.0])  # s'_1 = s_1 + 1
    start = jnp.zeros((3, OBS)).at[:, 1].set(jnp.asarray([0.0, 3.5, -6.5]))
    obs_range = jnp.asarray([100.0, 5.0, 100.0, 100.0])
    pol = lambda k, o: jnp.zeros((o.shape[0], ACT))  # noqa: E731
    tr, valid = rollout(jax.random.PRNGKey(0), st, pol, start, 2, _never, obs_range, 2.0)
    # s'_1: [1, 4.5, -5.5] then [2, 5.5, -4.5]; |-5.5| > 5 at step 0, 5.5 > 5 at step 1
    d, r = np.asarray(tr.dones).reshape(2, 3), np.asarray(tr.rewards).reshape(2, 3)
    np.testing.assert_array_equal(d, [[0, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(r, [[0.5, 0.5, -2.0], [0.5, -2.0, 0.5]])
    np.testing.assert_array_equal(np.asarray(valid).reshape(2, 3), [[1, 1, 1], [1, 1, 0]])
    # reward outside the bound: done at once, reward -R, nothing valid afterwards
    st = _constant_model(3.0, [0.0] * OBS)
    tr, valid = rollout(jax.random.PRNGKey(0), st, pol, start, 2, _never, obs_range, 2.0)
    np.testing.assert_array_equal(np.asarray(tr.rewards), -2.0)
    np.testing.assert_array_equal(np.asarray(tr.dones), 1.0)
    np.testing.assert_array_equal(np.asarray(valid), [1, 1, 1, 0, 0, 0])
    # a non-finite prediction counts as out of range
    st = _constant_model(0.0, [jnp.nan, 0.0, 0.0, 0.0])
    tr, _ = rollout(jax.random.PRNGKey(0), st, pol, start, 1, _never, obs_range, 2.0)
    np.testing.assert_array_equal(np.asarray(tr.dones), 1.0)
