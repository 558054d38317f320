"""Implicit actor: the policy objective and best-of-N action selection for evaluation."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def actor_loss(
    q_min: jax.Array, gen_loss: jax.Array, q_scale: jax.Array, gen_scale: jax.Array | float = 1.0
) -> tuple[jax.Array, dict]:
    """-(q_scale) * mean min(Q1, Q2)(s, pi(s)) + gen_scale * generator loss.

    With the JSD regulariser q_scale is 10 / |Q|avg after the warm start and 0 during it, so the
    GAN term alone shapes the policy until the critic has something to say; gen_scale is 1.
    Without it (the authors' remove_reg) the warm start is still GAN-only, then -mean Q alone.
    """
    q_term = -q_scale * jnp.mean(q_min)
    gan_term = gen_scale * gen_loss
    loss = q_term + gan_term
    return loss, {"actor_loss": loss, "actor_q_term": q_term, "generator_loss": gen_loss}


def loss_scales(
    step_epoch: jax.Array, warm_start_epochs: int, q_coef: float, q_abs_avg: jax.Array, regularizer: str
) -> tuple[jax.Array, jax.Array]:
    """(q_scale, gen_scale) of `actor_loss` for this epoch: selects, no cond.

    "jsd" (and "kl_dual"): (0, 1) in the warm start, then (q_coef / |Q|avg, 1). "none": (0, 1) in
    the warm start, then (1, 0): an unscaled -mean Q, as the authors' remove_reg.
    """
    warm = step_epoch <= warm_start_epochs
    if regularizer == "none":
        return jnp.where(warm, 0.0, 1.0), jnp.where(warm, 1.0, 0.0)
    return q_scale(step_epoch, warm_start_epochs, q_coef, q_abs_avg), jnp.ones((), jnp.float32)


def q_scale(step_epoch: jax.Array, warm_start_epochs: int, q_coef: float, q_abs_avg: jax.Array) -> jax.Array:
    """Scale of the Q term: 0 during the warm start, then q_coef / |Q|avg (no cond: a select)."""
    return jnp.where(step_epoch > warm_start_epochs, q_coef / jnp.maximum(q_abs_avg, 1e-6), 0.0)


def update_q_abs_avg(q_abs_avg: jax.Array, q_abs: jax.Array, rate: float) -> jax.Array:
    """EMA of mean |Q| at policy actions; a negative value means "unset": start from the first batch's."""
    return jnp.where(q_abs_avg < 0, q_abs, (1.0 - rate) * q_abs_avg + rate * q_abs)


def best_of_n(actions: jax.Array, q_min: jax.Array) -> jax.Array:
    """actions [B, N, act_dim], q_min [B, N] -> the action with the highest min-Q per row."""
    best = jnp.argmax(q_min, axis=1)
    return jnp.take_along_axis(actions, best[:, None, None], axis=1)[:, 0]
