"""The paper's ablations as config values: each changes what it should and nothing else.

NW (miw.schedule="none"), MIW estimators (miw.estimator), WPR (agent.weighted_regularizer),
policy class (agent.policy), no regulariser (agent.regularizer="none"), real data only
(rollout.fixed_real_fraction=1.0), reward as the MIW test function (miw.test_function="reward").
Tiny config throughout; the costly part is compilation, so each test compiles one or two small
programs (an iteration, a few MIW steps) and only NW and the policy class compile update_step.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ampl_jax.config import validation as configuration
from ampl_jax.methods.ampl import miw as miw_lib
from ampl_jax.methods.ampl.state import init_train_state
from ampl_jax.methods import build_agent as build
from ampl_jax.methods.ampl import miw_step as miw_step_lib
from ampl_jax.methods.ampl.update import iteration, make_update_step
from ampl_jax.methods.ampl.miw_step import _miw_batches, _q1, make_miw_phase, miw_step
from ampl_jax.world_model.fit import init_model_state
from tests import tiny_config
from tests.methods.ampl.test_miw_tabular import A, S, make_mdp, q_values, sa_transition, true_ratio
from tests.methods.ampl.test_update import _data

MIW_FIELDS = ("miw", "miw_target", "miw_critic", "miw_opt", "miw_aux")


@functools.lru_cache(maxsize=None)
def _shared():
    data, info = _data()
    model = init_model_state(jax.random.PRNGKey(1), data.transitions(), tiny_config.get_config().model)
    return data, info, jax.device_get(model)


def _setup(seed=0, **overrides):
    """Tiny config with overrides given as section__key=value (or section__sub__key=value); a fresh
    state (the step donates it)."""
    config = tiny_config.get_config()
    for name, value in overrides.items():
        *path, key = name.split("__")
        node = config
        for part in path:
            node = node[part]
        node[key] = value
    data, info, model = _shared()
    agent = build(config, data, info)
    state = init_train_state(agent, jax.random.PRNGKey(seed), jax.tree.map(jnp.asarray, model))
    return config, agent, data, state


def _equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def _iteration_fn(agent, data, key=jax.random.PRNGKey(5)):
    """One jitted iteration with the actor update (compile once, call on several states)."""
    step = jax.jit(lambda s: iteration(agent, s, data, key, True))
    return lambda state: jax.device_get(step(state))


def _late(state, config, epoch=100):
    """The state moved to `epoch` (past the warm start; the schedule's real fraction is 0.5 there)."""
    return state.replace(step=jnp.asarray((epoch - 1) * config.train.epoch_length, jnp.int32))


# --- NW -------------------------------------------------------------------------------------------


def test_nw_update_step_computes_nothing_of_the_miw():
    """miw.schedule="none": the MIW, its target, Q1' copy and optimiser never move; no miw metrics."""
    # one iteration per update_step (actor every iteration): the smallest program with a rollout and a scan
    _, agent, data, state = _setup(miw__schedule="none", rollout__period=1, agent__actor_update_every=1)
    before = jax.device_get(state)
    state, metrics = make_update_step(agent)(state, data)
    state = jax.device_get(state)
    assert not [k for k in metrics if k.startswith("miw")]
    for field in MIW_FIELDS:
        assert _equal(getattr(state, field), getattr(before, field)), field
    assert int(state.miw_opt[1][0].count) == 0
    assert not _equal(state.critic, before.critic) and not _equal(state.actor, before.actor)


# --- MIW estimators -------------------------------------------------------------------------------


def test_default_estimator_has_no_dual_leaves():
    _, agent, _, state = _setup()
    assert agent.hp.miw.estimator == "td_dice" and agent.miw_aux_net is None
    assert state.miw_aux == {} and jax.tree.leaves(state.miw_aux) == []


def _assert_finite_positive_w_and_only_miw_moved(agent, data, state, before, metrics):
    for name, value in metrics.items():
        assert np.isfinite(value), name
    w = np.asarray(agent.miw.apply(state.miw, data.observations, data.actions))
    assert np.all(np.isfinite(w)) and np.all(w > 0)
    for field in ("actor", "critic", "disc", "model", "buffer"):  # nothing but the MIW moved
        assert _equal(getattr(state, field), getattr(before, field)), field


@pytest.mark.parametrize("estimator", ["vpm", "gendice", "dualdice"])
def test_estimator_steps_move_w_and_keep_it_positive(estimator):
    steps = 3
    _, agent, data, state = _setup(miw__estimator=estimator)  # the authors' rates
    before = jax.device_get(state)
    state, metrics = make_miw_phase(agent, steps)(state, data)
    state = jax.device_get(state)
    assert int(state.miw_opt[1][0].count) == steps
    assert int(state.miw_aux["opt"][1][0].count) == steps
    assert not _equal(state.miw, before.miw)
    assert not _equal(state.miw_aux["params"], before.miw_aux["params"])
    assert set(state.miw_aux["params"]) == {"vpm": {"u"}, "gendice": {"nu", "u"}, "dualdice": {"nu"}}[estimator]
    _assert_finite_positive_w_and_only_miw_moved(agent, data, state, before, metrics)


def test_td_dice_multi_step_moves_w_without_dual_and_keeps_it_positive():
    """miw.estimator="td_dice_multi" (with Q1 as one more test function): TD-DICE's state only."""
    steps = 3
    _, agent, data, state = _setup(miw__estimator="td_dice_multi", miw__td_dice_multi__with_q=True)
    assert agent.miw_aux_net is None and agent.miw_aux_tx is None and state.miw_aux == {}
    before = jax.device_get(state)
    state, metrics = make_miw_phase(agent, steps)(state, data)
    state = jax.device_get(state)
    assert int(state.miw_opt[1][0].count) == steps
    assert not _equal(state.miw, before.miw) and not _equal(state.miw_target, before.miw_target)
    assert {"miw_residual_rms", "miw_lambda", "miw_w_mean"} <= set(metrics)
    _assert_finite_positive_w_and_only_miw_moved(agent, data, state, before, metrics)


def test_td_dice_multi_split_gradient_is_unbiased_and_loss_is_full_batch():
    """The reported value is the full-batch loss; the gradient is Huber' from the first half times
    lhs's gradient on the second (equal halves: twice the full gradient there, zero on the first)."""
    k = jax.random.split(jax.random.PRNGKey(0), 6)
    n, m_, kf = 64, 32, 5
    w, w_t = jnp.exp(0.3 * jax.random.normal(k[0], (n,))), jnp.ones(n)
    f, f_next = jax.random.normal(k[1], (n, kf)), jax.random.normal(k[2], (n, kf))
    f0 = jax.random.normal(k[3], (m_, kf))
    args = (f, f0, f_next, w_t, jnp.zeros(n), 0.9)
    full, _ = miw_lib.td_dice_multi_loss(w, *args, split_batch=False)
    split, _ = miw_lib.td_dice_multi_loss(w, *args, split_batch=True)
    assert float(split) == pytest.approx(float(full), rel=1e-6)
    # pairs of identical halves: the split gradient equals the full one exactly
    w2, ff, fn = jnp.tile(w, 2), jnp.tile(f, (2, 1)), jnp.tile(f_next, (2, 1))
    g_split = jax.grad(lambda x: miw_lib.td_dice_multi_loss(x, ff, f0, fn, jnp.ones(2 * n), jnp.zeros(2 * n), 0.9,
                                                          split_batch=True)[0])(w2)
    g_full = jax.grad(lambda x: miw_lib.td_dice_multi_loss(x, ff, f0, fn, jnp.ones(2 * n), jnp.zeros(2 * n), 0.9,
                                                         split_batch=False)[0])(w2)
    np.testing.assert_allclose(np.asarray(g_split[n:]), 2 * np.asarray(g_full[n:]), rtol=1e-4, atol=1e-9)
    assert not np.any(np.asarray(g_split[:n]))  # the first half only sets Huber's slope


def test_random_test_functions_are_one_function_on_every_input():
    """The same f_k at (s, a), (s0, pi(s0)), (s', pi(s')): equal rows give equal values."""
    x = jax.random.normal(jax.random.PRNGKey(1), (50, 7)) * 30.0 + 5.0
    for kind in ("fourier", "relu"):
        f_a, f_b = miw_lib.random_test_functions(jax.random.PRNGKey(2), [x, x[::-1]], 16, kind)
        assert f_a.shape == (50, 16)
        np.testing.assert_allclose(np.asarray(f_a[::-1]), np.asarray(f_b), rtol=1e-6)
        assert float(jnp.std(f_a)) > 0.1  # standardised inputs: not saturated by the raw scale 30


# Tabular MDP (tests/test_miw_tabular.py): each estimator's stationarity condition holds at the true
# ratio w* = d_pi / d_b, checked with Monte-Carlo gradients over one large fixed sample.

N_TAB, GAMMA_TAB = 1 << 19, 0.9


@functools.lru_cache(maxsize=None)
def _tabular(seed=0):
    mdp = make_mdp(seed)
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    from tests.methods.ampl.test_miw_tabular import occupancy

    d_b = occupancy(mdp, mdp.pi_b, GAMMA_TAB)
    log = lambda x: jnp.log(jnp.asarray(x, jnp.float32))
    sa = jax.random.categorical(k[0], log(d_b.reshape(-1)), shape=(N_TAB,))
    s1 = jax.random.categorical(k[1], log(mdp.P.reshape(S * A, S))[sa])
    a1 = jax.random.categorical(k[2], log(mdp.pi)[s1])
    s0 = jax.random.categorical(k[3], log(mdp.mu0), shape=(N_TAB,))
    a0 = jax.random.categorical(k[4], log(mdp.pi)[s0])
    return mdp, (sa, s0 * A + a0, s1 * A + a1)


def _grad_norm(fn, *tables):
    grads = jax.grad(fn, argnums=tuple(range(len(tables))))(*[jnp.asarray(t, jnp.float32).reshape(-1) for t in tables])
    return float(jnp.sqrt(sum(jnp.sum(g**2) for g in grads)))


def _perturb(table, seed):
    return table * (1.0 + 0.5 * np.random.default_rng(seed).uniform(-1, 1, table.shape))


def test_tabular_dualdice_saddle_at_true_ratio():
    """DualDICE (the authors' f*(x) = x^3 / 3): at nu* = (I - gamma P^pi)^-1 w*^2 and w = w*, both
    gradients vanish; and for any nu the best w is sqrt(nu - gamma E[nu(s', pi(s'))])."""
    mdp, (sa, x0, x1) = _tabular()
    w_star = true_ratio(mdp, GAMMA_TAB)
    nu_star = q_values(mdp, mdp.pi, w_star**2, GAMMA_TAB)  # nu* = w*^2 + gamma P^pi nu*
    dones = jnp.zeros(N_TAB)
    value = lambda w, nu: miw_lib.dualdice_value(w[sa], nu[sa], nu[x0], nu[x1], dones, GAMMA_TAB)[0]
    at_star = _grad_norm(value, w_star, nu_star)
    off = _grad_norm(value, _perturb(w_star, 1), _perturb(nu_star, 2))
    assert at_star < 0.05 * off, (at_star, off)
    # the w-player's best response to an arbitrary nu (one with a positive Bellman residual r)
    r = np.random.default_rng(3).uniform(0.2, 2.0, size=(S, A))
    nu = q_values(mdp, mdp.pi, r, GAMMA_TAB)
    best_w = np.sqrt(nu - GAMMA_TAB * (sa_transition(mdp.P, mdp.pi) @ nu.reshape(-1)).reshape(S, A))
    np.testing.assert_allclose(best_w, np.sqrt(r), rtol=1e-6)
    g_best = _grad_norm(lambda w: value(w, jnp.asarray(nu, jnp.float32).reshape(-1)), best_w)
    g_off = _grad_norm(lambda w: value(w, jnp.asarray(nu, jnp.float32).reshape(-1)), _perturb(best_w, 4))
    assert g_best < 0.1 * g_off, (g_best, g_off)


def test_tabular_gendice_flow_residual_vanishes_at_true_ratio():
    """GenDICE: at nu = 0 the nu-gradient is the flow residual, zero at w* (not at w = 1);
    the multiplier's gradient E_D[w] - 1 vanishes at w* too."""
    mdp, (sa, x0, x1) = _tabular()
    w_star = true_ratio(mdp, GAMMA_TAB)
    dones = jnp.zeros(N_TAB)

    def value(nu, u, w):
        return miw_lib.gendice_value(w[sa], nu[sa], nu[x0], nu[x1], dones, u, GAMMA_TAB)[0]

    nu0 = np.zeros((S, A))
    grad_at = lambda w: _grad_norm(lambda nu, u: value(nu, u[0], jnp.asarray(w, jnp.float32).reshape(-1)), nu0, np.zeros(1))
    at_star, at_one = grad_at(w_star), grad_at(np.ones((S, A)))
    assert at_star < 0.1 * at_one, (at_star, at_one)


def test_tabular_vpm_power_step_fixed_at_true_ratio():
    """VPM: w = w' = w* is a stationary point of the power step's least-squares loss (w = T w*);
    w = w' = 1 is not."""
    mdp, (sa, x0, x1) = _tabular()
    w_star = true_ratio(mdp, GAMMA_TAB)
    dones = jnp.zeros(N_TAB)

    def grad_at(w_target):
        wt = jnp.asarray(w_target, jnp.float32).reshape(-1)[sa]
        return _grad_norm(lambda w: miw_lib.vpm_value(w[sa], wt, w[x0], w[x1], dones, 0.0, GAMMA_TAB)[0], w_target)

    at_star, at_one = grad_at(w_star), grad_at(np.ones((S, A)))
    assert at_star < 0.1 * at_one, (at_star, at_one)


# --- the estimators as the authors ran them (issue 11, item 10) -------------------------------------


def test_estimator_defaults_are_the_authors_and_td_dice_keeps_its_own():
    from configs.default import get_config

    c = get_config().miw
    td = miw_lib.estimator_settings(c)
    assert (td.lr, td.grad_clip_norm, td.grad_clip_value, td.mean_bound) == (1e-6, 1.0, 0.0, 10.0)
    expected = {  # VPM_trainer.py:24-37; DICE_trainer.py:30-46, 98-99, 109
        "vpm": dict(lr=3e-4, u_lr=3e-4, nu_lr=None, u_init=1.0, grad_clip_value=0.0, power_iterations=200,
                    inner_steps=10),
        "gendice": dict(lr=3e-3, nu_lr=1e-4, u_lr=1e-4, u_init=1.0, grad_clip_value=1.0),
        "dualdice": dict(lr=1e-4, nu_lr=1e-4, u_lr=None, grad_clip_value=1.0),
    }
    for est, want in expected.items():
        c.estimator = est
        got = miw_lib.estimator_settings(c)
        assert {k: getattr(got, k) for k in want} == want, est
        assert got.mean_bound is None and got.grad_clip_norm == 0.0 and not got.mask_terminals, est
        assert miw_lib.phase_steps(c) == (2000 if est == "vpm" else 100_000)
    # element-wise clipping (torch clip_grad_value_), not a global norm
    clip = miw_lib._clip(miw_lib.estimator_settings(c))
    out, _ = clip.update({"a": jnp.asarray([5.0, -0.5, -3.0])}, clip.init(None))
    np.testing.assert_array_equal(out["a"], [1.0, -0.5, -1.0])


@pytest.mark.parametrize("estimator,lrs", [("gendice", {"nu": 1e-4, "u": 1e-4}), ("vpm", {"u": 3e-4})])
def test_dual_player_starts_at_one_with_its_own_rates(estimator, lrs):
    _, agent, _, state = _setup(miw__estimator=estimator)
    assert float(state.miw_aux["params"]["u"]) == 1.0  # the authors' v = 1
    # one Adam step on a unit gradient moves each dual leaf by its own learning rate
    params = state.miw_aux["params"]
    grads = jax.tree.map(jnp.ones_like, params)
    upd, _ = agent.miw_aux_tx.update(grads, agent.miw_aux_tx.init(params), params)
    for k, lr in lrs.items():
        for leaf in jax.tree.leaves(upd[k]):
            np.testing.assert_allclose(np.asarray(leaf), -lr, rtol=1e-4)


def test_dualdice_value_has_the_cubic_term_by_hand():
    w, nu, nu0, nu1 = (jnp.asarray(x) for x in ([1.0, 2.0], [3.0, -1.0], [0.5, 1.5], [2.0, 4.0]))
    dones = jnp.asarray([0.0, 1.0])
    g = 0.9
    # J = mean((nu - g nu') w - w^3 / 3) - (1 - g) mean(nu0); the authors' terminals are not masked
    bell = np.asarray([3.0 - 0.9 * 2.0, -1.0 - 0.9 * 4.0])
    j = np.mean(bell * np.asarray([1.0, 2.0]) - np.asarray([1.0, 8.0]) / 3.0) - 0.1 * 1.0
    np.testing.assert_allclose(float(miw_lib.dualdice_value(w, nu, nu0, nu1, dones, g)[0]), -j, rtol=1e-6)
    masked = np.mean(np.asarray([3.0 - 1.8, -1.0]) * np.asarray([1.0, 2.0]) - np.asarray([1.0, 8.0]) / 3.0) - 0.1
    np.testing.assert_allclose(float(miw_lib.dualdice_value(w, nu, nu0, nu1, dones, g, mask_terminals=True)[0]),
                               -masked, rtol=1e-6)


def test_vpm_value_damped_power_step_by_hand():
    w, wt, w0, w1 = (jnp.asarray(x) for x in ([1.0, 2.0], [0.5, 1.0], [1.0, 3.0], [2.0, 2.0]))
    dones, g, u, alpha = jnp.asarray([0.0, 1.0]), 0.9, 0.3, 0.25
    power = 0.1 * 2.0 + 0.9 * np.mean([0.5 * 2.0, 1.0 * 2.0])  # unmasked, as the authors
    expect = (0.5 * np.mean([1.0, 4.0]) - 0.75 * np.mean([0.5, 2.0]) - 0.25 * power
              + (2 * u * (1.5 - 1.0) - u**2))
    got = miw_lib.vpm_value(w, wt, w0, w1, dones, u, g, 1.0, alpha)[0]
    np.testing.assert_allclose(float(got), expect, rtol=1e-6)


def test_vpm_power_method_runs_damping_hard_targets_and_phase_blocks():
    """Phased VPM with T x M = 2 x 2: alpha = 1/sqrt(t); w' hard-copied after steps 1 and 3 (of
    each run); steps 5, 6 of a block change nothing; a new block (step moved) starts a new run."""
    _, agent, data, state = _setup(miw__estimator="vpm", miw__schedule="phased", miw__vpm__power_iterations=2,
                                   miw__vpm__inner_steps=2)
    step = jax.jit(lambda st, k: miw_step(agent, st, data, k))
    moved = ("miw", "miw_opt", "miw_target")
    hist, alphas = [jax.device_get(state)], []
    for i in range(6):
        state, m = step(state, jax.random.PRNGKey(100 + i))
        hist.append(jax.device_get(state))
        alphas.append(float(m["miw_vpm_alpha"]))
    np.testing.assert_allclose(alphas[:4], [1.0, 2**-0.5, 3**-0.5, 0.5], rtol=1e-6)
    for i in range(1, 5):
        assert not _equal(hist[i].miw, hist[i - 1].miw), i
    assert _equal(hist[1].miw_target, hist[1].miw) and _equal(hist[2].miw_target, hist[1].miw)
    assert _equal(hist[3].miw_target, hist[3].miw) and _equal(hist[4].miw_target, hist[3].miw)
    for i in (5, 6):  # past the run: nothing moves
        for f in moved:
            assert _equal(getattr(hist[i], f), getattr(hist[4], f)), (i, f)
        assert _equal(hist[i].miw_aux["params"], hist[4].miw_aux["params"])
    state = state.replace(step=state.step + 1)  # the next block
    state, m = step(state, jax.random.PRNGKey(200))
    assert float(m["miw_vpm_alpha"]) == 1.0 and int(state.miw_aux["count"]) == 1
    assert not _equal(jax.device_get(state).miw, hist[6].miw)


def test_interleaved_vpm_runs_follow_each_other():
    _, agent, data, state = _setup(miw__estimator="vpm", miw__vpm__power_iterations=1, miw__vpm__inner_steps=2)
    step = jax.jit(lambda st, k: miw_step(agent, st, data, k))
    alphas = []
    for i in range(5):
        state, m = step(state.replace(step=state.step + 1), jax.random.PRNGKey(i))
        alphas.append(float(m["miw_vpm_alpha"]))
    np.testing.assert_allclose(alphas, [1.0, 2**-0.5, 1.0, 2**-0.5, 1.0], rtol=1e-6)


def test_output_clipping_keeps_w_in_the_authors_range():
    _, agent, data, state = _setup(miw__output_clipping=True)
    assert isinstance(agent.miw, miw_lib.ClippedMIWNet)
    _, plain, _, plain_state = _setup()
    assert jax.tree.map(jnp.shape, state.miw) == jax.tree.map(jnp.shape, plain_state.miw)  # same parameters
    head = state.miw["params"]["MLP_0"]
    last = sorted(head)[-1]
    obs, act = data.observations[:64], data.actions[:64]
    for bias, lo, hi in ((1e4, 499.99, 500.0), (-1e4, 1e-8, 1e-8), (0.0, 0.5, 0.9)):
        params = {"params": {"MLP_0": {**head, last: {**head[last], "bias": jnp.full_like(head[last]["bias"], bias)}}}}
        w = np.asarray(agent.miw.apply(params, obs, act))
        assert np.all(w >= 1e-8) and np.all(w <= 500.0 * (1 + 1e-6)), bias
        assert lo * (1 - 1e-6) <= w.min() and w.max() <= hi * (1 + 1e-6), (bias, w.min(), w.max())
    # the default head is the alpha-power one, unbounded above
    params = {"params": {"MLP_0": {**head, last: {**head[last], "bias": jnp.full_like(head[last]["bias"], 1e4)}}}}
    assert float(jnp.min(plain.miw.apply(params, obs, act))) > 50.0


# --- WPR --------------------------------------------------------------------------------------------


def _varied_miw(state):
    """A MIW network whose w varies over (s, a) (the fresh one is nearly constant)."""
    head = state.miw["params"]["MLP_0"]
    last = sorted(head)[-1]
    kernel = head[last]["kernel"]
    new_kernel = jax.random.normal(jax.random.PRNGKey(9), kernel.shape)
    params = {**head, last: {**head[last], "kernel": new_kernel}}
    return state.replace(miw={"params": {"MLP_0": params}})


def test_wpr_changes_disc_and_actor_not_critic():
    """WPR (the authors' weighted trainer): the GAN compares (s'~ ~ P_hat(s, a), pi(s'~)) with the
    data's (s', a'), weighted by the last refit's w / mean(w); the weights move the discriminator
    and the actor, never the critic."""
    config, agent, data, state = _setup(miw__schedule="phased", agent__weighted_regularizer=True)
    state = _late(state, config)
    assert state.data_weights.shape == (data.observations.shape[0],)
    varied = state.replace(data_weights=jnp.asarray(
        np.random.default_rng(0).uniform(0.1, 3.0, data.observations.shape[0]), jnp.float32))
    step = _iteration_fn(agent, data)
    s1, m1 = step(state)
    s2, m2 = step(varied)
    assert _equal(s1.critic, s2.critic) and m1["critic_loss"] == m2["critic_loss"]
    assert not _equal(s1.disc, s2.disc) and m1["disc_loss"] != m2["disc_loss"]
    assert not _equal(s1.actor, s2.actor) and m1["generator_loss"] != m2["generator_loss"]
    assert _equal(s1.miw, s2.miw)
    # with every weight 0 the GAN losses vanish: nothing is left to compare
    _, m0 = step(state.replace(data_weights=jnp.zeros_like(state.data_weights)))
    assert float(m0["generator_loss"]) == 0.0 and float(m0["disc_loss"]) == 0.0


# --- policy class -----------------------------------------------------------------------------------


def test_tanh_gaussian_policy_shapes_sampling_and_training():
    config, agent, data, state = _setup(agent__policy="tanh_gaussian", rollout__period=1, agent__actor_update_every=1)
    obs_dim, act_dim, h = agent.obs_dim, agent.act_dim, config.agent.hidden_dims
    kernels = [v["kernel"].shape for _, v in sorted(state.actor["params"]["MLP_0"].items())]
    assert kernels[0] == (obs_dim, h[0]) and kernels[-1] == (h[-1], 2 * act_dim)  # no noise input; mean and log-std
    assert agent.noise(jax.random.PRNGKey(0), 4).shape == (4, act_dim)
    # sampling: stochastic per state, raw is the pre-tanh sample, actions in bounds
    obs = jnp.repeat(data.observations[:1], 256, axis=0)
    act, raw = agent.act(state.actor, jax.random.PRNGKey(1), obs)
    assert act.shape == (256, act_dim) and float(jnp.min(jnp.std(raw, axis=0))) > 0.1
    np.testing.assert_allclose(act, agent.max_action * jnp.tanh(raw), rtol=1e-6)
    assert bool(jnp.all(jnp.abs(act) <= agent.max_action))
    before = jax.device_get(state)
    state, metrics = make_update_step(agent)(state, data)
    state = jax.device_get(state)
    for name, value in metrics.items():
        assert np.isfinite(value), name
    assert not _equal(state.actor, before.actor) and not _equal(state.disc, before.disc)
    filled = int(state.buffer.size)
    assert filled > 0 and np.all(np.abs(state.buffer.data.actions[:filled]) <= agent.max_action)


# --- real data only -----------------------------------------------------------------------------------


def test_real_only_fixed_fraction_ignores_the_model_buffer():
    """f = 1 at an epoch where the schedule would give 0.5: filling the buffer with garbage changes
    no leaf of the state (critic, actor, discriminator) and no metric."""
    config, agent, data, state = _setup(rollout__fixed_real_fraction=1.0, miw__schedule="phased")
    state = _late(state, config)
    full = state.buffer.replace(size=jnp.asarray(state.buffer.capacity, jnp.int32))
    clean = state.replace(buffer=full)
    poisoned = state.replace(buffer=full.replace(data=jax.tree.map(lambda x: x + 1e3, full.data)))
    step = _iteration_fn(agent, data)
    s1, m1 = step(clean)
    s2, m2 = step(poisoned)
    assert float(m1["real_fraction"]) == 1.0
    assert _equal(s1.replace(buffer=None), s2.replace(buffer=None))
    assert _equal(m1, m2)


# --- reward as the MIW test function -----------------------------------------------------------------------


def test_reward_test_function_uses_model_rewards_not_q():
    config, agent, data, state = _setup(miw__test_function="reward")
    key = jax.random.PRNGKey(3)
    new, m = jax.device_get(jax.jit(lambda s: miw_step(agent, s, data, key))(state))
    assert all(np.isfinite(v) for v in m.values())
    assert not _equal(new.miw, state.miw)

    @jax.jit
    def by_hand(state):
        """The same samples: a model sample r^ at the data (s, a), at (s0, pi(s0)) and (s', pi(s')),
        as the authors' reward trainer; and the Q version's lhs = mean(w Q1)."""
        k_batches, k_reward = jax.random.split(key)  # independent keys (issue #31, N6)
        b, s0, a0, a1 = _miw_batches(agent, state, data, k_batches)
        k_r, k_r0, k_r1 = jax.random.split(k_reward, 3)
        r_hat = functools.partial(miw_step_lib.model_reward_sample, agent, state.model)
        w = agent.miw.apply(state.miw, b.observations, b.actions)
        w_t = agent.miw.apply(state.miw_target, b.observations, b.actions)
        g = config.agent.gamma
        rhs = (1 - g) * jnp.mean(r_hat(k_r0, s0, a0)) + g * jnp.mean(
            (1 - b.dones) * w_t * r_hat(k_r1, b.next_observations, a1))
        q_lhs = jnp.mean(w * _q1(agent, state.critic, b.observations, b.actions))
        return jnp.mean(w * r_hat(k_r, b.observations, b.actions)), jnp.mean(w * b.rewards), rhs, q_lhs

    lhs, data_lhs, rhs, q_lhs = by_hand(state)
    np.testing.assert_allclose(m["miw_lhs"], lhs, rtol=1e-5)
    np.testing.assert_allclose(m["miw_rhs"], rhs, rtol=1e-4)
    assert abs(float(q_lhs) - float(m["miw_lhs"])) > 1e-3  # not the Q version's
    assert abs(float(data_lhs) - float(m["miw_lhs"])) > 1e-6  # nor the logged rewards


def test_reward_test_function_rejected_with_other_estimators():
    config = tiny_config.get_config()
    config.miw.test_function, config.miw.estimator = "reward", "dualdice"
    with pytest.raises(configuration.ConfigError, match="test_function='reward' needs"):
        configuration.validate(config)
