"""MOPO (Yu et al. 2020): SAC on real data mixed with uncertainty-penalised model rollouts.

The point of this baseline is that it differs from AMPL only in the method: it uses the same
offline data (the same min-max scaled rewards r~), the same world model (ModelState, fitted by
the loop exactly as for AMPL), the same `rollout` function and the same FIFO buffer. What
changes:

* rewards of model transitions are penalised, r~ - lambda * u(s, a), with MOPO's max-aleatoric
  u(s, a) = max over elites of || std_e(s, a) ||_2 (see `aleatoric_penalty` for the units);
* the agent is SAC (tanh-Gaussian actor, an ensemble of `num_critics` Q heads whose min forms
  the target, temperature tuned towards entropy -act_dim), trained on minibatches of which a
  fixed fraction `real_ratio` is real data and the rest comes from the model buffer.

update_step(state, data) = one rollout of the current actor into the buffer, then
`rollout.period` SAC iterations in a lax.scan, as AMPL's. Every iteration updates critic,
actor and temperature (no lax.cond anywhere, so the step vmaps over seeds).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ampl_jax import configuration, networks, precision
from ampl_jax.methods import no_diagnostics, no_hook
from ampl_jax.buffer import Buffer, buffer_init, buffer_insert, buffer_sample
from ampl_jax.types import DatasetInfo, OfflineData, Transitions
from ampl_jax.world_model.ensemble import ModelState, ensemble_apply
from ampl_jax.world_model.rollout import rollout

NEEDS_MODEL = True  # the loop fits the ensemble first and may refit it (state.model is replaceable)

Params = Any
Metrics = dict[str, jax.Array]

RELU = 0.0  # LeakyReLU slope 0: SAC's plain ReLU networks


@flax.struct.dataclass
class MOPOState:
    step: jax.Array  # SAC iterations done (int32)
    key: jax.Array  # PRNG key
    actor: Params
    actor_opt: optax.OptState
    critic: Params
    critic_target: Params
    critic_opt: optax.OptState
    log_alpha: jax.Array  # log temperature (scalar)
    alpha_opt: optax.OptState
    model: ModelState  # the world model; the loop fits/refits it and swaps it in, as for AMPL
    buffer: Buffer  # FIFO of penalised model transitions


@dataclasses.dataclass(frozen=True)
class MOPOHP:
    """What MOPO's step reads of the config: config.mopo's SAC and penalty, rollout, the model's use."""

    batch_size: int
    gamma: float
    tau: float
    real_ratio: float
    penalty_coef: float
    init_temperature: float
    horizon: int  # rollout.*
    transitions_per_rollout: int
    period: int
    buffer_capacity: int
    rollout_elite_sampling: str  # model.rollout_elite_sampling
    model_dtype: str  # compute.model_dtype


