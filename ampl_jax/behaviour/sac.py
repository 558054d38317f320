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
from typing import Any, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

Params = Any

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class SACActor(nn.Module):
    """obs -> (mean, log_std) of the pre-tanh Gaussian; log_std squashed into [MIN, MAX]."""

    act_dim: int
    hidden_dims: Sequence[int] = (256, 256)

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = obs
        for i, h in enumerate(self.hidden_dims):
            x = nn.relu(nn.Dense(h, name=f"Dense_{i}")(x))
        out = nn.Dense(2 * self.act_dim, name=f"Dense_{len(self.hidden_dims)}")(x)
        mean, raw_log_std = jnp.split(out, 2, axis=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw_log_std) + 1.0)
        return mean, log_std


class _QNet(nn.Module):
    hidden_dims: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for h in self.hidden_dims:
            x = nn.relu(nn.Dense(h)(x))
        return nn.Dense(1)(x)[..., 0]


class SACCritic(nn.Module):
    """Twin Q(s, a) heads as one `nn.vmap`-ed MLP; output [2, ...batch]."""

    hidden_dims: Sequence[int] = (256, 256)

    @nn.compact
    def __call__(self, obs: jax.Array, act: jax.Array) -> jax.Array:
        heads = nn.vmap(
            _QNet,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=2,
        )(self.hidden_dims)
        return heads(jnp.concatenate([obs, act], -1))


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


def sample_tanh_gaussian(mean: jax.Array, log_std: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reparameterised a = tanh(u), u ~ N(mean, std), and log pi(a) with the tanh correction."""
    std = jnp.exp(log_std)
    eps = jax.random.normal(key, mean.shape)
    u = mean + std * eps
    log_prob = jnp.sum(-0.5 * eps**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), -1)
    # log(1 - tanh(u)^2) computed stably: 2 (log 2 - u - softplus(-2u)).
    log_prob -= jnp.sum(2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u)), -1)
    return jnp.tanh(u), log_prob


@dataclasses.dataclass(frozen=True, eq=False)
class SAC:
    """Static parts (modules, optimisers, settings); the jitted functions close over them."""

    obs_dim: int
    act_dim: int
    config: SACConfig = SACConfig()

    @functools.cached_property
    def actor(self) -> SACActor:
        return SACActor(self.act_dim, self.config.hidden_dims)

    @functools.cached_property
    def critic(self) -> SACCritic:
        return SACCritic(self.config.hidden_dims)

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

        mean, log_std = self.actor.apply(state.actor, batch.next_observations)
        next_a, next_logp = sample_tanh_gaussian(mean, log_std, k_next)
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
            m, ls = self.actor.apply(p, batch.observations)
            a, logp = sample_tanh_gaussian(m, ls, k_pi)
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
    """(kernel, bias) of each Dense layer of an `SACActor`, in order, as float32 NumPy arrays."""
    p = actor_params["params"] if "params" in actor_params else actor_params
    names = sorted(p, key=lambda n: int(n.split("_")[-1]))
    return [(np.asarray(p[n]["kernel"], np.float32), np.asarray(p[n]["bias"], np.float32)) for n in names]


def actor_forward_np(
    layers: list[tuple[np.ndarray, np.ndarray]], obs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of `SACActor.__call__` (mean, log_std) for stepping envs without a jit call."""
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
