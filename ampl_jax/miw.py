"""Marginal importance weight w = d_pi / d_pi_b, learned by TD-DICE (the paper's Eq. (9)).

The fixed-point equation d_pi = (1 - gamma) mu0 pi + gamma P^pi d_pi, divided by d_pi_b and
tested against the critic Q, gives
    E_D[w(s,a) Q(s,a)] = (1 - gamma) E_mu0[Q'(s0, pi(s0))] + gamma E_D[(1 - d) w'(s,a) Q'(s', pi(s'))].
The left side carries the gradient; the right side uses target networks w', Q' and no gradient.

The core functions here work on plain arrays so that they can be checked on a tabular MDP.

Estimator ablations (`miw.estimator`, the paper's MIW ablation). All use the same batches as
TD-DICE: data rows (s, a, s', d) ~ D, states s0 ~ mu0, and actions of the current actor at s0
and s'; w(s, a) is always the MIW network's (positive) output, the quantity that weights the
model refit. Each is written as one saddle value L(w, dual) that w MINIMISES and the dual
player (an extra network nu and/or a scalar multiplier u, held in TrainState.miw_aux) MAXIMISES;
the update step descends in w and ascends in the dual, simultaneously.

- "td_dice" (default): `td_dice_loss` above; no dual.
- "vpm" (variational power method, Wen et al. 2020): one damped power step w <- T w' of the
  normalised flow operator T, solved in L2(d_D): `vpm_value`. Dual: u (normalisation).
- "gendice" (Zhang et al. 2020): the chi-square divergence between w d_D and its one-step
  flow (1 - gamma) mu0 pi + gamma P^pi (w d_D), in its Fenchel dual form with test function
  nu: `gendice_value`. Dual: nu and u (normalisation).
- "dualdice" (Nachum et al. 2019): the Fenchel dual of min_nu E_D[(nu - gamma P^pi nu)^2 / 2]
  - (1 - gamma) E_mu0[nu(s0, pi(s0))], whose maximiser zeta = nu - gamma E[nu(s', pi(s'))] is
  the ratio: `dualdice_value`. Here zeta is the MIW network w. Dual: nu.

Terminal rows (d = 1) drop the next-state term in every estimator, as in TD-DICE.
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
    split_batch: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Huber(lhs - rhs) of the fixed-point equation; gradient flows through `w` only.

    w, q, q_next_pi, w_target, dones: [B] over dataset samples; q0_pi: [M] over mu0 samples.

    The spec's loss squares a batch-mean residual and differentiates it on the same samples, so
    its gradient carries an O(1/B) term that shrinks w (measured on a tabular MDP: E_db[w] ~
    0.84-0.94 instead of 1). `split_batch=True` takes Huber' of the residual on one half of the
    batch and the gradient of lhs on the other: an unbiased gradient of the same objective. The
    returned value is the full-batch loss either way.
    """
    lhs = jnp.mean(w * q)
    rhs = (1.0 - gamma) * jnp.mean(q0_pi) + gamma * jnp.mean((1.0 - dones) * q_next_pi * w_target)
    rhs = jax.lax.stop_gradient(rhs)
    loss = optax.losses.huber_loss(lhs, rhs, delta=huber_delta)
    if split_batch:
        half = w.shape[0] // 2
        slope = jax.lax.stop_gradient(jnp.clip(jnp.mean(w[:half] * q[:half]) - rhs, -huber_delta, huber_delta))
        surrogate = slope * jnp.mean(w[half:2 * half] * q[half:2 * half])
        loss = surrogate + jax.lax.stop_gradient(loss - surrogate)
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


# --- estimator ablations: saddle values L(w, dual), w minimises, the dual maximises ---------------


