"""TD3+BC (Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning").

TD3 on the offline data alone, with one change to the actor's objective: maximise
lambda * Q1(s, pi(s)) - (pi(s) - a)^2, lambda = alpha / mean_batch |Q1(s, pi(s))| (detached),
so the Q term is scale-free and the behaviour-cloning term keeps the policy on the data. Like BC
it needs no world model (NEEDS_MODEL is False) and uses no model rollouts.

As the paper and the authors' code:
* states are normalised by the dataset's per-dimension mean and std (std + eps): every network
  input (s and s') and every evaluation observation; the statistics live in the (static) agent;
* raw environment rewards (`OfflineData.rewards`; TD3+BC does no reward scaling on MuJoCo) and
  true terminations only;
* twin critics with the clipped double-Q target min(Q1', Q2') at the target actor's action plus
  clipped Gaussian noise (both scaled by max_action);
* the actor and both target networks update every `policy_delay`-th critic step. The authors
  count iterations from 1 and step the actor when the count is a multiple of the delay, i.e. in
  the LAST iteration of each block; the scan here runs over blocks with the actor in that slot
  (no lax.cond, so the step vmaps over seeds).

The module mirrors the other baselines' interface (make_agent, init_state, build/make_update_step,
make_select_action). Its make_agent uses the dataset (`data=`) for the state statistics.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ampl_jax import networks
from ampl_jax.config import validation as configuration
from ampl_jax.methods.protocol import no_diagnostics, no_hook
from ampl_jax.types import DatasetInfo, OfflineData, Transitions
from ampl_jax.world_model.ensemble import ModelState

NEEDS_MODEL = False  # the loop skips fitting (and refitting) the dynamics ensemble

Params = Any
Metrics = dict[str, jax.Array]

RELU = 0.0  # LeakyReLU slope 0: the authors' plain ReLU networks


@flax.struct.dataclass
class TD3BCState:
    step: jax.Array  # critic steps done (int32); the actor has taken step // policy_delay
    key: jax.Array  # PRNG key
    actor: Params
    actor_target: Params
    actor_opt: optax.OptState
    critic: Params  # twin Q heads, [2, ...] stacked
    critic_target: Params
    critic_opt: optax.OptState


@dataclasses.dataclass(frozen=True, eq=False)
class TD3BCHP:
    """What the TD3+BC step reads of the config: config.td3bc's losses and schedule, rollout.period."""

    batch_size: int
    gamma: float
    tau: float
    alpha: float
    policy_noise: float
    noise_clip: float
    policy_delay: int
    period: int


@dataclasses.dataclass(frozen=True, eq=False)
class TD3BCAgent:
    """Static parts of a TD3+BC run (networks, optimisers, state statistics), closed over by jit."""

    actor: networks.MLP  # normalised obs -> pre-tanh action
    critic: networks.TwinCritic
    actor_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation
    obs_dim: int
    act_dim: int
    max_action: float
    obs_mean: np.ndarray  # [obs_dim]; zeros when normalisation is off
    obs_std: np.ndarray  # [obs_dim]; std + eps, ones when normalisation is off
    hp: TD3BCHP

    def normalise(self, obs: jax.Array) -> jax.Array:
        return (obs - self.obs_mean) / self.obs_std

    def act(self, params: Params, norm_obs: jax.Array) -> jax.Array:
        """The deterministic policy max_action * tanh(f(s)) on NORMALISED observations."""
        return self.max_action * jnp.tanh(self.actor.apply(params, norm_obs))