@dataclasses.dataclass(frozen=True, eq=False)
class MOPOAgent:
    """Static parts of a MOPO run; closed over by the jitted functions."""

    actor: networks.TanhGaussianActor  # read through .distribution (mean, log_std)
    critic: networks.TwinCritic  # num_heads = mopo.num_critics
    actor_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation
    alpha_tx: optax.GradientTransformation
    obs_dim: int
    act_dim: int
    max_action: float
    target_entropy: float
    termination_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    obs_range: np.ndarray  # [obs_dim]
    reward_bound: float
    hp: MOPOHP

    def sample(self, params: Params, key: jax.Array, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(a, log pi(a|s)) with a = max_action * tanh(u), u ~ N(mean, std): the change of variables."""
        mean, log_std = self.actor.apply(params, obs, method="distribution")
        eps = jax.random.normal(key, mean.shape, mean.dtype)
        a, _, logp = networks.sample_tanh_gaussian(mean, log_std, eps, self.max_action)
        return a, logp

    def mode(self, params: Params, obs: jax.Array) -> jax.Array:
        """The deterministic evaluation action max_action * tanh(mean)."""
        mean, _ = self.actor.apply(params, obs, method="distribution")
        return self.max_action * jnp.tanh(mean)


def make_agent(
    config: ml_collections.ConfigDict,
    info: DatasetInfo,
    termination_fn: Callable,
    obs_range: np.ndarray,
    reward_bound: float,
    *,
    data: OfflineData | None = None,
) -> MOPOAgent:
    """The methods' make_agent signature (termination, obs range and bound drive the rollouts)."""
    m = config.mopo
    hidden = tuple(m.hidden_dims)
    return MOPOAgent(
        actor=networks.TanhGaussianActor(info.act_dim, float(info.max_action), hidden, RELU),
        critic=networks.TwinCritic(hidden, RELU, int(m.num_critics)),
        actor_tx=optax.adam(float(m.actor_lr)),
        critic_tx=optax.adam(float(m.critic_lr)),
        alpha_tx=optax.adam(float(m.alpha_lr)),
        obs_dim=info.obs_dim,
        act_dim=info.act_dim,
        max_action=float(info.max_action),
        target_entropy=-float(info.act_dim),
        termination_fn=termination_fn,
        obs_range=np.asarray(obs_range, np.float32),
        reward_bound=float(reward_bound),
        hp=configuration.take(MOPOHP, m, horizon=config.rollout.horizon,
                              transitions_per_rollout=config.rollout.transitions_per_rollout,
                              period=config.rollout.period, buffer_capacity=config.rollout.buffer_capacity,
                              rollout_elite_sampling=config.model.rollout_elite_sampling,
                              model_dtype=config.compute.model_dtype),
    )


def init_state(agent: MOPOAgent, key: jax.Array, model: ModelState | None) -> MOPOState:
    """Fresh SAC networks and optimisers, the given (fitted) world model, an empty buffer."""
    if model is None:
        raise ValueError("mopo.init_state needs the world model (NEEDS_MODEL is True)")
    k_actor, k_critic, key = jax.random.split(key, 3)
    obs = jnp.zeros((1, agent.obs_dim), jnp.float32)
    act = jnp.zeros((1, agent.act_dim), jnp.float32)
    actor = agent.actor.init(k_actor, obs, method="distribution")
    critic = agent.critic.init(k_critic, obs, act)
    log_alpha = jnp.asarray(math.log(agent.hp.init_temperature), jnp.float32)
    return MOPOState(
        step=jnp.zeros((), jnp.int32),
        key=key,
        actor=actor,
        actor_opt=agent.actor_tx.init(actor),
        critic=critic,
        critic_target=jax.tree.map(jnp.copy, critic),  # a distinct buffer: the step donates its input
        critic_opt=agent.critic_tx.init(critic),
        log_alpha=log_alpha,
        alpha_opt=agent.alpha_tx.init(log_alpha),
        model=model,
        buffer=buffer_init(agent.hp.buffer_capacity, agent.obs_dim, agent.act_dim),
    )


# --------------------------------------------------------------------------------------------
# the uncertainty penalty and the penalised rollout


def aleatoric_penalty(model: ModelState, obs: jax.Array, act: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """MOPO's u(s, a) = max_e || std_e(s, a) ||_2 over the elites: [B], >= 0.

    Units: the std is taken in the model's un-standardised output space, std_e * target_norm.std,
    i.e. the same space `predict` samples in: the first component in scaled-reward (r~) units,
    the others in observation-delta units. As in MOPO, the norm runs over all of them
    (reward and next-state). Penalised rewards therefore are r~ - lambda * u. `dtype`: the
    ensemble's matmul inputs (compute.model_dtype).
    """
    x = model.input_norm(jnp.concatenate([obs, act], axis=-1))
    elite_params = jax.tree.map(lambda p: p[model.elites], model.params)
    _, logstd = ensemble_apply(elite_params, x, dtype)  # [E, B, D]
    std = jnp.exp(logstd) * model.target_norm.std
    return jnp.max(jnp.linalg.norm(std, axis=-1), axis=0)


def model_rollout(agent: MOPOAgent, state: MOPOState, data: OfflineData,
                  key: jax.Array) -> tuple[Transitions, jax.Array, jax.Array]:
    """AMPL's rollout of the current (stochastic) actor from dataset states, plus u(s, a).

    Returns the unpenalised transitions exactly as `rollout` gives them, the valid mask, and the
    penalty of every transition's (s, a) (the same pairs the model stepped from).
    """
    r = agent.hp
    n_starts = max(1, r.transitions_per_rollout // r.horizon)  # as AMPL's update_step
    k_start, k_roll = jax.random.split(key)
    start_obs = data.observations[jax.random.randint(k_start, (n_starts,), 0, data.observations.shape[0])]
    policy_fn = lambda k, obs: agent.sample(state.actor, k, obs)[0]
    model_dtype = precision.dtype(agent.hp.model_dtype)  # the world model's matmul inputs
    trans, valid = rollout(
        k_roll, state.model, policy_fn, start_obs, r.horizon, agent.termination_fn,
        agent.obs_range, agent.reward_bound, elite_sampling=agent.hp.rollout_elite_sampling,
        dtype=model_dtype,
    )
    penalty = aleatoric_penalty(state.model, trans.observations, trans.actions, model_dtype)
    return trans, valid, penalty


def penalise(trans: Transitions, penalty: jax.Array, coef: float) -> Transitions:
    """MOPO's reward r~ - lambda * u(s, a); everything else as the model produced it."""
    return trans._replace(rewards=trans.rewards - coef * penalty)


# --------------------------------------------------------------------------------------------
# SAC


def _gather(data: OfflineData, idx: jax.Array) -> Transitions:
    return Transitions(data.observations[idx], data.actions[idx], data.scaled_rewards[idx],
                       data.next_observations[idx], data.dones[idx])


def n_real(agent: MOPOAgent) -> int:
    """Real rows per minibatch: a static count, so batches need no masks."""
    return int(round(agent.hp.real_ratio * agent.hp.batch_size))


def _batch(agent: MOPOAgent, state: MOPOState, data: OfflineData, key: jax.Array) -> Transitions:
    """The first n_real rows from the dataset, the rest from the model buffer."""
    k_real, k_model = jax.random.split(key)
    n, nr = agent.hp.batch_size, n_real(agent)
    real = _gather(data, jax.random.randint(k_real, (nr,), 0, data.observations.shape[0]))
    model = buffer_sample(state.buffer, k_model, n - nr)
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b.astype(a.dtype)]), real, model)


