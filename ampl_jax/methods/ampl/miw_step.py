"""AMPL's MIW step: w = d_pi / d_D learned by a fixed point against test functions, with the
mean(w) <= bound correction; the "phased" block of MIW steps; w over the whole dataset for a refit.

`miw_step` dispatches statically on `miw.estimator`: TD-DICE (the paper's, test function Q1 or
the reward), td_dice_multi (K random test functions), and the saddle-point ablations GenDICE,
DualDICE and VPM (the authors' DICE_trainer.py and VPM_trainer.py). It runs inside every fused
iteration ("interleaved") or in blocks before each refit ("phased").
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from ampl_jax import networks
from ampl_jax.methods.ampl import miw as miw_lib
from ampl_jax.methods.ampl.state import Agent, TrainState
from ampl_jax.types import OfflineData
from ampl_jax.world_model.rollout import predict

Metrics = dict[str, jax.Array]


def _q1(agent: Agent, critic_params, obs: jax.Array, act: jax.Array) -> jax.Array:
    """Only the first critic head (the MIW's test function): half the cost of both heads."""
    return networks.q1(agent.critic, critic_params, obs, act)


def model_reward_sample(agent: Agent, model, key: jax.Array, obs: jax.Array, act: jax.Array) -> jax.Array:
    """r^(s, a) sampled from the ensemble (a random elite, a Gaussian draw), scaled space, no gradient;
    a non-finite sample reads 0, as the authors sanitise model outputs."""
    _, rew = predict(model, key, obs, act, elite_sampling=agent.hp.model.rollout_elite_sampling,
                     dtype=agent.model_dtype)
    return jax.lax.stop_gradient(jnp.where(jnp.isfinite(rew), rew, 0.0))


def _miw_batches(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array):
    """The MIW step's samples: data rows b, mu0 states s0, and the current actor's a0 = pi(s0), a1 = pi(s')."""
    m = agent.hp.miw
    k_idx, k_mu0, k_n0, k_n1 = jax.random.split(key, 4)
    b = data.sample(k_idx, m.batch_size)
    s0 = data.init_observations[jax.random.randint(k_mu0, (m.mu0_batch_size,), 0, data.init_observations.shape[0])]
    a0, _ = agent.act(state.actor, k_n0, s0)
    a1, _ = agent.act(state.actor, k_n1, b.next_observations)
    return b, s0, a0, a1


def _fixed_point_update(agent: Agent, state: TrainState, w, vjp_fn, dloss_dw, loss, aux):
    """The step shared by the fixed-point estimators (TD-DICE and td_dice_multi): the loss's and
    mean(w)'s gradients through one forward pass of w, the mean(w) <= bound correction, Adam, and
    the Polyak updates of w' and Q1'."""
    m = agent.hp.miw
    (grad_f,) = vjp_fn(dloss_dw)
    (grad_g,) = vjp_fn(jnp.full_like(w, 1.0 / w.shape[0]))
    w_mean = jnp.mean(w)
    direction, lam = miw_lib.constrained_direction(grad_f, grad_g, w_mean, m.mean_bound,
                                                   per_tensor=m.constraint == "per_tensor")
    updates, opt = agent.miw_tx.update(direction, state.miw_opt, state.miw)
    miw = optax.apply_updates(state.miw, updates)
    state = state.replace(
        miw=miw,
        miw_opt=opt,
        miw_target=optax.incremental_update(miw, state.miw_target, m.tau),
        miw_critic=optax.incremental_update(state.critic, state.miw_critic, m.tau),
    )
    return state, {**aux, "miw_loss": loss, "miw_w_mean": w_mean, "miw_lambda": lam}


def miw_step(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array) -> tuple[TrainState, Metrics]:
    """One MIW step with the mean(w) <= bound correction; then w' and Q1' Polyak updates.

    TD-DICE (the default, `miw.estimator`) here; "td_dice_multi" in `_miw_step_multi` below; the
    other estimators in `_miw_step_minimax`.
    The test function is the critic's first head Q1 (current at the data (s, a), the slow copy Q1'
    at policy actions), or with `miw.test_function="reward"` the reward: a model sample r^ at the
    data (s, a), at (s0, pi(s0)) and at (s', pi(s')), as the authors' reward trainer.
    """
    if agent.hp.miw.estimator == "td_dice_multi":
        return _miw_step_multi(agent, state, data, key)
    if agent.hp.miw.estimator != "td_dice":
        return _miw_step_minimax(agent, state, data, key)
    m, g = agent.hp.miw, agent.hp.agent.gamma
    k_batches = key  # TD-DICE with Q: the step's key draws the batches
    if m.test_function == "reward":
        # Independent keys for the batches and the reward samples (issue #31, N6): fold_in(key, 1),
        # used before, equals split(key, 4)[1], the key that drew the mu0 indices.
        k_batches, k_reward = jax.random.split(key)
    b, s0, a0, a1 = _miw_batches(agent, state, data, k_batches)
    if m.test_function == "reward":  # a model sample of r^ at all three, as the authors' reward trainer
        k_r, k_r0, k_r1 = jax.random.split(k_reward, 3)
        q = model_reward_sample(agent, state.model, k_r, b.observations, b.actions)
        q0 = model_reward_sample(agent, state.model, k_r0, s0, a0)
        q_next = model_reward_sample(agent, state.model, k_r1, b.next_observations, a1)
    else:
        q = _q1(agent, state.critic, b.observations, b.actions)
        q0 = _q1(agent, state.miw_critic, s0, a0)
        q_next = _q1(agent, state.miw_critic, b.next_observations, a1)
    w_target = agent.miw.apply(state.miw_target, b.observations, b.actions)

    # One forward pass of w, two backward passes: the loss's gradient and mean(w)'s gradient.
    w, vjp_fn = jax.vjp(lambda p: agent.miw.apply(p, b.observations, b.actions), state.miw)
    loss_fn = functools.partial(miw_lib.td_dice_loss, split_batch=m.split_batch_gradient)
    (loss, aux), dloss_dw = jax.value_and_grad(loss_fn, has_aux=True)(
        w, q, q0, q_next, w_target, b.dones, g, m.huber_delta)
    return _fixed_point_update(agent, state, w, vjp_fn, dloss_dw, loss, aux)


def _miw_step_multi(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array):
    """TD-DICE against K random test functions of the standardised (s, a) at once (miw.td_dice_multi).

    One test function (Q1) is one linear constraint on w and does not identify it; K functions,
    drawn afresh from the step's key (or one fixed draw, `resample=False`), do (tests/
    test_miw_tabular.py). With `constant` the constant f_0 = 1 is one more: its equation
    E_D[w] = (1 - gamma) + gamma E_D[(1 - d) w'] fixes the scale of w (E_D[w] = 1 without
    terminals), which the random functions leave nearly free; through the target w' it restores
    that scale only at the fixed point's slow rate, so `mass_penalty` also pulls E_b[w] to the mass
    it implies (`miw.mass_gap`). Optionally Q1 (scaled by the batch's mean |Q1|) is one more.
    Everything else is TD-DICE's: the batches, the target w', the mean(w) <= bound correction, the
    Polyak updates of w' and Q1'.
    """
    m, g = agent.hp.miw, agent.hp.agent.gamma
    e = m.td_dice_multi
    # Independent keys for the batches and the test functions (issue #31, N6): fold_in(key, 2),
    # used before, equals split(key, 4)[2], the key of the actor's noise at s0.
    k_batches, k_f = jax.random.split(key)
    b, s0, a0, a1 = _miw_batches(agent, state, data, k_batches)
    k_f = k_f if e.resample else jax.random.PRNGKey(e.seed)
    inputs = [jnp.concatenate(x, -1) for x in ((b.observations, b.actions), (s0, a0), (b.next_observations, a1))]
    fs = miw_lib.random_test_functions(k_f, inputs, e.num_functions, e.features, e.scale)
    if e.constant:
        fs = miw_lib.with_constant(fs)
    if e.with_q:
        q = _q1(agent, state.critic, b.observations, b.actions)
        qs = (q, _q1(agent, state.miw_critic, s0, a0), _q1(agent, state.miw_critic, b.next_observations, a1))
        q_scale = jax.lax.stop_gradient(jnp.mean(jnp.abs(q))) + 1e-6
        fs = [jnp.concatenate([f, (x / q_scale)[:, None]], -1) for f, x in zip(fs, qs)]
    w_target = agent.miw.apply(state.miw_target, b.observations, b.actions)

    w, vjp_fn = jax.vjp(lambda p: agent.miw.apply(p, b.observations, b.actions), state.miw)
    loss_fn = functools.partial(miw_lib.td_dice_multi_loss, split_batch=e.split_batch_gradient,
                                mass_penalty=e.mass_penalty)
    (loss, aux), dloss_dw = jax.value_and_grad(loss_fn, has_aux=True)(
        w, *fs, w_target, b.dones, g, m.huber_delta)
    return _fixed_point_update(agent, state, w, vjp_fn, dloss_dw, loss, aux)


def _miw_step_minimax(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array):
    """One step of a saddle-point MIW estimator ablation, as the authors' DICE_trainer.py (gendice,
    dualdice; vpm: `_miw_step_vpm` below). Settings: `miw_lib.estimator_settings`.

    w descends the saddle value L and the dual player (state.miw_aux: nu, and u for GenDICE)
    ascends it, simultaneously, each with its own Adam after an element-wise gradient clip at 1;
    no mean(w) <= bound correction (TD-DICE's only). The authors hard-copy both networks to their
    targets after every step, so each loss sees the other player's current values: the joint
    gradient of L here (miw_target and miw_critic are not used, and not updated). nu takes the
    same inputs as TD-DICE's Q1: the data (s, a), (s0, pi(s0)) and (s', pi(s')).
    """
    s = agent.hp.miw.settings
    if s.name == "vpm":
        return _miw_step_vpm(agent, state, data, key)
    g = agent.hp.agent.gamma
    b, s0, a0, a1 = _miw_batches(agent, state, data, key)

    def value_fn(w_params, dual):
        w = agent.miw.apply(w_params, b.observations, b.actions)
        nu_of = lambda obs, act: agent.miw_aux_net.apply(dual["nu"], obs, act)
        nus = (nu_of(b.observations, b.actions), nu_of(s0, a0), nu_of(b.next_observations, a1))
        if s.name == "gendice":
            value, aux = miw_lib.gendice_value(w, *nus, b.dones, dual["u"], g, s.norm_penalty, s.mask_terminals)
        else:  # "dualdice"
            value, aux = miw_lib.dualdice_value(w, *nus, b.dones, g, s.mask_terminals)
        return value, (aux, jnp.mean(w))

    (loss, (aux, w_mean)), (grad_w, grad_dual) = jax.value_and_grad(value_fn, argnums=(0, 1), has_aux=True)(
        state.miw, state.miw_aux["params"])
    updates, opt = agent.miw_tx.update(grad_w, state.miw_opt, state.miw)
    miw = optax.apply_updates(state.miw, updates)
    # the dual ascends: descend -grad
    dual_updates, dual_opt = agent.miw_aux_tx.update(
        jax.tree.map(jnp.negative, grad_dual), state.miw_aux["opt"], state.miw_aux["params"])
    dual = optax.apply_updates(state.miw_aux["params"], dual_updates)
    state = state.replace(miw=miw, miw_opt=opt, miw_aux={**state.miw_aux, "params": dual, "opt": dual_opt})
    return state, {**aux, "miw_loss": loss, "miw_w_mean": w_mean}


def _miw_step_vpm(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array):
    """One step of the authors' VPM (VPM_trainer.py:45-81): a run is T x M steps (miw.vpm.
    power_iterations x inner_steps); step t = 1, 2, ... of a run descends `vpm_value` with damping
    alpha = 1 / sqrt(t) (Adam, no clipping), then u ascends its term at the UPDATED w's batch
    mean, then w' <- w (a hard copy) when (t - 1) % M == 0.

    Runs: with miw.schedule="phased" a run starts with every block (TrainState.step moved since
    the last MIW step) and the block's steps past T x M change nothing (the authors run one
    T x M run per block); otherwise (interleaved) runs follow each other every T x M steps.
    All gating is arithmetic (jnp.where), no lax.cond.
    """
    s = agent.hp.miw.settings
    g = agent.hp.agent.gamma
    phased = agent.hp.miw.schedule == "phased"
    run = s.power_iterations * s.inner_steps
    aux_state = state.miw_aux
    new_run = (state.step != aux_state["last_step"]) if phased else (aux_state["count"] >= run)
    idx = jnp.where(new_run, 0, aux_state["count"])  # 0-based step within the run
    alpha = jax.lax.rsqrt((idx + 1).astype(jnp.float32))
    b, s0, a0, a1 = _miw_batches(agent, state, data, key)
    w_target = agent.miw.apply(state.miw_target, b.observations, b.actions)
    u = aux_state["params"]["u"]

    def value_fn(w_params):
        w_of = lambda obs, act: agent.miw.apply(w_params, obs, act)
        w = w_of(b.observations, b.actions)
        value, aux = miw_lib.vpm_value(w, w_target, w_of(s0, a0), w_of(b.next_observations, a1), b.dones,
                                       u, g, s.norm_penalty, alpha, s.mask_terminals)
        return value, (aux, jnp.mean(w))

    (loss, (aux, w_mean)), grad_w = jax.value_and_grad(value_fn, has_aux=True)(state.miw)
    updates, opt = agent.miw_tx.update(grad_w, state.miw_opt, state.miw)
    miw = optax.apply_updates(state.miw, updates)
    w_new_mean = jnp.mean(agent.miw.apply(miw, b.observations, b.actions))
    grad_u = jax.grad(lambda p: miw_lib.vpm_norm_term(p["u"], w_new_mean, s.norm_penalty))(aux_state["params"])
    dual_updates, dual_opt = agent.miw_aux_tx.update(
        jax.tree.map(jnp.negative, grad_u), aux_state["opt"], aux_state["params"])
    dual = optax.apply_updates(aux_state["params"], dual_updates)
    target = jax.tree.map(lambda new, old: jnp.where(idx % s.inner_steps == 0, new, old), miw, state.miw_target)
    moved = (miw, opt, target, dual, dual_opt)
    if phased:  # steps of a block past its run change nothing
        active = idx < run
        kept = (state.miw, state.miw_opt, state.miw_target, aux_state["params"], aux_state["opt"])
        moved = jax.tree.map(lambda new, old: jnp.where(active, new, old), moved, kept)
    miw, opt, target, dual, dual_opt = moved
    state = state.replace(miw=miw, miw_opt=opt, miw_target=target, miw_aux={
        "params": dual, "opt": dual_opt, "count": idx + 1, "last_step": jnp.asarray(state.step, jnp.int32)})
    return state, {**aux, "miw_loss": loss, "miw_w_mean": w_mean, "miw_vpm_alpha": alpha}


def make_miw_phase(agent: Agent, num_steps: int) -> Callable[[TrainState, OfflineData], tuple[TrainState, Metrics]]:
    """The jitted `build_miw_phase` (the state's buffers donated)."""
    return jax.jit(build_miw_phase(agent, num_steps), donate_argnums=0)


def build_miw_phase(agent: Agent, num_steps: int) -> Callable[[TrainState, OfflineData], tuple[TrainState, Metrics]]:
    """The authors' "phased" schedule: a block of MIW steps in one scan (called before a refit); pure,
    for callers that vmap it over seeds."""

    def phase(state: TrainState, data: OfflineData):
        key, sub = jax.random.split(state.key)
        # The authors start every phase with Q1' a fresh copy of the critic target.
        state = state.replace(miw_critic=jax.tree.map(jnp.copy, state.critic_target))
        state, metrics = jax.lax.scan(
            lambda s, k: miw_step(agent, s, data, k), state.replace(key=key), jax.random.split(sub, num_steps)
        )
        return state, jax.tree.map(jnp.mean, metrics)

    return phase


def make_dataset_weights(agent: Agent, chunk: int = 65_536) -> Callable:
    """w(s, a) over the whole dataset, normalised to mean 1: the refit's sample weights."""

    @jax.jit
    def weights(miw_params, observations: jax.Array, actions: jax.Array) -> jax.Array:
        n = observations.shape[0]
        pad = (-n) % chunk if n > chunk else 0
        c = min(chunk, n)
        obs = jnp.pad(observations, ((0, pad), (0, 0))).reshape(-1, c, observations.shape[1])
        act = jnp.pad(actions, ((0, pad), (0, 0))).reshape(-1, c, actions.shape[1])
        w = jax.lax.map(lambda xa: agent.miw.apply(miw_params, xa[0], xa[1]), (obs, act)).reshape(-1)[:n]
        return w / jnp.mean(w)

    return weights
