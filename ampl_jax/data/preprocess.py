"""Pure array helpers on the offline data: reward rescaling, bounds, normalisers, scores.

All functions are jnp-only (jit-safe) except `dataset_normalized_score`, which checks host-side
metadata and raises a clear error where a reference score is missing.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ampl_jax.types import DatasetInfo

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


class Normalizer(NamedTuple):
    """Per-dimension standardisation (a pytree, so it lives inside model/train states)."""

    mean: jax.Array
    std: jax.Array

    @classmethod
    def fit(cls, x: jax.Array, eps: float = 1e-6) -> "Normalizer":
        """Mean/std over the leading axis; near-constant dimensions (std < eps) keep scale 1.

        Scale 1 rather than eps: a constant feature must not be blown up to huge values.
        """
        x = jnp.asarray(x, jnp.float32)
        mean = jnp.mean(x, axis=0)
        std = jnp.std(x, axis=0)
        return cls(mean, jnp.where(std < eps, jnp.ones_like(std), std))

    def normalize(self, x: jax.Array) -> jax.Array:
        return (x - self.mean) / self.std

    def denormalize(self, x: jax.Array) -> jax.Array:
        return x * self.std + self.mean


def normalized_score(returns: jax.Array | float, ref_min: float, ref_max: float) -> jax.Array:
    """D4RL-style score: 0 = random policy, 100 = expert."""
    return 100.0 * (jnp.asarray(returns, jnp.float32) - ref_min) / (ref_max - ref_min)


def dataset_normalized_score(returns: jax.Array | float, info: DatasetInfo) -> jax.Array:
    """`normalized_score` with the dataset's references; a clear error where they are missing."""
    from ampl_jax.data.load import DatasetError  # local import: load.py imports this module

    if info.ref_min_score is None or info.ref_max_score is None:
        raise DatasetError(
            f"dataset '{info.dataset_id}' (env {info.env_id}) has no reference scores "
            f"(ref_min_score={info.ref_min_score}, ref_max_score={info.ref_max_score}): add them to "
            "its metadata or to the table in ampl_jax/data/scores.py, or report raw returns only"
        )
    if info.ref_max_score == info.ref_min_score:
        raise DatasetError(
            f"dataset '{info.dataset_id}' has ref_min_score == ref_max_score == {info.ref_min_score}: "
            "fix the reference scores in its metadata"
        )
    return normalized_score(returns, info.ref_min_score, info.ref_max_score)
