"""Twin conservative critic: target 0.75 min + 0.25 max of the target heads, Huber loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def critic_target(
    q_next: jax.Array,
    rewards: jax.Array,
    dones: jax.Array,
    gamma: float,
    min_weight: float = 0.75,
    cap: float = 2000.0,
) -> jax.Array:
    """y = r + (1 - d) gamma (w min + (1 - w) max) of the target heads q_next [2, B].

    A convex mix of min and max is less pessimistic than the clipped double-Q minimum. A
    bootstrap value with |Q'| >= cap is dropped (the reward is kept), as the authors'
    `target_Q * (|target_Q| < 2000)` (actor_critic_trainer.py:147): a model-rollout blow-up
    cannot poison the critic, and a large true reward is never discarded.
    """
    q = min_weight * jnp.min(q_next, axis=0) + (1.0 - min_weight) * jnp.max(q_next, axis=0)
    # selects, not products: a done row's q may be NaN (a non-finite model sample), and 0 * NaN is
    # NaN; "not below the cap" also drops a NaN q
    drop = (dones > 0) | ~(jnp.abs(q) < cap)
    y = rewards + jnp.where(drop, 0.0, gamma * q)
    return jax.lax.stop_gradient(y)


def critic_loss(q: jax.Array, y: jax.Array, delta: float = 500.0) -> tuple[jax.Array, dict]:
    """Huber(delta) per head, averaged over the batch and summed over heads. q: [heads, B]."""
    per_head = jnp.mean(optax.losses.huber_loss(q, y[None], delta=delta), axis=-1)
    loss = jnp.sum(per_head)
    return loss, {"critic_loss": loss, "q_mean": jnp.mean(q), "target_mean": jnp.mean(y)}
