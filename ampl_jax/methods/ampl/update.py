"""One compiled program per rollout period: a model rollout, then a lax.scan of fused iterations.

update_step(state, data) = rollout into the FIFO buffer, then `period` iterations of
critic -> discriminator -> (actor, every k-th) -> MIW, each on a minibatch mixed from real and
model data. The actor's every-k-th schedule is structured into the scan (blocks of k
iterations whose first one updates the actor) rather than gated by lax.cond, so nothing runs
both branches when the step is later vmapped over seeds.

Ablations are chosen statically from the config (never by a traced predicate): the MIW
estimator and test function in `miw_step`, the w-weighted regulariser (WPR) in `iteration`,
no regulariser in `_fake_inputs`/`iteration`, the policy class through `Agent.act`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ampl_jax.methods.ampl import actor as actor_lib
from ampl_jax.methods.ampl import critic as critic_lib
from ampl_jax.methods.ampl import discriminator as disc_lib
from ampl_jax.world_model.buffer import buffer_insert, buffer_sample
from ampl_jax.methods.ampl.miw_step import miw_step
from ampl_jax.methods.ampl.state import Agent, TrainState
from ampl_jax.types import OfflineData, Transitions
from ampl_jax.world_model.rollout import predict, rollout

Metrics = dict[str, jax.Array]


def real_fraction(epoch: jax.Array, cfg) -> jax.Array:
    """Spec schedule: 1.0 through epoch 45, minus 0.1 every 5 epochs, floored at 0.5."""
    if cfg.fixed_real_fraction >= 0:
        return jnp.asarray(cfg.fixed_real_fraction, jnp.float32)
    steps = jnp.ceil(jnp.maximum(epoch - cfg.real_full_epochs, 0) / cfg.real_decay_every)
    return jnp.maximum(1.0 - cfg.real_decay * steps, cfg.real_min).astype(jnp.float32)


def real_rows(f: jax.Array, n: int) -> jax.Array:
    """Real rows of an n-row minibatch at real fraction f: int(f * n), truncated as the authors'
    `int(real_data_pct_curr * batch_size)` (actor_critic_trainer.py:134; 460 of 512 at f = 0.9)."""
    return jnp.floor(f * n)


def _epoch(agent: Agent, step: jax.Array) -> jax.Array:
    return step // agent.hp.train.epoch_length + 1


def _mix(real: Transitions, model: Transitions, n_real: jax.Array) -> Transitions:
    """First n_real rows real, the rest model: a dynamic fraction with static shapes."""
    take_real = jnp.arange(real.rewards.shape[0]) < n_real

    def sel(r, m):
        mask = take_real.reshape((-1,) + (1,) * (r.ndim - 1))
        return jnp.where(mask, r, m)

    return jax.tree.map(sel, real, model)


def _model_dones(agent: Agent, obs, act, next_obs, rew) -> jax.Array:
    """The rollout's termination rule for the GAN's fake s': the env rule, |s'| > obs_range or
    |r^| > R, written as "not within" so that a non-finite sample counts as done."""
    out_of_range = ~jnp.all(jnp.abs(next_obs) <= agent.obs_range, axis=-1)
    bad_reward = ~(jnp.abs(rew) <= agent.reward_bound)
    return agent.termination_fn(obs, act, next_obs) | out_of_range | bad_reward


def critic_step(agent: Agent, state: TrainState, batch: Transitions, key: jax.Array):
    a = agent.hp.agent
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


def _mixed_states(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array, n: int, n_real: jax.Array):
    """States of a fresh minibatch mixed like the critic's (first n_real rows real, the rest model)."""
    k_real, k_model = jax.random.split(key)
    real = data.observations[data.indices(k_real, n)]
    model = buffer_sample(state.buffer, k_model, n).observations
    return jnp.where((jnp.arange(n) < n_real)[:, None], real, model)