def state_statistics(observations: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The authors' normalisation: per-dimension mean and (population) std + eps of the dataset states."""
    obs = np.asarray(observations, np.float64)
    return obs.mean(0).astype(np.float32), (obs.std(0) + eps).astype(np.float32)


def make_agent(config: ml_collections.ConfigDict, info: DatasetInfo, *unused: Any,
               data: OfflineData | None = None) -> TD3BCAgent:
    """AMPL's make_agent signature plus the dataset; termination, obs range and reward bound are unused."""
    t = config.td3bc
    if t.normalize_states:
        if data is None:
            raise ValueError("td3bc.make_agent needs data= for the state statistics (td3bc.normalize_states)")
        mean, std = state_statistics(np.asarray(data.observations), float(t.state_norm_eps))
    else:
        mean, std = np.zeros(info.obs_dim, np.float32), np.ones(info.obs_dim, np.float32)
    hidden = tuple(t.hidden_dims)
    return TD3BCAgent(
        actor=networks.MLP(hidden, info.act_dim, RELU),
        critic=networks.TwinCritic(hidden, RELU, 2),
        actor_tx=optax.adam(float(t.actor_lr)),
        critic_tx=optax.adam(float(t.critic_lr)),
        obs_dim=info.obs_dim,
        act_dim=info.act_dim,
        max_action=float(info.max_action),
        obs_mean=mean,
        obs_std=std,
        hp=configuration.take(TD3BCHP, t, period=config.rollout.period),
    )


def init_state(agent: TD3BCAgent, key: jax.Array, model: ModelState | None = None) -> TD3BCState:
    """Fresh actor and twin critic, targets equal to them; `model` is ignored (interface parity)."""
    k_actor, k_critic, key = jax.random.split(key, 3)
    obs = jnp.zeros((1, agent.obs_dim), jnp.float32)
    actor = agent.actor.init(k_actor, obs)
    critic = agent.critic.init(k_critic, obs, jnp.zeros((1, agent.act_dim), jnp.float32))
    return TD3BCState(
        step=jnp.zeros((), jnp.int32),
        key=key,
        actor=actor,
        actor_target=jax.tree.map(jnp.copy, actor),  # distinct buffers: the step donates its input
        actor_opt=agent.actor_tx.init(actor),
        critic=critic,
        critic_target=jax.tree.map(jnp.copy, critic),
        critic_opt=agent.critic_tx.init(critic),
    )


def sample_batch(agent: TD3BCAgent, data: OfflineData, key: jax.Array) -> Transitions:
    """A uniform minibatch with normalised s and s' and raw rewards."""
    idx = data.indices(key, agent.hp.batch_size)
    return Transitions(agent.normalise(data.observations[idx]), data.actions[idx], data.rewards[idx],
                       agent.normalise(data.next_observations[idx]), data.dones[idx])


def critic_step(agent: TD3BCAgent, state: TD3BCState, batch: Transitions,
                key: jax.Array) -> tuple[TD3BCState, Metrics]:
    """TD3's critic update: target policy smoothing, clipped double-Q, sum of the two heads' MSEs."""
    t = agent.hp
    noise = jnp.clip(t.policy_noise * agent.max_action * jax.random.normal(key, batch.actions.shape),
                     -t.noise_clip * agent.max_action, t.noise_clip * agent.max_action)
    next_act = jnp.clip(agent.act(state.actor_target, batch.next_observations) + noise,
                        -agent.max_action, agent.max_action)
    q_next = jnp.min(agent.critic.apply(state.critic_target, batch.next_observations, next_act), axis=0)
    y = jax.lax.stop_gradient(batch.rewards + jnp.where(batch.dones > 0, 0.0, t.gamma * q_next))

    def loss_fn(params):
        q = agent.critic.apply(params, batch.observations, batch.actions)  # [2, B]
        return jnp.sum(jnp.mean(jnp.square(q - y), axis=-1)), jnp.mean(q)

    (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.critic)
    updates, opt = agent.critic_tx.update(grads, state.critic_opt, state.critic)
    state = state.replace(critic=optax.apply_updates(state.critic, updates), critic_opt=opt, step=state.step + 1)
    return state, {"critic_loss": loss, "q_mean": q_mean, "target_mean": jnp.mean(y)}


def actor_loss(agent: TD3BCAgent, actor: Params, critic: Params, obs: jax.Array,
               act: jax.Array) -> tuple[jax.Array, Metrics]:
    """-lambda * mean Q1(s, pi(s)) + mean (pi(s) - a)^2, lambda = alpha / mean |Q1| (no gradient through it).

    The MSE is averaged over batch and action dimensions, as the authors' F.mse_loss.
    """
    pi = agent.act(actor, obs)
    q1 = agent.critic.apply(critic, obs, pi)[0]
    lam = agent.hp.alpha / jax.lax.stop_gradient(jnp.mean(jnp.abs(q1)))
    bc = jnp.mean(jnp.square(pi - act))
    loss = -lam * jnp.mean(q1) + bc
    return loss, {"actor_loss": loss, "bc_mse": bc, "q_lambda": lam}


def actor_and_target_step(agent: TD3BCAgent, state: TD3BCState, batch: Transitions) -> tuple[TD3BCState, Metrics]:
    """The delayed update: the actor against the just-updated Q1, then Polyak steps of both targets."""
    tau = agent.hp.tau
    (_, metrics), grads = jax.value_and_grad(
        lambda p: actor_loss(agent, p, state.critic, batch.observations, batch.actions), has_aux=True)(state.actor)
    updates, opt = agent.actor_tx.update(grads, state.actor_opt, state.actor)
    actor = optax.apply_updates(state.actor, updates)
    return state.replace(
        actor=actor,
        actor_opt=opt,
        actor_target=optax.incremental_update(actor, state.actor_target, tau),
        critic_target=optax.incremental_update(state.critic, state.critic_target, tau),
    ), metrics


def block(agent: TD3BCAgent, data: OfflineData, state: TD3BCState, key: jax.Array) -> tuple[TD3BCState, Metrics]:
    """`policy_delay` critic steps, each on its own minibatch; the last also updates actor and targets.

    Critic metrics are averaged over the block, actor metrics come from its one actor step.
    """
    critic_metrics = []
    for sub in jax.random.split(key, int(agent.hp.policy_delay)):  # small (2): unrolled
        k_batch, k_noise = jax.random.split(sub)
        batch = sample_batch(agent, data, k_batch)
        state, m = critic_step(agent, state, batch, k_noise)
        critic_metrics.append(m)
    state, actor_metrics = actor_and_target_step(agent, state, batch)  # on the last critic step's batch
    mean = jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *critic_metrics)
    return state, {**mean, **actor_metrics}


