"""Flax modules of the agent: implicit actor, twin critic, discriminator, MIW network.

Ablation modules: a tanh-Gaussian actor (`agent.policy="tanh_gaussian"`) and the scalar test
function nu(s, a) that the GenDICE and DualDICE MIW estimators learn next to w.

All are small MLPs with LeakyReLU(0.01) hidden layers (400-300 in the paper). The twin critic
is one `nn.vmap`-ed MLP so both heads run as one batched matmul.

Mixed precision (`compute.dtype`): every module takes a `dtype` for its matmuls' inputs; the
parameters stay float32 (Flax's param_dtype) and the outputs are float32 (see MLP).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _uniform(scale: float) -> Callable:
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


def _torch_linear_init(fan_in: int) -> tuple[Callable, Callable]:
    """PyTorch's nn.Linear default, as the authors' networks: kernel and bias ~ U(+-1/sqrt(fan_in))."""
    bound = 1.0 / float(fan_in) ** 0.5
    return _uniform(bound), _uniform(bound)


def _matmul_operands_only(inputs, kernel, bias, *, dtype=None, inexact=True):
    """Flax `promote_dtype` of a float32-output layer: inputs and kernel in `dtype`, the bias kept
    float32, since it is added to the float32 sum rather than rounded to `dtype` first."""
    del inexact
    return jnp.asarray(inputs, dtype), jnp.asarray(kernel, dtype), bias


_FLOAT32_SUM = functools.partial(jax.lax.dot_general, preferred_element_type=jnp.float32)


def _float32_output(dtype: Any) -> dict:
    """nn.Dense hooks that keep a `dtype` layer's output float32 ({} when dtype is float32 already)."""
    if jnp.dtype(dtype) == jnp.float32:
        return {}
    return {"promote_dtype": _matmul_operands_only, "dot_general": _FLOAT32_SUM}


class MLP(nn.Module):
    """LeakyReLU MLP initialised as PyTorch's nn.Linear (the authors' networks).

    `dtype` is the matmul input dtype (Flax's nn.Dense dtype; the parameters stay float32). With
    bfloat16 the hidden layers compute in bfloat16, but the last layer sums in float32 and adds its
    bias in float32, so its output (a Q value, a logit, w before its squashing) is not rounded to
    8 mantissa bits before it reaches a loss.
    """

    hidden_dims: Sequence[int]
    out_dim: int
    slope: float = 0.01
    final_init_scale: float | None = None  # last layer: weights U(+-scale), bias 0 (the authors' MIW net)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
        for h in self.hidden_dims:
            k_init, b_init = _torch_linear_init(x.shape[-1])
            x = nn.leaky_relu(dense(h, kernel_init=k_init, bias_init=b_init)(x), self.slope)
        if self.final_init_scale is None:
            k_init, b_init = _torch_linear_init(x.shape[-1])
        else:
            k_init, b_init = _uniform(self.final_init_scale), nn.initializers.zeros
        out = dense(self.out_dim, kernel_init=k_init, bias_init=b_init, **_float32_output(self.dtype))(x)
        return out.astype(jnp.float32)


class ImplicitActor(nn.Module):
    """pi(s, eps) = max_action * tanh(f([s, eps])); the pre-tanh action feeds the discriminator."""

    act_dim: int
    max_action: float
    hidden_dims: Sequence[int] = (400, 300)
    slope: float = 0.01
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, obs: jax.Array, noise: jax.Array) -> tuple[jax.Array, jax.Array]:
        raw = MLP(self.hidden_dims, self.act_dim, self.slope, dtype=self.dtype)(jnp.concatenate([obs, noise], -1))
        return self.max_action * jnp.tanh(raw), raw


class TanhGaussianActor(nn.Module):
    """The policy-class ablation: a squashed Gaussian, pi(s) = max_action * tanh(mu(s) + sigma(s) * eps).

    Same calling convention as ImplicitActor, so every caller is shared: `noise` is the
    standard-normal eps [B, act_dim] (see Agent.noise), and the pre-tanh sample mu + sigma * eps
    is returned as the raw action for the discriminator. Reparameterised: gradients reach mu and
    sigma. log sigma is squashed smoothly into [log_std_min, log_std_max]. No entropy bonus:
    the JSD regulariser matches the data's (s, raw a) distribution, spread included, and is what
    keeps sigma from collapsing (with `agent.regularizer="none"` nothing does).
    """

    act_dim: int
    max_action: float
    hidden_dims: Sequence[int] = (400, 300)
    slope: float = 0.01
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, obs: jax.Array, noise: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden_dims, 2 * self.act_dim, self.slope, dtype=self.dtype)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (jnp.tanh(log_std) + 1.0)
        raw = mean + jnp.exp(log_std) * noise
        return self.max_action * jnp.tanh(raw), raw


class TwinCritic(nn.Module):
    """Two independent Q heads; output [2, ...batch]."""

    hidden_dims: Sequence[int] = (400, 300)
    slope: float = 0.01
    num_heads: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, obs: jax.Array, act: jax.Array) -> jax.Array:
        heads = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_heads,
        )(self.hidden_dims, 1, self.slope, dtype=self.dtype)
        return heads(jnp.concatenate([obs, act], -1))[..., 0]


class Discriminator(nn.Module):
    """Logit of D(s, raw a); the sigmoid lives in the loss for numerical stability."""

    hidden_dims: Sequence[int] = (400, 300)
    slope: float = 0.01
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, obs: jax.Array, raw_act: jax.Array) -> jax.Array:
        return MLP(self.hidden_dims, 1, self.slope, dtype=self.dtype)(jnp.concatenate([obs, raw_act], -1))[..., 0]


class MIWNet(nn.Module):
    """w(s, a) = (softplus(x) + 1e-8) ** alpha: positive, with alpha < 1 taming its tail."""

    hidden_dims: Sequence[int] = (400, 300)
    slope: float = 0.01
    alpha: float = 0.5
    last_layer_init: float = 3e-3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, obs: jax.Array, act: jax.Array) -> jax.Array:
        x = MLP(self.hidden_dims, 1, self.slope, self.last_layer_init, self.dtype)(
            jnp.concatenate([obs, act], -1)
        )[..., 0]
        return (jax.nn.softplus(x) + 1e-8) ** self.alpha


class TestFunction(nn.Module):
    """A scalar function nu(s, a): the dual (test) function of the GenDICE and DualDICE estimators.

    Its last layer starts at U(+-last_layer_init), so nu starts near 0.
    """

    hidden_dims: Sequence[int] = (400, 300)
    slope: float = 0.01
    last_layer_init: float = 3e-3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, obs: jax.Array, act: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, act], -1)
        return MLP(self.hidden_dims, 1, self.slope, self.last_layer_init, self.dtype)(x)[..., 0]


def sample_noise(key: jax.Array, shape: Sequence[int], std: float, clip: float) -> jax.Array:
    """Implicit-policy noise eps ~ N(0, std^2), clamped to [-clip, clip] as the paper does."""
    return jnp.clip(std * jax.random.normal(key, tuple(shape)), -clip, clip)