class GanPairs(NamedTuple):
    """One iteration's GAN inputs. Fake pairs are (obs, raw pi(obs; noise)); `fake_raw` holds the
    current actor's raw actions (the discriminator's inputs, no gradient), the actor's loss
    recomputes them from its parameters. Rows with weight 0 are dropped pairs. `count`, when set,
    is the denominator of every weighted mean (else each side's weight sum)."""

    fake_obs: jax.Array
    fake_noise: jax.Array
    fake_raw: jax.Array
    fake_w: jax.Array
    true_obs: jax.Array
    true_raw: jax.Array
    true_w: jax.Array
    count: jax.Array | None = None
    live: jax.Array | None = None  # WPR: 1 on the live rows (the unweighted KL-dual's weights)


def _gan_pairs(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array, n_real: jax.Array) -> GanPairs:
    """The authors' GAN batch: fake (s, pi(s)) and (s', pi(s')), s' ~ P_hat(s, pi(s)), for the states
    of a fresh minibatch mixed like the critic's; true pairs from another independent data batch.

    Fake weights: 1 for (s, pi(s)), 1 - done(s') for (s', pi(s')), since the authors keep only
    non-terminal s'; true pairs: as many as the live fakes. A done s' (including a non-finite model
    sample) is replaced by its s before anything reads it, so no NaN reaches a network or a gradient.
    """
    k_states, k_n1, k_model, k_n2, k_true = jax.random.split(key, 5)
    n = agent.hp.agent.batch_size
    obs = _mixed_states(agent, state, data, k_states, n, n_real)
    noise1, noise2 = agent.noise(k_n1, n), agent.noise(k_n2, n)
    act, raw1 = agent.actor.apply(state.actor, obs, noise1)
    next_obs, rew = predict(state.model, k_model, obs, act, elite_sampling=agent.hp.model.fake_elite_sampling,
                             dtype=agent.model_dtype)
    next_obs, rew = jax.lax.stop_gradient(next_obs), jax.lax.stop_gradient(rew)
    alive = ~_model_dones(agent, obs, act, next_obs, rew)
    next_obs = jnp.where(alive[:, None], next_obs, obs)
    _, raw2 = agent.actor.apply(state.actor, next_obs, noise2)
    fake_w = jnp.concatenate([jnp.ones((n,), jnp.float32), alive.astype(jnp.float32)])
    true_idx = data.indices(k_true, 2 * n)
    return GanPairs(
        fake_obs=jnp.concatenate([obs, next_obs]),
        fake_noise=jnp.concatenate([noise1, noise2]),
        fake_raw=jax.lax.stop_gradient(jnp.concatenate([raw1, raw2])),
        fake_w=fake_w,
        true_obs=data.observations[true_idx],
        true_raw=disc_lib.action_to_raw(data.actions[true_idx], agent.max_action),
        true_w=(jnp.arange(2 * n) < jnp.sum(fake_w)).astype(jnp.float32),
    )


def _wpr_pairs(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array) -> GanPairs:
    """WPR ablation, as the authors' weighted trainer: for a data batch (s, a, s', a'), fakes
    (s'~, pi(s'~)) with s'~ ~ P_hat(s, a) against the data's (s', a') of the same rows, non-terminal
    s'~ only; both sides weighted by the refit weights w / mean(w) times (1 - done), each loss a
    plain mean over the live rows. Rows without a logged next action (episode ends) are dropped."""
    k_idx, k_model, k_noise = jax.random.split(key, 3)
    n = agent.hp.agent.batch_size
    idx = data.indices(k_idx, n)
    obs, act = data.observations[idx], data.actions[idx]
    next_obs, rew = predict(state.model, k_model, obs, act, elite_sampling=agent.hp.model.fake_elite_sampling,
                             dtype=agent.model_dtype)
    alive = ~_model_dones(agent, obs, act, next_obs, rew) & (data.next_action_valid[idx] > 0)
    next_obs = jnp.where(alive[:, None], jax.lax.stop_gradient(next_obs), obs)
    noise = agent.noise(k_noise, n)
    _, raw = agent.actor.apply(state.actor, next_obs, noise)
    w = jnp.where(alive, state.data_weights[idx] * (1.0 - data.dones[idx]), 0.0)
    return GanPairs(
        fake_obs=next_obs,
        fake_noise=noise,
        fake_raw=jax.lax.stop_gradient(raw),
        fake_w=w,
        true_obs=data.next_observations[idx],
        true_raw=disc_lib.action_to_raw(data.next_actions[idx], agent.max_action),
        true_w=w,
        count=jnp.sum(alive.astype(jnp.float32)),
        live=alive.astype(jnp.float32),
    )


