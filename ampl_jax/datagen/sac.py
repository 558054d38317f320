"""Soft actor-critic (Haarnoja et al. 2018) for training the shipped behaviour policies.

Why SAC: D4RL's medium/expert MuJoCo datasets were made with SAC policies, so the offline data
made here has the same kind of behaviour (a stochastic tanh-Gaussian). The learner is pure JAX
over an explicit `SACState`; `update_many` runs several gradient steps per call with `lax.scan`,
so the host loop can alternate "k env steps, k updates" (update-to-data ratio 1) with one
dispatch per k updates. Envs are stepped on the host with a NumPy copy of the actor
(`actor_forward_np`), which is much cheaper per step than a jitted call.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ampl_jax import networks

Params = Any

LOG_STD_MIN, LOG_STD_MAX = networks.LOG_STD_MIN, networks.LOG_STD_MAX

# The networks' parameter names predate the shared modules: the critic's vmapped heads were a
# module `_QNet` (the actor's layers sit at its root, as a bare MLP's). The checkpoints of running
# trainings and the shipped snapshots use these names, and Flax seeds initial values by them.
CRITIC_HEADS = "Vmap_QNet_0"


@dataclasses.dataclass(frozen=True)
class SACConfig:
    hidden_dims: tuple[int, ...] = (256, 256)
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    init_temperature: float = 1.0
    target_entropy: float | None = None  # None: -act_dim


class SACState(flax.struct.PyTreeNode):
    step: jax.Array  # gradient steps done (int32)
    key: jax.Array
    actor: Params
    critic: Params
    critic_target: Params
    log_alpha: jax.Array
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    alpha_opt: optax.OptState


class Batch(flax.struct.PyTreeNode):
    """Replay minibatch; `dones` are terminations only (time-outs bootstrap)."""

    observations: jax.Array
    actions: jax.Array  # in the tanh space [-1, 1]
    rewards: jax.Array
    next_observations: jax.Array
    dones: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class SAC:
    """Static parts (modules, optimisers, settings); the jitted functions close over them."""

    obs_dim: int
    act_dim: int
    config: SACConfig = SACConfig()

    @functools.cached_property
    def actor(self) -> networks.MLP:
        """obs -> the 2 * act_dim outputs that `distribution` reads as (mean, log_std)."""
        return networks.MLP(self.config.hidden_dims, 2 * self.act_dim, None, weight_init="flax")

    @functools.cached_property
    def critic(self) -> networks.TwinCritic:
        return networks.TwinCritic(self.config.hidden_dims, None, 2, weight_init="flax", heads_name=CRITIC_HEADS)

    def distribution(self, actor_params: Params, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(mean, log_std) of the pre-tanh Gaussian at `obs`."""
        return networks.gaussian_head(self.actor.apply(actor_params, obs))

    def sample(self, actor_params: Params, key: jax.Array, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(a, log pi(a)): a = tanh(u), u ~ N(mean, std) reparameterised, in the tanh space [-1, 1]."""
        mean, log_std = self.distribution(actor_params, obs)
        a, _, log_prob = networks.sample_tanh_gaussian(mean, log_std, jax.random.normal(key, mean.shape))
        return a, log_prob

    @functools.cached_property
    def tx(self) -> optax.GradientTransformation:
        return optax.adam(self.config.lr)

    @property
    def target_entropy(self) -> float:
        c = self.config.target_entropy
        return -float(self.act_dim) if c is None else float(c)

    def init(self, key: jax.Array) -> SACState:
        ka, kc, key = jax.random.split(key, 3)
        obs = jnp.zeros((1, self.obs_dim))
        act = jnp.zeros((1, self.act_dim))
        actor = self.actor.init(ka, obs)
        critic = self.critic.init(kc, obs, act)
        log_alpha = jnp.asarray(np.log(self.config.init_temperature), jnp.float32)
        return SACState(
            step=jnp.zeros((), jnp.int32),
            key=key,
            actor=actor,
            critic=critic,
            critic_target=jax.tree.map(jnp.copy, critic),  # own buffers: the state is donated
            log_alpha=log_alpha,
            actor_opt=self.tx.init(actor),
            critic_opt=self.tx.init(critic),
            alpha_opt=self.tx.init(log_alpha),
        )

    def update(self, state: SACState, batch: Batch) -> tuple[SACState, dict[str, jax.Array]]:
        """One SAC gradient step: critic (soft TD target, min of target twins), actor, temperature."""
        cfg = self.config
        key, k_next, k_pi = jax.random.split(state.key, 3)
        alpha = jnp.exp(state.log_alpha)

        next_a, next_logp = self.sample(state.actor, k_next, batch.next_observations)
        q_next = self.critic.apply(state.critic_target, batch.next_observations, next_a).min(0)
        target = batch.rewards + cfg.gamma * (1.0 - batch.dones) * (q_next - alpha * next_logp)
        target = jax.lax.stop_gradient(target)

        def critic_loss(p):
            q = self.critic.apply(p, batch.observations, batch.actions)
            return jnp.sum(jnp.mean((q - target) ** 2, axis=-1)), q.mean()  # sum over the twins

        (c_loss, q_mean), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(state.critic)
        c_upd, critic_opt = self.tx.update(c_grads, state.critic_opt, state.critic)
        critic = optax.apply_updates(state.critic, c_upd)

        def actor_loss(p):
            a, logp = self.sample(p, k_pi, batch.observations)
            q = self.critic.apply(critic, batch.observations, a).min(0)
            return jnp.mean(alpha * logp - q), logp

        (a_loss, logp), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(state.actor)
        a_upd, actor_opt = self.tx.update(a_grads, state.actor_opt, state.actor)
        actor = optax.apply_updates(state.actor, a_upd)

        entropy = -jax.lax.stop_gradient(logp).mean()

        def alpha_loss(log_alpha):
            return log_alpha * (entropy - self.target_entropy)

        t_loss, t_grad = jax.value_and_grad(alpha_loss)(state.log_alpha)
        t_upd, alpha_opt = self.tx.update(t_grad, state.alpha_opt, state.log_alpha)
        log_alpha = optax.apply_updates(state.log_alpha, t_upd)

        critic_target = optax.incremental_update(critic, state.critic_target, cfg.tau)
        new = SACState(
            step=state.step + 1,
            key=key,
            actor=actor,
            critic=critic,
            critic_target=critic_target,
            log_alpha=log_alpha,
            actor_opt=actor_opt,
            critic_opt=critic_opt,
            alpha_opt=alpha_opt,
        )
        metrics = {
            "critic_loss": c_loss,
            "actor_loss": a_loss,
            "alpha": alpha,
            "entropy": entropy,
            "q": q_mean,
        }
        return new, metrics

    @functools.cached_property
    def update_many(self):
        """jit(state, batches[k, B, ...]) -> (state, mean metrics): k gradient steps in one lax.scan."""

        def run(state: SACState, batches: Batch) -> tuple[SACState, dict[str, jax.Array]]:
            state, metrics = jax.lax.scan(self.update, state, batches)
            return state, jax.tree.map(jnp.mean, metrics)

        return jax.jit(run, donate_argnums=0)


# --- host side: the actor in NumPy --------------------------------------------------------------


def actor_layers(actor_params: Params) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) of each layer of the actor, in order, as float32 NumPy arrays."""
    return [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in networks.dense_layers(actor_params)]


def actor_forward_np(
    layers: list[tuple[np.ndarray, np.ndarray]], obs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of `SAC.distribution` (mean, log_std) for stepping envs without a jit call."""
    x = np.asarray(obs, np.float32)
    for w, b in layers[:-1]:
        x = np.maximum(x @ w + b, 0.0)
    w, b = layers[-1]
    out = x @ w + b
    mean, raw = np.split(out, 2, axis=-1)
    log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (np.tanh(raw) + 1.0)
    return mean, log_std


def act_np(
    layers: list[tuple[np.ndarray, np.ndarray]],
    obs: np.ndarray,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """tanh-space action in [-1, 1]: a sample of the tanh-Gaussian, or tanh(mean) if rng is None."""
    mean, log_std = actor_forward_np(layers, obs)
    if rng is None:
        return np.tanh(mean)
    return np.tanh(mean + np.exp(log_std) * rng.standard_normal(mean.shape).astype(np.float32))


def to_env_action(a: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map a tanh-space action in [-1, 1] onto the env's action box."""
    return (low + 0.5 * (a + 1.0) * (high - low)).astype(np.float32)


def from_env_action(a: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Inverse of `to_env_action` (for storing random warm-up actions in the replay buffer)."""
    return (2.0 * (a - low) / (high - low) - 1.0).astype(np.float32)
