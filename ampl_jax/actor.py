"""Implicit actor: the policy objective and best-of-N action selection for evaluation."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def actor_loss(q_min: jax.Array, gen_loss: jax.Array, q_scale: jax.Array) -> tuple[jax.Array, dict]:
    """-(q_scale) * mean min(Q1, Q2)(s, pi(s)) + generator loss.

    q_scale is 10 / |Q|avg after the warm start and 0 during it, so the GAN term alone shapes
    the policy until the critic has something to say.
    """
    q_term = -q_scale * jnp.mean(q_min)
    loss = q_term + gen_loss
    return loss, {"actor_loss": loss, "actor_q_term": q_term, "generator_loss": gen_loss}


def q_scale(step_epoch: jax.Array, warm_start_epochs: int, q_coef: float, q_abs_avg: jax.Array) -> jax.Array:
    """Scale of the Q term: 0 during the warm start, then q_coef / |Q|avg (no cond: a select)."""
    return jnp.where(step_epoch > warm_start_epochs, q_coef / jnp.maximum(q_abs_avg, 1e-6), 0.0)


def best_of_n(actions: jax.Array, q_min: jax.Array) -> jax.Array:
    """actions [B, N, act_dim], q_min [B, N] -> the action with the highest min-Q per row."""
    best = jnp.argmax(q_min, axis=1)
    return jnp.take_along_axis(actions, best[:, None, None], axis=1)[:, 0]