def build_update_step(agent: TD3BCAgent) -> Callable[[TD3BCState, OfflineData], tuple[TD3BCState, Metrics]]:
    """Pure update_step: `rollout.period` critic steps (AMPL's chunk length) as a lax.scan over blocks."""
    period, k = int(agent.hp.period), int(agent.hp.policy_delay)  # k divides period

    def update_step(state: TD3BCState, data: OfflineData) -> tuple[TD3BCState, Metrics]:
        key, k_scan = jax.random.split(state.key)
        state, metrics = jax.lax.scan(lambda s, kb: block(agent, data, s, kb), state.replace(key=key),
                                      jax.random.split(k_scan, period // k))
        return state, jax.tree.map(jnp.mean, metrics)

    return update_step


def make_update_step(agent: TD3BCAgent) -> Callable[[TD3BCState, OfflineData], tuple[TD3BCState, Metrics]]:
    return jax.jit(build_update_step(agent), donate_argnums=0)


def make_select_action(agent: TD3BCAgent) -> Callable[[TD3BCState, jax.Array, jax.Array], jax.Array]:
    """Evaluation policy (state, key, obs[B, obs_dim]) -> actions[B, act_dim]: the actor on normalised obs.

    Deterministic (the key is unused), as the authors' evaluation.
    """

    @jax.jit
    def select(state: TD3BCState, key: jax.Array, obs: jax.Array) -> jax.Array:
        del key
        return agent.act(state.actor, agent.normalise(obs))

    return select


make_hook, make_diagnostics = no_hook, no_diagnostics  # nothing runs between rollout periods