def _kl_dual_weights(agent: Agent, pairs: GanPairs) -> tuple[jax.Array, jax.Array]:
    """(fake, true) weights of the KL-dual losses: the WPR weights w * (1 - done) (the authors'
    use_weight_wpr=True, `agent.kl_dual_weighted`), else 1 on every live row."""
    if agent.hp.agent.kl_dual_weighted:
        return pairs.fake_w, pairs.true_w
    return pairs.live, pairs.live


def _disc_step(agent: Agent, state: TrainState, pairs: GanPairs, key: jax.Array):
    if agent.hp.agent.regularizer == "kl_dual":  # the authors' --use_kl_dual (with WPR's pairs)
        fake_w, true_w = _kl_dual_weights(agent, pairs)

        def kl_loss_fn(params):
            true_values = agent.disc.apply(params, pairs.true_obs, pairs.true_raw)
            fake_values = agent.disc.apply(params, pairs.fake_obs, pairs.fake_raw)
            return disc_lib.kl_dual_discriminator_loss(true_values, fake_values, true_w, fake_w, pairs.count)

        grads, metrics = jax.grad(kl_loss_fn, has_aux=True)(state.disc)
        updates, opt = agent.disc_tx.update(grads, state.disc_opt, state.disc)
        return state.replace(disc=optax.apply_updates(state.disc, updates), disc_opt=opt), metrics
    labels = jax.random.uniform(key, (pairs.true_obs.shape[0],), minval=agent.hp.agent.true_label_low, maxval=1.0)

    def loss_fn(params):
        true_logits = agent.disc.apply(params, pairs.true_obs, pairs.true_raw)
        fake_logits = agent.disc.apply(params, pairs.fake_obs, pairs.fake_raw)
        return disc_lib.discriminator_loss(true_logits, fake_logits, labels, pairs.fake_w, pairs.true_w, pairs.count)

    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.disc)
    updates, opt = agent.disc_tx.update(grads, state.disc_opt, state.disc)
    return state.replace(disc=optax.apply_updates(state.disc, updates), disc_opt=opt), metrics


def _policy_loss(agent: Agent, state: TrainState, params, q_obs: jax.Array, q_noise: jax.Array, pairs: GanPairs):
    """The actor's loss: the Q term on the critic's minibatch, the generator loss on the fake pairs.

    The generator loss reads the discriminator as it is before this iteration's step.
    Returns (loss, (metrics, mean |min Q| at the policy's actions)).
    """
    a = agent.hp.agent
    act, _ = agent.actor.apply(params, q_obs, q_noise)
    q_min = jnp.min(agent.critic.apply(state.critic, q_obs, act), axis=0)
    q_abs = jax.lax.stop_gradient(jnp.mean(jnp.abs(q_min)))
    q_avg = jnp.where(state.q_abs_avg < 0, q_abs, state.q_abs_avg)  # unset: this batch's, as the authors
    q_scale, gen_scale = actor_lib.loss_scales(_epoch(agent, state.step), a.warm_start_epochs, a.q_coef,
                                               q_avg, a.regularizer)
    _, raw = agent.actor.apply(params, pairs.fake_obs, pairs.fake_noise)
    if a.regularizer == "kl_dual":
        gen = disc_lib.kl_dual_generator_loss(agent.disc.apply(state.disc, pairs.fake_obs, raw),
                                              _kl_dual_weights(agent, pairs)[0], pairs.count)
    else:
        gen = disc_lib.generator_loss(agent.disc.apply(state.disc, pairs.fake_obs, raw), pairs.fake_w, pairs.count)
    loss, metrics = actor_lib.actor_loss(q_min, gen, q_scale, gen_scale)
    return loss, (metrics, q_abs)


