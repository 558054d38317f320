"""AMPL's own networks: the implicit actor, the discriminator, the MIW net w, and the test function nu
of the GenDICE/DualDICE estimator ablations. Small LeakyReLU MLPs (400-300 in the paper) built
from the shared `networks.MLP`; `dtype` is the matmul input dtype (`compute.dtype`)."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ampl_jax.networks import MLP


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