def _critic_step(agent: MOPOAgent, state: MOPOState, batch: Transitions, key: jax.Array):
    m = agent.hp
    alpha = jnp.exp(state.log_alpha)
    next_act, next_logp = agent.sample(state.actor, key, batch.next_observations)
    q_next = jnp.min(agent.critic.apply(state.critic_target, batch.next_observations, next_act), axis=0)
    y = batch.rewards + m.gamma * (1.0 - batch.dones) * (q_next - alpha * next_logp)
    y = jax.lax.stop_gradient(y)

    def loss_fn(params):
        q = agent.critic.apply(params, batch.observations, batch.actions)  # [K, B]
        # per head 0.5 * MSE, summed over heads (each head its own regression)
        return 0.5 * jnp.sum(jnp.mean(jnp.square(q - y), axis=-1)), jnp.mean(q)

    (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.critic)
    updates, opt = agent.critic_tx.update(grads, state.critic_opt, state.critic)
    critic = optax.apply_updates(state.critic, updates)
    target = optax.incremental_update(critic, state.critic_target, m.tau)
    metrics = {"critic_loss": loss, "q_mean": q_mean, "target_mean": jnp.mean(y)}
    return state.replace(critic=critic, critic_opt=opt, critic_target=target), metrics


def _actor_and_alpha_step(agent: MOPOAgent, state: MOPOState, obs: jax.Array, key: jax.Array):
    alpha = jnp.exp(state.log_alpha)

    def actor_loss(params):
        act, logp = agent.sample(params, key, obs)
        q = jnp.min(agent.critic.apply(state.critic, obs, act), axis=0)
        return jnp.mean(alpha * logp - q), logp

    (a_loss, logp), grads = jax.value_and_grad(actor_loss, has_aux=True)(state.actor)
    updates, a_opt = agent.actor_tx.update(grads, state.actor_opt, state.actor)
    actor = optax.apply_updates(state.actor, updates)

    # temperature: raise alpha when the entropy -E[log pi] is below the target, lower it above
    gap = jax.lax.stop_gradient(jnp.mean(logp) + agent.target_entropy)
    t_loss, t_grad = jax.value_and_grad(lambda la: -la * gap)(state.log_alpha)
    t_updates, t_opt = agent.alpha_tx.update(t_grad, state.alpha_opt, state.log_alpha)
    log_alpha = optax.apply_updates(state.log_alpha, t_updates)

    metrics = {"actor_loss": a_loss, "alpha": alpha, "alpha_loss": t_loss, "entropy": -jnp.mean(logp)}
    return state.replace(actor=actor, actor_opt=a_opt, log_alpha=log_alpha, alpha_opt=t_opt), metrics