def _actor_step(agent: Agent, state: TrainState, grads) -> TrainState:
    updates, opt = agent.actor_tx.update(grads, state.actor_opt, state.actor)
    return state.replace(actor=optax.apply_updates(state.actor, updates), actor_opt=opt)


def _moving_averages(agent: Agent, state: TrainState, q_abs: jax.Array) -> TrainState:
    """Every iteration, as the authors (also when the actor did not step): target actor, |Q|avg."""
    a = agent.hp.agent
    return state.replace(
        actor_target=optax.incremental_update(state.actor, state.actor_target, a.actor_tau),
        q_abs_avg=actor_lib.update_q_abs_avg(state.q_abs_avg, jax.lax.stop_gradient(q_abs), a.q_avg_rate),
    )


def iteration(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array, with_actor: bool):
    """One fused AMPL iteration in the authors' order: critic; actor (if `with_actor`, against the
    discriminator before its step); discriminator; moving averages; (MIW).

    The GAN draws its own fresh batches, as the authors do: fake states mixed like the critic's
    minibatch, and true (s, a) pairs from the data, as many as there are live fake pairs.
    """
    a = agent.hp.agent
    k_real, k_model, k_critic, k_gan, k_q, k_disc, k_miw = jax.random.split(key, 7)
    n = a.batch_size
    epoch = _epoch(agent, state.step)
    f = real_fraction(epoch, agent.hp.rollout)
    n_real = real_rows(f, n)
    batch = _mix(data.sample(k_real, n), buffer_sample(state.buffer, k_model, n), n_real)

    state, metrics = critic_step(agent, state, batch, k_critic)

    pairs = _wpr_pairs(agent, state, data, k_gan) if a.weighted_regularizer else _gan_pairs(
        agent, state, data, k_gan, n_real)
    q_noise = agent.noise(k_q, n)
    if with_actor:
        grads, (m_actor, q_abs) = jax.grad(
            lambda p: _policy_loss(agent, state, p, batch.observations, q_noise, pairs), has_aux=True)(state.actor)
    else:  # no step, but |Q|avg still moves, as the authors'
        _, (m_actor, q_abs) = _policy_loss(agent, state, state.actor, batch.observations, q_noise, pairs)
    metrics.update(m_actor)
    state, m_disc = _disc_step(agent, state, pairs, k_disc)
    metrics.update(m_disc)
    if with_actor:
        state = _actor_step(agent, state, grads)
    state = _moving_averages(agent, state, q_abs)
    if agent.hp.miw.schedule == "interleaved":
        state, m_miw = miw_step(agent, state, data, k_miw)
        metrics.update(m_miw)
    metrics["real_fraction"] = f
    metrics["fake_alive_fraction"] = jnp.mean(pairs.fake_w[-n:] > 0)
    return state.replace(step=state.step + 1), metrics


