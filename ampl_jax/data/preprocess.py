"""Pure array helpers on the offline data: reward rescaling, bounds, scores (jnp-only, jit-safe)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

REWARD_OFFSET = 1e-3  # spec: r~ = (r - r_min + 1e-3) / (r_max - r_min), so r~ > 0 everywhere


def reward_scale(r_min: float | jax.Array, r_max: float | jax.Array) -> jax.Array:
    """Denominator of the rescaling; 1 when all rewards are equal (avoids a division by zero)."""
    span = jnp.asarray(r_max, jnp.float32) - jnp.asarray(r_min, jnp.float32)
    return jnp.where(span > 0, span, jnp.ones_like(span))


def rescale_rewards(r: jax.Array, r_min: float | jax.Array, r_max: float | jax.Array) -> jax.Array:
    """Spec's min-max rescaling: model, critic and MIW all see r~ in (0, 1 + 1e-3 / (r_max - r_min)]."""
    r = jnp.asarray(r, jnp.float32)
    return (r - jnp.asarray(r_min, jnp.float32) + REWARD_OFFSET) / reward_scale(r_min, r_max)


def unscale_rewards(r_scaled: jax.Array, r_min: float | jax.Array, r_max: float | jax.Array) -> jax.Array:
    """Inverse of `rescale_rewards` (to report model rewards in environment units)."""
    r_scaled = jnp.asarray(r_scaled, jnp.float32)
    return r_scaled * reward_scale(r_min, r_max) + jnp.asarray(r_min, jnp.float32) - REWARD_OFFSET


def obs_range(observations: jax.Array, next_observations: jax.Array | None = None) -> jax.Array:
    """2 * max |s| per dimension over s (and s' when given): model rollouts past it are stopped."""
    m = jnp.max(jnp.abs(observations), axis=0)
    if next_observations is not None:
        m = jnp.maximum(m, jnp.max(jnp.abs(next_observations), axis=0))
    return 2.0 * m


def reward_bound(scaled_rewards: jax.Array) -> jax.Array:
    """Spec's R = max(|r~_min - 10 sigma|, |r~_max + 10 sigma|): a model reward beyond it ends a rollout."""
    sigma = jnp.std(scaled_rewards)
    lo = jnp.abs(jnp.min(scaled_rewards) - 10.0 * sigma)
    hi = jnp.abs(jnp.max(scaled_rewards) + 10.0 * sigma)
    return jnp.maximum(lo, hi)


def normalized_score(returns: jax.Array | float, ref_min: float, ref_max: float) -> jax.Array:
    """D4RL-style score: 0 = random policy, 100 = expert."""
    return 100.0 * (jnp.asarray(returns, jnp.float32) - ref_min) / (ref_max - ref_min)