def vpm_value(
    w: jax.Array,
    w_target: jax.Array,
    w0_pi: jax.Array,
    w_next_pi: jax.Array,
    dones: jax.Array,
    u: jax.Array,
    gamma: float,
    norm_penalty: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Variational power method: one power step w <- T w' as a least-squares problem.

    L = 1/2 E_D[w(s,a)^2] - (1 - gamma) E_mu0[w(s0, pi(s0))] - gamma E_D[(1 - d) w'(s,a) w(s', pi(s'))]
        + lam (2 u (E_D[w] - 1) - u^2).
    w carries the gradient at all three inputs (w = the network at (s, a); w0_pi, w_next_pi =
    the same network at (s0, pi(s0)) and (s', pi(s'))); w' is the target network. Minimising over
    w in L2(d_D) gives w = T w', with (T w')(x) d_D(x) = (1 - gamma) mu0 pi(x)
    + gamma sum_{s,a} d_D(s,a) w'(s,a) P(s'|s,a) pi(a'|s') at x = (s', a'): the TD-DICE operator
    of the tabular tests, whose fixed point is d_pi / d_D. The slow Polyak target w' replaces the
    paper's 1/sqrt(t) averaging of power steps. The dual u maximises to E_D[w] - 1, making the
    last term lam (E_D[w] - 1)^2 with unbiased minibatch gradients. w: the ratio itself.

    w, w_target, w_next_pi, dones: [B]; w0_pi: [M].
    """
    power = (1.0 - gamma) * jnp.mean(w0_pi) + gamma * jnp.mean((1.0 - dones) * w_target * w_next_pi)
    w_mean = jnp.mean(w)
    norm = norm_penalty * (2.0 * u * (w_mean - 1.0) - u**2)
    value = 0.5 * jnp.mean(w**2) - power + norm
    return value, {"miw_power_term": power, "miw_norm_gap": w_mean - 1.0}


def gendice_value(
    w: jax.Array,
    nu: jax.Array,
    nu0_pi: jax.Array,
    nu_next_pi: jax.Array,
    dones: jax.Array,
    u: jax.Array,
    gamma: float,
    norm_penalty: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GenDICE with the chi-square divergence (phi*(x) = x + x^2 / 4) and a normalisation dual.

    L = (1 - gamma) E_mu0[nu(s0, pi(s0))] + gamma E_D[(1 - d) w(s,a) nu(s', pi(s'))]
        - E_D[w(s,a) (nu(s,a) + nu(s,a)^2 / 4)] + lam (u (E_D[w] - 1) - u^2 / 2).
    For fixed w, max over nu is the chi-square divergence between the flow
    (1 - gamma) mu0 pi + gamma P^pi (w d_D) and w d_D, which is 0 exactly when w = d_pi / d_D
    (then nu = 0 and the nu-gradient, the flow residual, vanishes); max over u gives
    lam (E_D[w] - 1)^2 / 2. w minimises: w is the ratio itself, no transformation.

    w, nu, nu_next_pi, dones: [B] (nu at the data (s, a), nu_next_pi at (s', pi(s'))); nu0_pi: [M].
    """
    w_mean = jnp.mean(w)
    flow = (1.0 - gamma) * jnp.mean(nu0_pi) + gamma * jnp.mean((1.0 - dones) * w * nu_next_pi)
    conj = jnp.mean(w * (nu + 0.25 * nu**2))
    value = flow - conj + norm_penalty * (u * (w_mean - 1.0) - 0.5 * u**2)
    return value, {"miw_divergence": flow - conj, "miw_norm_gap": w_mean - 1.0}


def dualdice_value(
    w: jax.Array,
    nu: jax.Array,
    nu0_pi: jax.Array,
    nu_next_pi: jax.Array,
    dones: jax.Array,
    gamma: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """DualDICE (f(x) = x^2 / 2), with the roles arranged so that w minimises.

    J(nu, zeta) = E_D[(nu(s,a) - gamma (1 - d) nu(s', pi(s'))) zeta(s,a) - zeta(s,a)^2 / 2]
                  - (1 - gamma) E_mu0[nu(s0, pi(s0))];
    DualDICE solves min_nu max_zeta J. Here zeta is the MIW network w and the returned value is
    L = -J (w minimises L, nu maximises it). For fixed nu the best w is
    w(s,a) = nu(s,a) - gamma E[(1 - d) nu(s', pi(s')) | s, a]; at the saddle, nu solves
    nu - gamma P^pi nu = d_pi / d_D, so w is the ratio (and the gradients in nu and w vanish).
    The network's positive output head restricts w >= 0, which holds at the solution.

    w, nu, nu_next_pi, dones: [B]; nu0_pi: [M].
    """
    bellman = nu - gamma * (1.0 - dones) * nu_next_pi
    j = jnp.mean(bellman * w - 0.5 * w**2) - (1.0 - gamma) * jnp.mean(nu0_pi)
    return -j, {"miw_bellman_gap": jnp.mean(bellman - w)}