def _scan_iterations(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array, num_iters: int):
    """lax.scan over blocks of k iterations (k = actor_update_every); the actor updates in the first.

    The authors step the actor when the iteration counter is a multiple of k (0, k, 2k, ...).
    """
    k = agent.hp.agent.actor_update_every  # divides rollout.period (configuration.validate)

    def block(state, key):
        keys = jax.random.split(key, k)
        state, m_first = iteration(agent, state, data, keys[0], with_actor=True)
        plain_metrics = []
        for i in range(1, k):  # k is small (2): unrolling it is cheap and keeps metrics uniform
            state, m = iteration(agent, state, data, keys[i], with_actor=False)
            plain_metrics.append(m)
        shared = {name: jnp.mean(jnp.stack([m_first[name]] + [m[name] for m in plain_metrics])) for name in m_first
                  if all(name in m for m in plain_metrics)}
        return state, {**m_first, **shared}

    return jax.lax.scan(block, state, jax.random.split(key, num_iters // k))


def make_update_step(agent: Agent) -> Callable[[TrainState, OfflineData], tuple[TrainState, Metrics]]:
    """The jitted update_step: rollout into the buffer, then `rollout.period` fused iterations."""
    return jax.jit(build_update_step(agent), donate_argnums=0)


def model_rollouts(agent: Agent, state: TrainState, data: OfflineData, key: jax.Array):
    """Fill the FIFO as the authors do: batches of `rollout.batch_size` dataset starts, h steps of the
    current actor each, until at least `rollout.transitions_per_rollout` transitions were added; the
    last batch starts only as many rollouts as transitions are still missing.

    A lax.while_loop with static shapes per batch (under a vmap over seeds it runs until every seed
    is done, the finished ones unchanged). Returns (buffer, transitions added, start states used).
    """
    r = agent.hp.rollout
    total, bs = r.transitions_per_rollout, r.batch_size
    policy_fn = lambda k, obs: agent.act(state.actor, k, obs)[0]

    def body(carry):
        buf, count, starts, k = carry
        k, k_start, k_roll = jax.random.split(k, 3)
        start_obs = data.observations[data.indices(k_start, bs)]
        trans, valid = rollout(
            k_roll, state.model, policy_fn, start_obs, r.horizon, agent.termination_fn,
            agent.obs_range, agent.reward_bound, elite_sampling=agent.hp.model.rollout_elite_sampling,
            dtype=agent.model_dtype,
        )
        use = jnp.arange(bs) < total - count  # valid is step-major [h * bs]: tile the start mask
        valid = valid & jnp.tile(use, r.horizon)
        return (buffer_insert(buf, trans, valid), count + jnp.sum(valid, dtype=jnp.int32),
                starts + jnp.sum(use, dtype=jnp.int32), k)

    zero = jnp.zeros((), jnp.int32)
    buf, count, starts, _ = jax.lax.while_loop(lambda c: c[1] < total, body, (state.buffer, zero, zero, key))
    return buf, count, starts


def build_update_step(agent: Agent) -> Callable[[TrainState, OfflineData], tuple[TrainState, Metrics]]:
    """The pure, un-jitted update_step (for callers that vmap it over seeds before jitting)."""
    r = agent.hp.rollout

    def update_step(state: TrainState, data: OfflineData) -> tuple[TrainState, Metrics]:
        key, k_roll, k_scan = jax.random.split(state.key, 3)
        buf, count, starts = model_rollouts(agent, state, data, k_roll)
        state = state.replace(key=key, buffer=buf)
        state, metrics = _scan_iterations(agent, state, data, k_scan, r.period)
        metrics = jax.tree.map(jnp.mean, metrics)
        # mean rollout length before termination, in model steps (h when nothing terminates)
        metrics["rollout_mean_length"] = count.astype(jnp.float32) / jnp.maximum(starts, 1).astype(jnp.float32)
        metrics["rollout_transitions"] = count.astype(jnp.float32)
        metrics["buffer_size"] = state.buffer.size.astype(jnp.float32)
        return state, metrics

    return update_step


def make_select_action(agent: Agent, n_samples: int | None = None) -> Callable:
    """Evaluation policy: best of N sampled actions by min(Q1, Q2) (N: eval.num_action_samples
    unless given; with N = 1, the actor's own sample)."""
    n_samples = agent.hp.eval.num_action_samples if n_samples is None else int(n_samples)

    @jax.jit
    def select(actor_params, critic_params, key: jax.Array, obs: jax.Array) -> jax.Array:
        b = obs.shape[0]
        rep = jnp.repeat(obs, n_samples, axis=0)
        act, _ = agent.act(actor_params, key, rep)
        q_min = jnp.min(agent.critic.apply(critic_params, rep, act), axis=0).reshape(b, n_samples)
        return actor_lib.best_of_n(act.reshape(b, n_samples, -1), q_min)

    return select
