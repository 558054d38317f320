"""One compiled program per rollout period: a model rollout, then a lax.scan of fused iterations.

update_step(state, data) = rollout into the FIFO buffer, then `period` iterations of
critic -> discriminator -> (actor, every k-th) -> MIW, each on a minibatch mixed from real and
model data. The actor's every-k-th schedule is structured into the scan (blocks of k
iterations whose last one updates the actor) rather than gated by lax.cond, so nothing runs
both branches when the step is later vmapped over seeds.

Ablations are chosen statically from the config (never by a traced predicate): the MIW
estimator and test function in `miw_step`, the w-weighted regulariser (WPR) in `iteration`,
no regulariser in `_fake_inputs`/`iteration`, the policy class through `Agent.act`.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from ampl_jax import actor as actor_lib
from ampl_jax import critic as critic_lib
from ampl_jax import discriminator as disc_lib
from ampl_jax import miw as miw_lib
from ampl_jax import networks
from ampl_jax.buffer import buffer_insert, buffer_sample
from ampl_jax.state import Agent, TrainState
from ampl_jax.types import OfflineData, Transitions
from ampl_jax.world_model.ensemble import member_apply
from ampl_jax.world_model.rollout import predict, rollout

Metrics = dict[str, jax.Array]


def real_fraction(epoch: jax.Array, cfg) -> jax.Array:
    """Spec schedule: 1.0 through epoch 45, minus 0.1 every 5 epochs, floored at 0.5."""
    if cfg.fixed_real_fraction >= 0:
        return jnp.asarray(cfg.fixed_real_fraction, jnp.float32)
    steps = jnp.ceil(jnp.maximum(epoch - cfg.real_full_epochs, 0) / cfg.real_decay_every)
    return jnp.maximum(1.0 - cfg.real_decay * steps, cfg.real_min).astype(jnp.float32)


def _epoch(agent: Agent, step: jax.Array) -> jax.Array:
    return step // agent.config.train.epoch_length + 1


def _gather(data: OfflineData, idx: jax.Array) -> Transitions:
    return Transitions(
        data.observations[idx],
        data.actions[idx],
        data.scaled_rewards[idx],
        data.next_observations[idx],
        data.dones[idx],
    )


def _mix(real: Transitions, model: Transitions, n_real: jax.Array) -> Transitions:
    """First n_real rows real, the rest model: a dynamic fraction with static shapes."""
    take_real = jnp.arange(real.rewards.shape[0]) < n_real

    def sel(r, m):
        mask = take_real.reshape((-1,) + (1,) * (r.ndim - 1))
        return jnp.where(mask, r, m)

    return jax.tree.map(sel, real, model)


def _model_dones(agent: Agent, obs, act, next_obs) -> jax.Array:
    out_of_range = jnp.any(jnp.abs(next_obs) > agent.obs_range, axis=-1)
    return jnp.logical_or(agent.termination_fn(obs, act, next_obs), out_of_range)


def _critic_step(agent: Agent, state: TrainState, batch: Transitions, key: jax.Array):
    a = agent.config.agent
    next_act, _ = agent.act(state.actor_target, key, batch.next_observations)
    q_next = agent.critic.apply(state.critic_target, batch.next_observations, next_act)
    y = critic_lib.critic_target(q_next, batch.rewards, batch.dones, a.gamma, a.target_min_weight, a.target_cap)

    def loss_fn(params):
        q = agent.critic.apply(params, batch.observations, batch.actions)
        return critic_lib.critic_loss(q, y, a.critic_huber_delta)

    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.critic)
    updates, opt = agent.critic_tx.update(grads, state.critic_opt, state.critic)
    critic = optax.apply_updates(state.critic, updates)
    target = optax.incremental_update(critic, state.critic_target, a.tau)
    return state.replace(critic=critic, critic_opt=opt, critic_target=target), metrics


def _fake_inputs(agent: Agent, state: TrainState, batch: Transitions, key: jax.Array):
    """The fake pairs' states and noises: the batch's s, and s' ~ P_hat(s, pi(s)) (no gradient).

    Also returns the raw actions of the current actor at every fake state (for the
    discriminator step), computing the actor once per state. Without a regulariser
    (agent.regularizer="none") only the batch's s is returned: the actor's Q term needs no s'.
    """
    k_n1, k_model, k_n2 = jax.random.split(key, 3)
    n = batch.rewards.shape[0]
    noise1, noise2 = agent.noise(k_n1, n), agent.noise(k_n2, n)
    act, raw1 = agent.actor.apply(state.actor, batch.observations, noise1)
    if agent.config.agent.regularizer == "none":
        return batch.observations, noise1, jax.lax.stop_gradient(raw1), jnp.ones((n,), jnp.float32)
    next_obs, _ = predict(state.model, k_model, batch.observations, act,
                          elite_sampling=agent.config.model.fake_elite_sampling)
    next_obs = jax.lax.stop_gradient(next_obs)
    alive = 1.0 - _model_dones(agent, batch.observations, act, next_obs).astype(jnp.float32)
    _, raw2 = agent.actor.apply(state.actor, next_obs, noise2)
    obs = jnp.concatenate([batch.observations, next_obs])
    noise = jnp.concatenate([noise1, noise2])
    raw = jax.lax.stop_gradient(jnp.concatenate([raw1, raw2]))
    weights = jnp.concatenate([jnp.ones((n,), jnp.float32), alive])
    return obs, noise, raw, weights


def _disc_step(agent, state, fake_obs, fake_raw, fake_w, true_obs, true_raw, key):
    labels = jax.random.uniform(key, (true_obs.shape[0],), minval=agent.config.agent.true_label_low, maxval=1.0)

    def loss_fn(params):
        true_logits = agent.disc.apply(params, true_obs, true_raw)
        fake_logits = agent.disc.apply(params, fake_obs, fake_raw)
        return disc_lib.discriminator_loss(true_logits, fake_logits, labels, fake_w)

    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.disc)
    updates, opt = agent.disc_tx.update(grads, state.disc_opt, state.disc)
    return state.replace(disc=optax.apply_updates(state.disc, updates), disc_opt=opt), metrics


def _actor_step(agent, state, batch, fake_obs, fake_noise, fake_w):
    a = agent.config.agent
    n = batch.rewards.shape[0]
    scale = actor_lib.q_scale(_epoch(agent, state.step), a.warm_start_epochs, a.q_coef, state.q_abs_avg)
    use_gan = a.regularizer == "jsd"

    def loss_fn(params):
        act, raw = agent.actor.apply(params, fake_obs, fake_noise)
        gen = disc_lib.generator_loss(agent.disc.apply(state.disc, fake_obs, raw), fake_w) if use_gan else 0.0
        q_min = jnp.min(agent.critic.apply(state.critic, fake_obs[:n], act[:n]), axis=0)
        loss, metrics = actor_lib.actor_loss(q_min, jnp.asarray(gen, jnp.float32), scale)
        return loss, (metrics, jnp.mean(jnp.abs(q_min)))

    grads, (metrics, q_abs) = jax.grad(loss_fn, has_aux=True)(state.actor)
    updates, opt = agent.actor_tx.update(grads, state.actor_opt, state.actor)
    actor = optax.apply_updates(state.actor, updates)
    q_abs_avg = (1.0 - a.q_avg_rate) * state.q_abs_avg + a.q_avg_rate * jax.lax.stop_gradient(q_abs)
    return state.replace(
        actor=actor,
        actor_opt=opt,
        actor_target=optax.incremental_update(actor, state.actor_target, a.actor_tau),
        q_abs_avg=q_abs_avg,
    ), metrics


def _q1(agent: Agent, critic_params, obs: jax.Array, act: jax.Array) -> jax.Array:
    """Only the first critic head (the MIW's test function): half the cost of both heads."""
    head = jax.tree.map(lambda p: p[0], critic_params["params"]["VmapMLP_0"])
    a = agent.config.agent
    return networks.MLP(tuple(a.hidden_dims), 1, a.leaky_relu_slope).apply(
        {"params": head}, jnp.concatenate([obs, act], -1))[..., 0]


def model_mean_reward(model, obs: jax.Array, act: jax.Array) -> jax.Array:
    """r^(s, a): the elites' mean predicted (scaled) reward, averaged over the elites; no sampling, no gradient."""
    x = model.input_norm(jnp.concatenate([obs, act], axis=-1))
    elite_params = jax.tree.map(lambda p: p[model.elites], model.params)
    mean, _ = jax.vmap(member_apply, in_axes=(0, None))(elite_params, x)  # [E, B, 1 + obs_dim]
    return jax.lax.stop_gradient(model.target_norm.inverse(jnp.mean(mean, axis=0))[:, 0])


def _miw_batches(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array):
    """The MIW step's samples: data rows b, mu0 states s0, and the current actor's a0 = pi(s0), a1 = pi(s')."""
    m = agent.config.miw
    k_idx, k_mu0, k_n0, k_n1 = jax.random.split(key, 4)
    b = _gather(data, jax.random.randint(k_idx, (m.batch_size,), 0, data.observations.shape[0]))
    s0 = data.init_observations[jax.random.randint(k_mu0, (m.mu0_batch_size,), 0, data.init_observations.shape[0])]
    a0, _ = agent.act(state.actor, k_n0, s0)
    a1, _ = agent.act(state.actor, k_n1, b.next_observations)
    return b, s0, a0, a1


def miw_step(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array) -> tuple[TrainState, Metrics]:
    """One MIW step with the mean(w) <= bound correction; then w' and Q1' Polyak updates.

    TD-DICE (the default, `miw.estimator`) here; the other estimators in `_miw_step_minimax`.
    The test function is the critic's first head Q1 (current at the data (s, a), the slow copy Q1'
    at policy actions), or with `miw.test_function="reward"` the reward: the data's r~(s, a) in
    the lhs, and the world model's mean prediction r^(s, pi(s)) at s0 and s' in the rhs (a
    policy action has no logged reward; see `model_mean_reward`).
    """
    if agent.config.miw.estimator != "td_dice":
        return _miw_step_minimax(agent, state, data, key)
    m, g = agent.config.miw, agent.config.agent.gamma
    b, s0, a0, a1 = _miw_batches(agent, state, data, key)
    if m.test_function == "reward":
        q = b.rewards
        q0 = model_mean_reward(state.model, s0, a0)
        q_next = model_mean_reward(state.model, b.next_observations, a1)
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
    (grad_f,) = vjp_fn(dloss_dw)
    (grad_g,) = vjp_fn(jnp.full_like(w, 1.0 / w.shape[0]))
    w_mean = jnp.mean(w)
    direction, lam = miw_lib.constrained_direction(grad_f, grad_g, w_mean, m.mean_bound)
    updates, opt = agent.miw_tx.update(direction, state.miw_opt, state.miw)
    miw = optax.apply_updates(state.miw, updates)
    state = state.replace(
        miw=miw,
        miw_opt=opt,
        miw_target=optax.incremental_update(miw, state.miw_target, m.tau),
        miw_critic=optax.incremental_update(state.critic, state.miw_critic, m.tau),
    )
    return state, {**aux, "miw_loss": loss, "miw_w_mean": w_mean, "miw_lambda": lam}


def _miw_step_minimax(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array):
    """One simultaneous step of a saddle-point MIW estimator (vpm, gendice, dualdice; see miw.py).

    w descends the saddle value L along the same mean(w) <= bound corrected direction and
    optimiser as TD-DICE; the dual player (state.miw_aux) ascends L with its own Adam
    (miw.aux_lr). The test function nu takes the same inputs as TD-DICE's Q1: the data (s, a),
    (s0, pi(s0)) and (s', pi(s')).
    """
    m, g = agent.config.miw, agent.config.agent.gamma
    b, s0, a0, a1 = _miw_batches(agent, state, data, key)
    w_target = agent.miw.apply(state.miw_target, b.observations, b.actions)

    def value_fn(w_params, dual):
        w_of = lambda obs, act: agent.miw.apply(w_params, obs, act)
        w = w_of(b.observations, b.actions)
        if m.estimator == "vpm":
            value, aux = miw_lib.vpm_value(w, w_target, w_of(s0, a0), w_of(b.next_observations, a1), b.dones,
                                           dual["u"], g, m.norm_penalty)
        else:
            nu_of = lambda obs, act: agent.miw_aux_net.apply(dual["nu"], obs, act)
            nus = (nu_of(b.observations, b.actions), nu_of(s0, a0), nu_of(b.next_observations, a1))
            if m.estimator == "gendice":
                value, aux = miw_lib.gendice_value(w, *nus, b.dones, dual["u"], g, m.norm_penalty)
            elif m.estimator == "dualdice":
                value, aux = miw_lib.dualdice_value(w, *nus, b.dones, g)
            else:
                raise ValueError(f"unknown miw.estimator {m.estimator!r}")
        return value, (aux, jnp.mean(w))

    (loss, (aux, w_mean)), (grad_f, grad_dual) = jax.value_and_grad(value_fn, argnums=(0, 1), has_aux=True)(
        state.miw, state.miw_aux["params"])
    grad_g = jax.grad(lambda p: jnp.mean(agent.miw.apply(p, b.observations, b.actions)))(state.miw)
    direction, lam = miw_lib.constrained_direction(grad_f, grad_g, w_mean, m.mean_bound)
    updates, opt = agent.miw_tx.update(direction, state.miw_opt, state.miw)
    miw = optax.apply_updates(state.miw, updates)
    # the dual ascends: descend -grad
    dual_updates, dual_opt = agent.miw_aux_tx.update(
        jax.tree.map(jnp.negative, grad_dual), state.miw_aux["opt"], state.miw_aux["params"])
    dual = optax.apply_updates(state.miw_aux["params"], dual_updates)
    state = state.replace(
        miw=miw,
        miw_opt=opt,
        miw_target=optax.incremental_update(miw, state.miw_target, m.tau),
        miw_critic=optax.incremental_update(state.critic, state.miw_critic, m.tau),
        miw_aux={"params": dual, "opt": dual_opt},
    )
    return state, {**aux, "miw_loss": loss, "miw_w_mean": w_mean, "miw_lambda": lam}


def _wpr_weights(agent: Agent, state: TrainState, batch: Transitions) -> jax.Array:
    """WPR ablation: w(s, a) of each batch row (current MIW network, no gradient), for both of its fake pairs.

    The fake pairs of row i are (s_i, pi(s_i)) and (s'_i, pi(s'_i)) with s'_i ~ P_hat(s_i, pi(s_i));
    both get w(s_i, a_i). The (1 - done) factor is the one already in the fake weights: 1 for
    (s_i, pi(s_i)) (a batch state is never terminal) and 1 - done(s'_i) of the model step for the
    second pair; the row's logged done concerns its data s', which is in no fake pair. The GAN
    losses' weighted means divide by the sum of the weights (self-normalised, like w / mean(w) of
    the refit). Returns weights [2B] to multiply the fake weights with.
    """
    w = jax.lax.stop_gradient(agent.miw.apply(state.miw, batch.observations, batch.actions))
    return jnp.concatenate([w, w])


def iteration(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array, with_actor: bool):
    """One fused AMPL iteration: critic, discriminator, (actor), (MIW)."""
    a = agent.config.agent
    k_real, k_model, k_critic, k_fake, k_raw, k_disc, k_miw = jax.random.split(key, 7)
    n = a.batch_size
    n_data = data.observations.shape[0]
    epoch = _epoch(agent, state.step)
    f = real_fraction(epoch, agent.config.rollout)
    idx = jax.random.randint(k_real, (2 * n,), 0, n_data)  # first n: real part; all 2n: "true" pairs
    batch = _mix(_gather(data, idx[:n]), buffer_sample(state.buffer, k_model, n), jnp.round(f * n))

    state, metrics = _critic_step(agent, state, batch, k_critic)

    fake_obs, fake_noise, fake_raw, fake_w = _fake_inputs(agent, state, batch, k_fake)
    if a.weighted_regularizer and a.regularizer != "none":
        fake_w = fake_w * _wpr_weights(agent, state, batch)
    if a.regularizer == "jsd":
        true_raw = disc_lib.action_to_raw(data.actions[idx], agent.max_action)
        state, m_disc = _disc_step(agent, state, fake_obs, fake_raw, fake_w, data.observations[idx], true_raw, k_disc)
        metrics.update(m_disc)
    if with_actor:
        state, m_actor = _actor_step(agent, state, batch, fake_obs, fake_noise, fake_w)
        metrics.update(m_actor)
    if agent.config.miw.schedule == "interleaved":
        state, m_miw = miw_step(agent, state, data, k_miw)
        metrics.update(m_miw)
    metrics["real_fraction"] = f
    return state.replace(step=state.step + 1), metrics


def _scan_iterations(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array, num_iters: int):
    """lax.scan over blocks of k iterations (k = actor_update_every); the actor updates in the last."""
    k = agent.config.agent.actor_update_every
    if num_iters % k:
        raise ValueError(f"rollout.period ({num_iters}) must be a multiple of agent.actor_update_every ({k})")

    def block(state, key):
        keys = jax.random.split(key, k)
        plain_metrics = []
        for i in range(k - 1):  # k is small (2): unrolling it is cheap and keeps metrics uniform
            state, m = iteration(agent, state, data, keys[i], with_actor=False)
            plain_metrics.append(m)
        state, m_last = iteration(agent, state, data, keys[-1], with_actor=True)
        shared = {name: jnp.mean(jnp.stack([m[name] for m in plain_metrics] + [m_last[name]])) for name in m_last
                  if all(name in m for m in plain_metrics)}
        return state, {**m_last, **shared}

    return jax.lax.scan(block, state, jax.random.split(key, num_iters // k))


def make_update_step(agent: Agent) -> Callable[[TrainState, OfflineData], tuple[TrainState, Metrics]]:
    """The jitted update_step: rollout into the buffer, then `rollout.period` fused iterations."""
    return jax.jit(build_update_step(agent), donate_argnums=0)


def build_update_step(agent: Agent) -> Callable[[TrainState, OfflineData], tuple[TrainState, Metrics]]:
    """The pure, un-jitted update_step (for callers that vmap it over seeds before jitting)."""
    r = agent.config.rollout
    n_starts = max(1, r.transitions_per_rollout // r.horizon)

    def update_step(state: TrainState, data: OfflineData) -> tuple[TrainState, Metrics]:
        key, k_start, k_roll, k_scan = jax.random.split(state.key, 4)
        start_obs = data.observations[jax.random.randint(k_start, (n_starts,), 0, data.observations.shape[0])]
        policy_fn = lambda k, obs: agent.act(state.actor, k, obs)[0]
        trans, valid = rollout(
            k_roll, state.model, policy_fn, start_obs, r.horizon, agent.termination_fn,
            agent.obs_range, agent.reward_bound, elite_sampling=agent.config.model.rollout_elite_sampling,
        )
        state = state.replace(key=key, buffer=buffer_insert(state.buffer, trans, valid))
        state, metrics = _scan_iterations(agent, state, data, k_scan, r.period)
        metrics = jax.tree.map(jnp.mean, metrics)
        metrics["rollout_valid_fraction"] = jnp.mean(valid.astype(jnp.float32))
        metrics["buffer_size"] = state.buffer.size.astype(jnp.float32)
        return state, metrics

    return update_step


def make_miw_phase(agent: Agent, num_steps: int) -> Callable[[TrainState, OfflineData], tuple[TrainState, Metrics]]:
    """The authors' "phased" schedule: a block of MIW steps in one scan (called before a refit)."""

    def phase(state: TrainState, data: OfflineData):
        key, sub = jax.random.split(state.key)
        state, metrics = jax.lax.scan(
            lambda s, k: miw_step(agent, s, data, k), state.replace(key=key), jax.random.split(sub, num_steps)
        )
        return state, jax.tree.map(jnp.mean, metrics)

    return jax.jit(phase, donate_argnums=0)


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


def make_select_action(agent: Agent) -> Callable:
    """Evaluation policy: best of N sampled actions by min(Q1, Q2)."""
    n_samples = agent.config.eval.num_action_samples

    @jax.jit
    def select(actor_params, critic_params, key: jax.Array, obs: jax.Array) -> jax.Array:
        b = obs.shape[0]
        rep = jnp.repeat(obs, n_samples, axis=0)
        act, _ = agent.act(actor_params, key, rep)
        q_min = jnp.min(agent.critic.apply(critic_params, rep, act), axis=0).reshape(b, n_samples)
        return actor_lib.best_of_n(act.reshape(b, n_samples, -1), q_min)

    return select
