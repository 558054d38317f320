"""TrainState: everything a run needs to continue, as one pytree; and the static Agent around it.

The split is deliberate: `TrainState` holds arrays only (params, optimiser states, targets,
world model, model buffer, counters, PRNG key) so it can be jitted, vmapped over seeds and
checkpointed with orbax; `Agent` holds what never changes within a run (modules, optimisers,
scalar settings, dataset constants) and is closed over by the compiled step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ampl_jax.methods.ampl import miw as miw_lib
from ampl_jax import networks
from ampl_jax.config import precision
from ampl_jax.methods.ampl import networks as ampl_nets
from ampl_jax.methods.ampl.hparams import AMPLHyper
from ampl_jax.world_model.buffer import Buffer, buffer_init
from ampl_jax.types import DatasetInfo
from ampl_jax.world_model.fit import ModelState

Params = Any


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # policy iterations done (int32)
    key: jax.Array  # PRNG key (uint32[2])
    actor: Params
    actor_target: Params
    actor_opt: optax.OptState
    critic: Params
    critic_target: Params
    critic_opt: optax.OptState
    disc: Params
    disc_opt: optax.OptState
    miw: Params
    miw_target: Params
    miw_critic: Params  # Q1' of the MIW loss: a slow (tau 0.01) copy of the critic
    miw_opt: optax.OptState
    # The MIW estimator's dual player (GenDICE/DualDICE test function nu, VPM/GenDICE multiplier
    # u) as {"params": ..., "opt": ...}; an empty dict (no leaves) under the default TD-DICE.
    miw_aux: Params
    q_abs_avg: jax.Array  # EMA of mean |Q| that scales the actor's Q term; < 0 until the first batch sets it
    model: ModelState
    buffer: Buffer
    # The WPR ablation's per-row weights of the dataset: the last refit's w / mean(w) (1 before the
    # first refit), shape [N]; a placeholder of shape [1] when WPR is off (orbax saves no empty array).
    data_weights: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class Agent:
    """Static parts of a run; closed over by the jitted functions."""

    actor: ampl_nets.ImplicitActor | networks.TanhGaussianActor
    critic: networks.TwinCritic
    disc: ampl_nets.Discriminator
    miw: ampl_nets.MIWNet
    actor_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation
    disc_tx: optax.GradientTransformation
    miw_tx: optax.GradientTransformation
    obs_dim: int
    act_dim: int
    max_action: float
    termination_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    obs_range: np.ndarray  # [obs_dim]
    reward_bound: float
    hp: AMPLHyper  # what the step and the hook read of the config, nothing else
    num_data: int  # dataset rows (the WPR weights' length)
    miw_aux_net: ampl_nets.TestFunction | None = None  # nu of GenDICE/DualDICE; None otherwise
    miw_aux_tx: optax.GradientTransformation | None = None  # the dual player's optimiser; None under TD-DICE

    @property
    def model_dtype(self) -> jnp.dtype:
        """Matmul input dtype of the world model (`compute.model_dtype`): rollouts and model samples."""
        return precision.dtype(self.hp.model.dtype)

    @property
    def noise_dim(self) -> int:
        """Width of the actor's noise input: noise_dim (implicit) or act_dim (tanh-Gaussian eps)."""
        return self.act_dim if self.hp.agent.policy == "tanh_gaussian" else self.hp.agent.noise_dim

    def noise(self, key: jax.Array, batch: int) -> jax.Array:
        a = self.hp.agent
        if a.policy == "tanh_gaussian":
            return jax.random.normal(key, (batch, self.act_dim))
        return ampl_nets.sample_noise(key, (batch, a.noise_dim), a.noise_std, a.noise_clip)

    def act(self, actor_params: Params, key: jax.Array, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(action, raw pre-tanh action) for a batch of states, each with its own noise."""
        return self.actor.apply(actor_params, obs, self.noise(key, obs.shape[0]))


def make_agent(
    config: ml_collections.ConfigDict,
    info: DatasetInfo,
    termination_fn: Callable,
    obs_range: np.ndarray,
    reward_bound: float,
) -> Agent:
    a, m = config.agent, config.miw
    hidden = tuple(a.hidden_dims)
    slope = a.leaky_relu_slope
    dtype = precision.dtype(config.compute.dtype)  # matmul inputs of every network below
    if a.policy == "tanh_gaussian":  # the authors' GaussianPolicy: log std clamped into [-20, 2]
        lo, hi = (float(x) for x in a.gaussian_log_std_bounds)
        actor = networks.TanhGaussianActor(info.act_dim, float(info.max_action), hidden, slope, lo, hi, dtype,
                                           clamp_log_std=True)
    else:
        actor = ampl_nets.ImplicitActor(info.act_dim, float(info.max_action), hidden, slope, dtype)
    # nu of GenDICE/DualDICE: the authors' Critic (its q1 head) has no special last layer, so None
    # (the MLP's default Dense) rather than TestFunction's U(+-3e-3) (DICE_trainer.py:38).
    aux_net = ampl_nets.TestFunction(hidden, slope, None, dtype) if m.estimator in ("gendice", "dualdice") else None
    return Agent(
        actor=actor,
        critic=networks.TwinCritic(hidden, slope, dtype=dtype),
        disc=ampl_nets.Discriminator(hidden, slope, dtype),
        miw=miw_lib.make_miw_net(m, hidden, slope, dtype),
        actor_tx=optax.adam(a.actor_lr, b1=a.actor_b1),
        critic_tx=optax.chain(optax.clip_by_global_norm(a.critic_grad_clip), optax.adam(a.critic_lr)),
        disc_tx=optax.adam(a.disc_lr, b1=a.disc_b1),
        # per-estimator optimisers (TD-DICE: global-norm clip 1, Adam 1e-6): miw.estimator_settings
        miw_tx=miw_lib.make_w_optimizer(m),
        obs_dim=info.obs_dim,
        act_dim=info.act_dim,
        max_action=float(info.max_action),
        termination_fn=termination_fn,
        obs_range=np.asarray(obs_range, np.float32),
        reward_bound=float(reward_bound),
        hp=AMPLHyper.from_config(config),
        num_data=int(info.num_transitions),
        miw_aux_net=aux_net,
        miw_aux_tx=miw_lib.make_dual_optimizer(m),
    )


def init_train_state(agent: Agent, key: jax.Array, model: ModelState) -> TrainState:
    """Fresh networks and optimisers; targets start as copies; the model buffer starts empty."""
    k_actor, k_critic, k_disc, k_miw, key = jax.random.split(key, 5)
    obs = jnp.zeros((1, agent.obs_dim), jnp.float32)
    act = jnp.zeros((1, agent.act_dim), jnp.float32)
    noise = jnp.zeros((1, agent.noise_dim), jnp.float32)
    actor = agent.actor.init(k_actor, obs, noise)
    critic = agent.critic.init(k_critic, obs, act)
    disc = agent.disc.init(k_disc, obs, act)
    miw = agent.miw.init(k_miw, obs, act)
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # distinct buffers: the step donates its input
    miw_aux = init_miw_aux(agent, jax.random.fold_in(k_miw, 1), obs, act)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        key=key,
        actor=actor,
        actor_target=copy(actor),
        actor_opt=agent.actor_tx.init(actor),
        critic=critic,
        critic_target=copy(critic),
        critic_opt=agent.critic_tx.init(critic),
        disc=disc,
        disc_opt=agent.disc_tx.init(disc),
        miw=miw,
        miw_target=copy(miw),
        miw_critic=copy(critic),
        miw_opt=agent.miw_tx.init(miw),
        miw_aux=miw_aux,
        q_abs_avg=jnp.full((), -1.0, jnp.float32),
        model=model,
        buffer=buffer_init(agent.hp.rollout.buffer_capacity, agent.obs_dim, agent.act_dim),
        data_weights=jnp.ones((agent.num_data if agent.hp.agent.weighted_regularizer else 1,), jnp.float32),
    )


def init_miw_aux(agent: Agent, key: jax.Array, obs: jax.Array, act: jax.Array) -> dict:
    """The MIW estimator's dual player: {} (no leaves) for TD-DICE and td_dice_multi, else {"params", "opt"}.

    params: {"nu": test-function params} for GenDICE/DualDICE and {"u": scalar} for VPM/GenDICE
    (the normalisation multiplier, starting at the estimator's u_init: 1 as the authors').
    VPM adds its power-method counters: "count" (steps done in the current run) and
    "last_step" (TrainState.step at the last MIW step: a new "phased" block starts a new run).
    """
    m = agent.hp.miw
    if m.estimator in ("td_dice", "td_dice_multi"):
        return {}
    nu = agent.miw_aux_net.init(key, obs, act) if agent.miw_aux_net is not None else None
    params = miw_lib.init_dual_params(m.settings, nu)
    aux = {"params": params, "opt": agent.miw_aux_tx.init(params)}
    if m.estimator == "vpm":
        aux.update(count=jnp.zeros((), jnp.int32), last_step=jnp.full((), -1, jnp.int32))
    return aux
