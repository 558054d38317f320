"""Marginal importance weight w = d_pi / d_pi_b, learned by TD-DICE (the paper's Eq. (9)).

The fixed-point equation d_pi = (1 - gamma) mu0 pi + gamma P^pi d_pi, divided by d_pi_b and
tested against the critic Q, gives
    E_D[w(s,a) Q(s,a)] = (1 - gamma) E_mu0[Q'(s0, pi(s0))] + gamma E_D[(1 - d) w'(s,a) Q'(s', pi(s'))].
The left side carries the gradient; the right side uses target networks w', Q' and no gradient.

The core functions here work on plain arrays so that they can be checked on a tabular MDP.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def td_dice_loss(
    w: jax.Array,
    q: jax.Array,
    q0_pi: jax.Array,
    q_next_pi: jax.Array,
    w_target: jax.Array,
    dones: jax.Array,
    gamma: float,
    huber_delta: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Huber(lhs - rhs) of the fixed-point equation; gradient flows through `w` only.

    w, q, q_next_pi, w_target, dones: [B] over dataset samples; q0_pi: [M] over mu0 samples.
    """
    lhs = jnp.mean(w * q)
    rhs = (1.0 - gamma) * jnp.mean(q0_pi) + gamma * jnp.mean((1.0 - dones) * q_next_pi * w_target)
    rhs = jax.lax.stop_gradient(rhs)
    loss = optax.losses.huber_loss(lhs, rhs, delta=huber_delta)
    return loss, {"miw_lhs": lhs, "miw_rhs": rhs, "miw_residual": lhs - rhs}


def constrained_direction(grad_f, grad_g, g: jax.Array, bound: float):
    """Descent direction for min f subject to the soft constraint g <= bound.

    phi = min(g - bound, |grad g|^2); lambda = relu((phi - <grad f, grad g>) / |grad g|^2);
    direction = grad f + lambda grad g. Its inner product with grad g is at least phi, so a
    gradient step lowers g whenever g exceeds the bound, and otherwise lets it rise only a little.
    """
    dot = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(grad_f), jax.tree.leaves(grad_g)))
    gg = sum(jnp.vdot(b, b) for b in jax.tree.leaves(grad_g))
    phi = jnp.minimum(g - bound, gg)
    lam = jax.nn.relu((phi - dot) / (gg + 1e-12))
    direction = jax.tree.map(lambda a, b: a + lam * b, grad_f, grad_g)
    return direction, lam
