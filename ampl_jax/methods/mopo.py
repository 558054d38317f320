"""MOPO (Yu et al. 2020) as published: SAC on real data mixed with uncertainty-penalised model rollouts.

Sources: the authors' repository tianheyu927/mopo (commit 3d632fc): `examples/config/d4rl/base.py`,
`base_mopo.py` and `<env>_<dataset>.py` (the settings per dataset), `mopo/algorithms/mopo.py`
(rollouts, model pool, batch mix), `mopo/models/fake_env.py` (sampling, penalty, termination), and
softlearning's GaussianPolicy that it trains. OfflineRL-Kit re-tuned MOPO for the D4RL v2 datasets
with other horizons and coefficients; this module follows MOPO's own repository.

Shared with AMPL: the offline data, the world model (ModelState, fitted by the loop with plain
MLE exactly as AMPL's first fit, never refitted), the FIFO buffer and the loop. MOPO's own:

* rollout horizon h and penalty coefficient lambda per dataset (`PUBLISHED`; `mopo.settings =
  "published"` picks them by the dataset's id, e.g. configs/benchmark.py:hopper-medium_expert with
  --config.method=mopo gets h = 5, lambda = 1; `"config"` takes mopo.horizon and mopo.penalty_coef);
* penalty u(s, a) = max over ALL ensemble members (not the elites) of || std_m(s, a) ||_2, the std
  of every output (reward and next-state delta): fake_env.py with penalty_learned_var=True,
  `np.amax(np.linalg.norm(ensemble_model_stds, axis=2), axis=0)` over every network `predict`
  returns; the sample itself comes from a uniformly drawn elite, as theirs (`random_inds`);
* UNITS, MOPO's own. MOPO's model standardises its inputs only: its std, penalty and reward are
  in raw environment units (reward, and s' - s), and SAC learns from r - lambda u with the raw
  reward. This ensemble predicts standardised (r~, s' - s) with the spec's r~ = (r - r_min +
  1e-3) / (r_max - r_min), so both are mapped back: std_m * target_norm.std (times r_max - r_min
  for the reward), the sampled r~ to r, and the real rows carry the dataset's raw reward. Then
  lambda means what it means in MOPO's configs. (Before, u was taken in those mixed units and
  subtracted from r~ in (0, 1]: lambda = 1 weighed the penalty as if it were r_max - r_min;
  SAC's temperature also balances its entropy target against the reward's scale.)
* termination: the environment's rule only (MOPO's static termination_fn); no out-of-range state
  or reward rule (AMPL's). A sample or penalty that is not finite is not stored and ends its
  rollout (MOPO's hopper rule ends it too, but stores the NaN);
* rollout volume: `mopo.rollout_batch_size` (50,000) start states every `mopo.rollout_every`
  (1,000) iterations, i.e. rollout_batch_size * rollout.period / rollout_every per rollout period
  (12,500 every 250), all members on every state; the pool keeps `mopo.model_retain_epochs` (5)
  epochs of `mopo.epoch_length` (1,000) iterations: 5 * 50,000 * h transitions (`_reallocate_model_pool`);
* SAC as softlearning's in MOPO: two 256-256 ReLU Q networks whose min forms the target, a
  tanh-Gaussian actor with its log std clamped into [-20, 2], Adam 3e-4 throughout, tau 5e-3,
  temperature from 1 tuned towards entropy `mopo.target_entropy` (-3, MOPO's d4rl base config),
  minibatches of 256 of which int(0.05 * 256) = 12 rows are real (`_training_batch`), the rest
  from the model pool.

update_step(state, data) = one rollout of the current actor into the buffer, then
`rollout.period` SAC iterations in a lax.scan, as AMPL's. Every iteration updates critic,
actor and temperature (no lax.cond anywhere, so the step vmaps over seeds).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ampl_jax import networks
from ampl_jax.config import precision, validation as configuration
from ampl_jax.world_model.buffer import Buffer, buffer_init, buffer_insert, buffer_sample
from ampl_jax.data import preprocess
from ampl_jax.methods.protocol import no_diagnostics, no_hook
from ampl_jax.types import DatasetInfo, OfflineData, Transitions
from ampl_jax.world_model.ensemble import ModelState, ensemble_apply

NEEDS_MODEL = True  # the loop fits the ensemble first (state.model is replaceable)

Params = Any
Metrics = dict[str, jax.Array]

RELU = 0.0  # LeakyReLU slope 0: SAC's plain ReLU networks

# (env family, dataset) -> (rollout horizon h, penalty coefficient lambda): the authors' configs,
# tianheyu927/mopo examples/config/d4rl/<env>_<dataset>.py ("mixed" is medium-replay), commit 3d632fc.
SOURCE = "tianheyu927/mopo examples/config/d4rl, commit 3d632fc"
PUBLISHED: dict[tuple[str, str], tuple[int, float]] = {
    ("halfcheetah", "random"): (5, 0.5),
    ("halfcheetah", "medium"): (1, 1.0),
    ("halfcheetah", "medium-replay"): (5, 1.0),
    ("halfcheetah", "medium-expert"): (5, 5.0),
    ("hopper", "random"): (5, 1.0),
    ("hopper", "medium"): (5, 5.0),
    ("hopper", "medium-replay"): (5, 1.0),
    ("hopper", "medium-expert"): (5, 1.0),
    ("walker2d", "random"): (1, 1.0),
    ("walker2d", "medium"): (5, 5.0),
    ("walker2d", "medium-replay"): (1, 1.0),
    ("walker2d", "medium-expert"): (1, 2.0),
}


def dataset_key(dataset_id: str) -> tuple[str, str] | None:
    """(env family, dataset) of a Minari-style id: "ampl/hopper/medium-expert-v1" and
    "mujoco/hopper/medium-expert-v0" -> ("hopper", "medium-expert"); None for another shape."""
    parts = dataset_id.split("/")
    if len(parts) < 2:
        return None
    return parts[-2], re.sub(r"-v\d+$", "", parts[-1])


def resolve_settings(cfg_mopo, dataset_id: str) -> tuple[int, float, str]:
    """(horizon, penalty coefficient, where they come from) for a run on `dataset_id`.

    `mopo.settings="published"`: MOPO's values for the dataset (`PUBLISHED`); a dataset MOPO did not
    publish settings for is a ConfigError naming the fix. "config": mopo.horizon and mopo.penalty_coef.
    """
    if cfg_mopo.settings == "config":
        return int(cfg_mopo.horizon), float(cfg_mopo.penalty_coef), "mopo.horizon and mopo.penalty_coef"
    key = dataset_key(dataset_id)
    if key not in PUBLISHED:
        known = ", ".join(f"{e}/{d}" for e, d in PUBLISHED)
        raise configuration.ConfigError(
            f"MOPO published no settings for dataset {dataset_id!r} (it has {known}): set "
            "--config.mopo.settings=config with --config.mopo.horizon and --config.mopo.penalty_coef")
    h, coef = PUBLISHED[key]
    return h, coef, f"MOPO's published {key[0]} {key[1]} settings: {SOURCE}"


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
    model: ModelState  # the world model the loop fitted
    buffer: Buffer  # FIFO of penalised model transitions (raw reward units)


@dataclasses.dataclass(frozen=True)
class MOPOHP:
    """What MOPO's step reads: config.mopo's SAC settings, and what `make_agent` resolved."""

    batch_size: int
    gamma: float
    tau: float
    real_ratio: float
    init_temperature: float
    target_entropy: float
    horizon: int  # resolved: MOPO's published value for the dataset, or mopo.horizon
    penalty_coef: float  # resolved likewise (lambda)
    starts_per_rollout: int  # rollout_batch_size * period / rollout_every
    period: int  # rollout.period: SAC iterations between rollouts
    buffer_capacity: int  # model_retain_epochs * int(h * rollout_batch_size * epoch_length / rollout_every)
    model_dtype: str  # compute.model_dtype
    reward_min: float  # the dataset's raw reward range: r~ back to r
    reward_max: float


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
    termination_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    hp: MOPOHP

    @property
    def reward_span(self) -> float:
        """r_max - r_min: one unit of r~ in raw reward units (preprocess.reward_scale)."""
        span = self.hp.reward_max - self.hp.reward_min
        return span if span > 0 else 1.0

    def sample(self, params: Params, key: jax.Array, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(a, log pi(a|s)) with a = max_action * tanh(u), u ~ N(mean, std): the change of variables."""
        mean, log_std = self.actor.apply(params, obs, method="distribution")
        eps = jax.random.normal(key, mean.shape, mean.dtype)
        a, _, logp = networks.sample_tanh_gaussian(mean, log_std, eps, self.max_action)
        return a, logp

    def mode(self, params: Params, obs: jax.Array) -> jax.Array:
        """The deterministic evaluation action max_action * tanh(mean) (MOPO's eval_deterministic)."""
        mean, _ = self.actor.apply(params, obs, method="distribution")
        return self.max_action * jnp.tanh(mean)