def iteration(agent: MOPOAgent, state: MOPOState, data: OfflineData, key: jax.Array) -> tuple[MOPOState, Metrics]:
    """One SAC iteration on a mixed minibatch: critic (and its target), then actor and temperature."""
    k_batch, k_critic, k_actor = jax.random.split(key, 3)
    batch = _batch(agent, state, data, k_batch)
    state, metrics = _critic_step(agent, state, batch, k_critic)
    state, m_actor = _actor_and_alpha_step(agent, state, batch.observations, k_actor)
    metrics.update(m_actor)
    metrics["batch_reward_mean"] = jnp.mean(batch.rewards)
    return state.replace(step=state.step + 1), metrics


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    w = mask.astype(jnp.float32)
    return jnp.sum(x * w) / jnp.maximum(jnp.sum(w), 1.0)


def build_update_step(agent: MOPOAgent) -> Callable[[MOPOState, OfflineData], tuple[MOPOState, Metrics]]:
    """Pure update_step: penalised rollout into the buffer, then `rollout.period` SAC iterations."""
    period = int(agent.hp.period)
    coef = float(agent.hp.penalty_coef)

    def update_step(state: MOPOState, data: OfflineData) -> tuple[MOPOState, Metrics]:
        key, k_roll, k_scan = jax.random.split(state.key, 3)
        trans, valid, penalty = model_rollout(agent, state, data, k_roll)
        state = state.replace(key=key, buffer=buffer_insert(state.buffer, penalise(trans, penalty, coef), valid))
        state, metrics = jax.lax.scan(lambda s, k: iteration(agent, s, data, k), state,
                                      jax.random.split(k_scan, period))
        metrics = jax.tree.map(jnp.mean, metrics)
        metrics["penalty_mean"] = _masked_mean(penalty, valid)
        metrics["penalty_max"] = jnp.max(jnp.where(valid, penalty, 0.0))
        metrics["model_reward_mean"] = _masked_mean(trans.rewards, valid)  # before the penalty
        metrics["rollout_valid_fraction"] = jnp.mean(valid.astype(jnp.float32))
        metrics["buffer_size"] = state.buffer.size.astype(jnp.float32)
        return state, metrics

    return update_step


def make_update_step(agent: MOPOAgent) -> Callable[[MOPOState, OfflineData], tuple[MOPOState, Metrics]]:
    return jax.jit(build_update_step(agent), donate_argnums=0)


def make_select_action(agent: MOPOAgent) -> Callable[[MOPOState, jax.Array, jax.Array], jax.Array]:
    """Evaluation policy (state, key, obs[B, obs_dim]) -> actions[B, act_dim]: the actor's mode.

    Takes the whole state (unlike AMPL's (actor, critic, key, obs)); deterministic, key unused.
    """

    return jax.jit(lambda state, key, obs: agent.mode(state.actor, obs))


make_hook, make_diagnostics = no_hook, no_diagnostics  # the model is fitted once, before step 0: no refits