def rollout_volume(cfg_mopo, period: int, horizon: int) -> tuple[int, int]:
    """(start states per rollout period, pool capacity) of MOPO's rollouts at this loop's period:
    rollout_batch_size starts every rollout_every iterations, and the pool of
    `_reallocate_model_pool`, model_retain_epochs * int(h * rollout_batch_size * epoch_length / rollout_every)."""
    m = cfg_mopo
    starts = int(m.rollout_batch_size) * int(period) // int(m.rollout_every)  # exact: configuration.validate
    per_epoch = int(horizon * int(m.rollout_batch_size) * int(m.epoch_length) / int(m.rollout_every))
    return starts, int(m.model_retain_epochs) * per_epoch


def make_agent(
    config: ml_collections.ConfigDict,
    info: DatasetInfo,
    termination_fn: Callable,
    obs_range: np.ndarray,
    reward_bound: float,
    *,
    data: OfflineData | None = None,
) -> MOPOAgent:
    """The methods' make_agent signature. obs_range and reward_bound (AMPL's extra termination rules)
    are not used: MOPO ends a rollout by the environment's rule only."""
    del obs_range, reward_bound
    m = config.mopo
    hidden = tuple(m.hidden_dims)
    horizon, coef, source = resolve_settings(m, info.dataset_id)
    starts, capacity = rollout_volume(m, config.rollout.period, horizon)
    print(f"MOPO on {info.dataset_id}: horizon {horizon}, penalty coefficient {coef} ({source}); "
          f"{starts} rollouts every {config.rollout.period} iterations, pool of {capacity} transitions", flush=True)
    lo, hi = networks.CLAMPED_LOG_STD  # softlearning's GaussianPolicy: log std clipped into [-20, 2]
    return MOPOAgent(
        actor=networks.TanhGaussianActor(info.act_dim, float(info.max_action), hidden, RELU, lo, hi,
                                         clamp_log_std=True),
        critic=networks.TwinCritic(hidden, RELU, int(m.num_critics)),
        actor_tx=optax.adam(float(m.actor_lr)),
        critic_tx=optax.adam(float(m.critic_lr)),
        alpha_tx=optax.adam(float(m.alpha_lr)),
        obs_dim=info.obs_dim,
        act_dim=info.act_dim,
        max_action=float(info.max_action),
        termination_fn=termination_fn,
        hp=configuration.take(MOPOHP, m, horizon=horizon, penalty_coef=coef, starts_per_rollout=starts,
                              period=int(config.rollout.period), buffer_capacity=capacity,
                              model_dtype=config.compute.model_dtype, reward_min=float(info.reward_min),
                              reward_max=float(info.reward_max)),
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
# the model in MOPO's units: sampling and the uncertainty penalty


def output_units(model: ModelState, reward_span: float) -> jax.Array:
    """[1 + obs_dim]: one standardised unit of each model output in MOPO's units (raw reward, s' - s)."""
    return model.target_norm.std * jnp.concatenate([jnp.asarray([reward_span], jnp.float32),
                                                    jnp.ones(model.obs_dim, jnp.float32)])


def _penalty(std: jax.Array, units: jax.Array) -> jax.Array:
    """max over members of || std_m * units ||_2: std [M, B, D] standardised -> [B]."""
    return jnp.max(jnp.linalg.norm(std * units, axis=-1), axis=0)


def aleatoric_penalty(model: ModelState, obs: jax.Array, act: jax.Array, reward_span: float,
                      dtype: Any = jnp.float32) -> jax.Array:
    """MOPO's u(s, a) = max over ALL members of || std_m(s, a) ||_2 in raw reward and state units: [B] >= 0."""
    x = model.input_norm(jnp.concatenate([obs, act], axis=-1))
    _, logstd = ensemble_apply(model.params, x, dtype)  # [M, B, D], every member
    return _penalty(jnp.exp(logstd), output_units(model, reward_span))


def model_step(agent: MOPOAgent, model: ModelState, key: jax.Array, obs: jax.Array,
               act: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One MOPO model step for a batch (fake_env.step): every member on every input (the penalty
    needs them all), the sample from a uniformly drawn elite per input. Returns s' [B, obs_dim],
    the raw reward r [B] (not penalised) and u(s, a) [B]."""
    x = model.input_norm(jnp.concatenate([obs, act], axis=-1))
    mean, logstd = ensemble_apply(model.params, x, precision.dtype(agent.hp.model_dtype))  # [M, B, D]
    std = jnp.exp(logstd)
    k_member, k_noise = jax.random.split(key)
    b = obs.shape[0]
    member = model.elites[jax.random.randint(k_member, (b,), 0, model.elites.shape[0])]
    rows = jnp.arange(b)
    sample = mean[member, rows] + std[member, rows] * jax.random.normal(k_noise, (b, mean.shape[-1]), mean.dtype)
    y = model.target_norm.inverse(sample)  # (r~, s' - s)
    reward = preprocess.unscale_rewards(y[:, 0], agent.hp.reward_min, agent.hp.reward_max)
    return obs + y[:, 1:], reward, _penalty(std, output_units(model, agent.reward_span))


def model_rollout(agent: MOPOAgent, state: MOPOState, data: OfflineData,
                  key: jax.Array) -> tuple[Transitions, jax.Array, jax.Array]:
    """h model steps of the current (stochastic) actor from `starts_per_rollout` dataset states.

    A rollout stops at the environment's termination rule (its terminal step is kept, done = 1) or
    at a non-finite sample or penalty (that step is dropped). Returns the transitions (raw,
    unpenalised rewards), the valid mask and u(s, a) of every transition, flattened to [h * B]
    step-major.
    """
    hp = agent.hp
    k_start, k_roll = jax.random.split(key)
    start_obs = data.observations[data.indices(k_start, hp.starts_per_rollout)]

    def step(carry, k):
        obs, alive = carry
        k_pi, k_model = jax.random.split(k)
        act = agent.sample(state.actor, k_pi, obs)[0]
        next_obs, rew, pen = model_step(agent, state.model, k_model, obs, act)
        finite = jnp.all(jnp.isfinite(next_obs), axis=-1) & jnp.isfinite(rew) & jnp.isfinite(pen)
        next_obs = jnp.where(finite[:, None], next_obs, obs)  # stored rows stay finite
        done = agent.termination_fn(obs, act, next_obs)
        valid = alive & finite
        tr = Transitions(obs, act, jnp.where(finite, rew, 0.0), next_obs, done.astype(jnp.float32))
        return (next_obs, valid & ~done), (tr, valid, jnp.where(finite, pen, 0.0))

    alive0 = jnp.ones((hp.starts_per_rollout,), bool)
    _, (trs, valid, pen) = jax.lax.scan(step, (start_obs, alive0), jax.random.split(k_roll, hp.horizon))
    flat = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), trs)
    return flat, valid.reshape(-1), pen.reshape(-1)


def penalise(trans: Transitions, penalty: jax.Array, coef: float) -> Transitions:
    """MOPO's reward r - lambda * u(s, a); everything else as the model produced it."""
    return trans._replace(rewards=trans.rewards - coef * penalty)


# --------------------------------------------------------------------------------------------
# SAC


def n_real(agent: MOPOAgent) -> int:
    """Real rows per minibatch, MOPO's int(batch_size * real_ratio): 12 of 256 at 0.05 (truncated)."""
    return int(agent.hp.batch_size * agent.hp.real_ratio)


def _batch(agent: MOPOAgent, state: MOPOState, data: OfflineData, key: jax.Array) -> Transitions:
    """The first n_real rows from the dataset, the rest from the model buffer."""
    k_real, k_model = jax.random.split(key)
    n, nr = agent.hp.batch_size, n_real(agent)
    real = data.sample(k_real, nr, scaled=False)  # MOPO trains on raw rewards
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
    gap = jax.lax.stop_gradient(jnp.mean(logp) + agent.hp.target_entropy)
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
        starts = agent.hp.starts_per_rollout
        metrics["penalty_mean"] = _masked_mean(penalty, valid)
        metrics["penalty_max"] = jnp.max(jnp.where(valid, penalty, 0.0))
        metrics["model_reward_mean"] = _masked_mean(trans.rewards, valid)  # raw, before the penalty
        metrics["rollout_valid_fraction"] = jnp.mean(valid.astype(jnp.float32))
        metrics["rollout_mean_length"] = jnp.sum(valid.astype(jnp.float32)) / starts
        metrics["buffer_size"] = state.buffer.size.astype(jnp.float32)
        metrics["rollout_horizon"] = jnp.asarray(agent.hp.horizon, jnp.float32)  # the settings in use
        metrics["penalty_coef"] = jnp.asarray(coef, jnp.float32)
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
