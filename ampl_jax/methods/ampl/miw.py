"""Marginal importance weight w = d_pi / d_pi_b, learned by TD-DICE (the paper's Eq. (9)).

The fixed-point equation d_pi = (1 - gamma) mu0 pi + gamma P^pi d_pi, divided by d_pi_b and
tested against the critic Q, gives
    E_D[w(s,a) Q(s,a)] = (1 - gamma) E_mu0[Q'(s0, pi(s0))] + gamma E_D[(1 - d) w'(s,a) Q'(s', pi(s'))].
The left side carries the gradient; the right side uses target networks w', Q' and no gradient.

The core functions here work on plain arrays so that they can be checked on a tabular MDP.

Estimator ablations (`miw.estimator`, the paper's MIW ablation), as the authors ran them
(VPM_trainer.py, DICE_trainer.py; defaults in the config's miw.vpm / miw.gendice /
miw.dualdice sections, resolved in ONE place: `estimator_settings`). All use the same batches
as TD-DICE: data rows (s, a, s', d) ~ D, states s0 ~ mu0, and actions of the current actor at
s0 and s'; w(s, a) is always the MIW network's (positive) output, the quantity that weights the
model refit. Each is written as one saddle value L(w, dual) that w MINIMISES and the dual
player (an extra network nu and/or a scalar multiplier u, held in TrainState.miw_aux) MAXIMISES.

- "td_dice" (default): `td_dice_loss` above; no dual.
- "td_dice_multi": the same fixed-point equation tested against K random functions of the
  standardised (s, a) at once (`random_test_functions`, `td_dice_multi_loss`). One test function
  is one linear constraint on w, which does not identify it (on tabular MDPs TD-DICE with Q learns
  a w ANTI-correlated with the ratio); K of them, drawn afresh each step, pin it down, and the
  constant f_0 = 1 (`with_constant`) pins the scale E_D[w]. No dual; TD-DICE's target w' and
  mean(w) <= bound correction.
- "vpm" (variational power method, Wen et al. 2020): T power iterations of M steps each; step t
  of a run takes one damped power step w <- (1 - alpha_t) w' + alpha_t T w' of the normalised
  flow operator T, solved in L2(d_D), alpha_t = 1 / sqrt(t), w' a hard copy of w refreshed
  every M steps: `vpm_value`. Dual: u (normalisation), stepped after w at the updated w.
- "gendice" (Zhang et al. 2020): the chi-square divergence between w d_D and its one-step
  flow (1 - gamma) mu0 pi + gamma P^pi (w d_D), in its Fenchel dual form with test function
  nu: `gendice_value`. Dual: nu and u (normalisation), simultaneous gradient steps.
- "dualdice" (Nachum et al. 2019) with the authors' f*(x) = x^3 / 3 (f(x) = 2/3 |x|^(3/2)):
  min_nu max_zeta E_D[(nu - gamma P^pi nu) zeta - zeta^3 / 3] - (1 - gamma) E_mu0[nu(s0, pi(s0))],
  whose maximiser in zeta is the ratio: `dualdice_value`. Here zeta is the MIW network w.
  Dual: nu, simultaneous gradient steps.

The authors' GenDICE/DualDICE copy both networks to their targets after every step, so each
player's loss sees the other's current values: exactly the simultaneous gradients here (their
targets are never stale, so none is kept). Their estimators do NOT drop the next-state term at
terminal rows (TD-DICE does); `mask_terminals=True` drops it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ampl_jax import networks
from ampl_jax.methods.ampl import networks as ampl_nets

MULTI_FEATURES = ("fourier", "relu")


def td_dice_loss(w: jax.Array, q: jax.Array, q0_pi: jax.Array, q_next_pi: jax.Array, w_target: jax.Array,
                 dones: jax.Array, gamma: float, huber_delta: float = 1.0,
                 split_batch: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
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


def td_dice_multi_loss(w: jax.Array, f: jax.Array, f0_pi: jax.Array, f_next_pi: jax.Array, w_target: jax.Array,
                       dones: jax.Array, gamma: float, huber_delta: float = 1.0,
                       split_batch: bool = True, mass_penalty: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """mean_k Huber(lhs_k - rhs_k): `td_dice_loss` against K test functions at once, plus
    `mass_penalty` * `mass_gap`^2 (0: none).

    w, w_target, dones: [B]; f, f_next_pi: [B, K] (f_k at the data (s, a) and at (s', pi(s')));
    f0_pi: [M, K] at (s0, pi(s0)). lhs_k = E_D[w f_k], rhs_k = (1 - gamma) E_mu0[f_k] +
    gamma E_D[(1 - d) w' f_k(s', pi(s'))], no gradient through rhs. `split_batch` (default here):
    each Huber' on one half of the batch times lhs's gradient on the other, an unbiased gradient.
    """
    lhs = jnp.mean(w[:, None] * f, axis=0)
    rhs = (1.0 - gamma) * jnp.mean(f0_pi, axis=0) + gamma * jnp.mean(
        ((1.0 - dones) * w_target)[:, None] * f_next_pi, axis=0)
    rhs = jax.lax.stop_gradient(rhs)
    loss = jnp.mean(optax.losses.huber_loss(lhs, rhs, delta=huber_delta))
    if split_batch:
        half = w.shape[0] // 2
        first = jnp.mean(w[:half, None] * f[:half], axis=0)
        slope = jax.lax.stop_gradient(jnp.clip(first - rhs, -huber_delta, huber_delta))
        surrogate = jnp.mean(slope * jnp.mean(w[half:2 * half, None] * f[half:2 * half], axis=0))
        loss = surrogate + jax.lax.stop_gradient(loss - surrogate)
    residual = lhs - rhs
    gap = mass_gap(w, dones, gamma)
    if mass_penalty:
        loss = loss + mass_penalty * gap**2
    return loss, {"miw_residual_rms": jnp.sqrt(jnp.mean(residual**2)),
                  "miw_residual_max": jnp.max(jnp.abs(residual)), "miw_mass_gap": gap}


def mass_gap(w: jax.Array, dones: jax.Array, gamma: float) -> jax.Array:
    """E_b[w] - m, m = (1 - gamma) E_b[w] / (E_b[w] - gamma E_b[(1 - d) w]) taken without gradient.

    The fixed-point equation tested against a constant, E_D[w] = (1 - gamma) + gamma E_D[(1 - d) w],
    fixes the scale of w: for w = c v, c = (1 - gamma) / (E_D[v] - gamma E_D[(1 - d) v]), so the
    ratio's mass E_D[w] is m (1 when no row terminates). Tested through the TD residual with its
    target w', that scale moves only at the fixed point's rate, (1 - gamma) per target update
    (tests/methods/ampl/test_miw_tabular.py: from w = 3 at gamma = 0.99, E_D[w] is still 2.3 after 1,000
    steps); a penalty on this gap pulls it directly.
    """
    mean_w = jnp.mean(w)
    mass = (1.0 - gamma) * mean_w / (mean_w - gamma * jnp.mean((1.0 - dones) * w))  # > 0: (1 - d) w <= w
    return mean_w - jax.lax.stop_gradient(mass)


def random_test_functions(
    key: jax.Array,
    inputs: Sequence[jax.Array],
    num: int,
    kind: str = "fourier",
    scale: float = 1.0,
) -> list[jax.Array]:
    """K random functions of x = [s, a], evaluated on every array of `inputs` ([n_i, d] each).

    x is standardised by the mean and std of inputs[0] (the data batch) so that one draw suits any
    observation scale; the SAME functions are applied to every array (the equation tests one f_k
    at (s, a), (s0, pi(s0)) and (s', pi(s'))). Any function fixed within a step is a valid test
    function, so the batch statistics need no state. With z the standardised x and
    v ~ N(0, I / d): "fourier" sqrt(2) cos(scale v.z + b), b ~ U(0, 2 pi) (random features of
    an RBF kernel of length scale sqrt(d) / scale); "relu" relu(scale v.z + b), b ~ N(0, 1),
    centred on the data batch. Returns [n_i, K] per input.
    """
    mean = jnp.mean(inputs[0], axis=0)
    std = jnp.std(inputs[0], axis=0) + 1e-6
    d = inputs[0].shape[-1]
    k_v, k_b = jax.random.split(key)
    v = jax.random.normal(k_v, (d, num)) * (scale / jnp.sqrt(d))
    if kind == "fourier":
        b = jax.random.uniform(k_b, (num,), maxval=2.0 * jnp.pi)
        return [jnp.sqrt(2.0) * jnp.cos(((x - mean) / std) @ v + b) for x in inputs]
    if kind == "relu":
        b = jax.random.normal(k_b, (num,))
        feats = [jax.nn.relu(((x - mean) / std) @ v + b) for x in inputs]
        centre = jnp.mean(feats[0], axis=0)
        return [h - centre for h in feats]
    raise ValueError(f"unknown test-function kind {kind!r}; one of {', '.join(map(repr, MULTI_FEATURES))}")


def with_constant(fs: Sequence[jax.Array]) -> list[jax.Array]:
    """The test functions [n_i, K] of every input with the constant f_0 = 1 prepended: [n_i, K + 1].

    Tested against f_0, the fixed-point equation reads E_D[w] = (1 - gamma) E_mu0[1] + gamma
    E_D[(1 - d) w'], which holds for the true ratio and fixes the scale of w (E_D[w] = 1 when no row
    terminates); random features (zero mean over the data, as "relu"'s, or nearly so, as
    "fourier"'s) leave that scale free. Its mean square, 1, is that of the Fourier features.
    """
    return [jnp.concatenate([jnp.ones((f.shape[0], 1), f.dtype), f], -1) for f in fs]


def constrained_direction(grad_f, grad_g, g: jax.Array, bound: float, per_tensor: bool = False):
    """Descent direction for min f subject to the soft constraint g <= bound.

    phi = min(g - bound, |grad g|^2); lambda = relu((phi - <grad f, grad g>) / |grad g|^2);
    direction = grad f + lambda grad g. Its inner product with grad g is at least phi, so a
    gradient step lowers g whenever g exceeds the bound, and otherwise lets it rise only a little.

    per_tensor=True applies the rule to every parameter tensor on its own (its own phi, inner
    product, norm and lambda), as the authors' `Constraint` optimiser does; False treats all
    parameters as one vector. Returns the direction and lambda (the mean over tensors if per_tensor).
    """
    if per_tensor:
        def one(a, b):
            gg = jnp.vdot(b, b)
            lam = jax.nn.relu((jnp.minimum(g - bound, gg) - jnp.vdot(a, b)) / (gg + 1e-8))
            return a + lam * b, lam

        pairs = jax.tree.map(one, grad_f, grad_g)
        direction = jax.tree.map(lambda _, p: p[0], grad_f, pairs)
        lams = [p[1] for p in jax.tree.leaves(pairs, is_leaf=lambda x: isinstance(x, tuple))]
        return direction, jnp.mean(jnp.stack(lams))
    dot = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(grad_f), jax.tree.leaves(grad_g)))
    gg = sum(jnp.vdot(b, b) for b in jax.tree.leaves(grad_g))
    phi = jnp.minimum(g - bound, gg)
    lam = jax.nn.relu((phi - dot) / (gg + 1e-12))
    direction = jax.tree.map(lambda a, b: a + lam * b, grad_f, grad_g)
    return direction, lam


# --- estimator ablations: saddle values L(w, dual), w minimises, the dual maximises ---------------


def vpm_norm_term(u: jax.Array, w_mean: jax.Array, norm_penalty: float) -> jax.Array:
    """lam (2 u (E_D[w] - 1) - u^2): VPM's normalisation term (u maximises it to E_D[w] - 1)."""
    return norm_penalty * (2.0 * u * (w_mean - 1.0) - u**2)


def vpm_value(
    w: jax.Array,
    w_target: jax.Array,
    w0_pi: jax.Array,
    w_next_pi: jax.Array,
    dones: jax.Array,
    u: jax.Array,
    gamma: float,
    norm_penalty: float = 1.0,
    alpha: float | jax.Array = 1.0,
    mask_terminals: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Variational power method: one damped power step w <- (1 - alpha) w' + alpha T w' as least squares.

    L = 1/2 E_D[w^2] - (1 - alpha) E_D[w w'] - alpha [(1 - gamma) E_mu0[w(s0, pi(s0))]
        + gamma E_D[m w'(s,a) w(s', pi(s'))]] + lam (2 u (E_D[w] - 1) - u^2),
    m = 1 - d with `mask_terminals`, else 1 (the authors'). The authors' loss (VPM_trainer.py:53-63).
    w carries the gradient at all three inputs (w = the network at (s, a); w0_pi, w_next_pi =
    the same network at (s0, pi(s0)) and (s', pi(s'))); w' is the target network. Minimising over
    w in L2(d_D) gives w = (1 - alpha) w' + alpha T w', with (T w')(x) d_D(x) = (1 - gamma) mu0 pi(x)
    + gamma sum_{s,a} d_D(s,a) w'(s,a) P(s'|s,a) pi(a'|s') at x = (s', a'): the TD-DICE operator
    of the tabular tests, whose fixed point is d_pi / d_D. The dual u maximises to E_D[w] - 1,
    making the last term lam (E_D[w] - 1)^2. w: the ratio itself.

    w, w_target, w_next_pi, dones: [B]; w0_pi: [M].
    """
    mask = (1.0 - dones) if mask_terminals else jnp.ones_like(dones)
    power = (1.0 - gamma) * jnp.mean(w0_pi) + gamma * jnp.mean(mask * w_target * w_next_pi)
    w_mean = jnp.mean(w)
    value = (0.5 * jnp.mean(w**2) - (1.0 - alpha) * jnp.mean(w * w_target) - alpha * power
             + vpm_norm_term(u, w_mean, norm_penalty))
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
    mask_terminals: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GenDICE with the chi-square divergence (phi*(x) = x + x^2 / 4) and a normalisation dual.

    The authors' saddle (DICE_trainer.py:74-79, 105): m = 1 - d with `mask_terminals`, else 1,
    L = (1 - gamma) E_mu0[nu(s0, pi(s0))] + gamma E_D[m w(s,a) nu(s', pi(s'))]
        - E_D[w(s,a) (nu(s,a) + nu(s,a)^2 / 4)] + lam (u (E_D[w] - 1) - u^2 / 2).
    For fixed w, max over nu is the chi-square divergence between the flow
    (1 - gamma) mu0 pi + gamma P^pi (w d_D) and w d_D, which is 0 exactly when w = d_pi / d_D
    (then nu = 0 and the nu-gradient, the flow residual, vanishes); max over u gives
    lam (E_D[w] - 1)^2 / 2. w minimises: w is the ratio itself, no transformation.

    w, nu, nu_next_pi, dones: [B] (nu at the data (s, a), nu_next_pi at (s', pi(s'))); nu0_pi: [M].
    """
    mask = (1.0 - dones) if mask_terminals else jnp.ones_like(dones)
    w_mean = jnp.mean(w)
    flow = (1.0 - gamma) * jnp.mean(nu0_pi) + gamma * jnp.mean(mask * w * nu_next_pi)
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
    mask_terminals: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """DualDICE with the authors' f*(x) = x^3 / 3, arranged so that w minimises.

    J(nu, zeta) = E_D[(nu(s,a) - gamma m nu(s', pi(s'))) zeta(s,a) - zeta(s,a)^3 / 3]
                  - (1 - gamma) E_mu0[nu(s0, pi(s0))],  m = 1 - d with `mask_terminals`, else 1;
    the authors' losses (DICE_trainer.py:81-85): nu minimises J, zeta maximises it. Here zeta is
    the MIW network w and the returned value is L = -J (w minimises L, nu maximises it). For fixed
    nu the best w >= 0 is sqrt(nu(s,a) - gamma E[m nu(s', pi(s')) | s, a]); minimising over nu
    then forces w d_D = (1 - gamma) mu0 pi + gamma P^pi (w d_D), so w is the ratio at the saddle
    (where nu - gamma P^pi nu = w^2 and both gradients vanish).

    w, nu, nu_next_pi, dones: [B]; nu0_pi: [M].
    """
    mask = (1.0 - dones) if mask_terminals else jnp.ones_like(dones)
    bellman = nu - gamma * mask * nu_next_pi
    j = jnp.mean(bellman * w - w**3 / 3.0) - (1.0 - gamma) * jnp.mean(nu0_pi)
    return -j, {"miw_bellman_gap": jnp.mean(bellman - w**2)}


# --- per-estimator settings: the ONE place where `miw.estimator` picks its defaults ---------------


@dataclasses.dataclass(frozen=True)
class EstimatorSettings:
    """What one MIW estimator trains with (resolved from the `miw` config by `estimator_settings`)."""

    name: str
    lr: float  # Adam lr of w
    grad_clip_norm: float  # global-norm clip of w's gradient; 0: none
    grad_clip_value: float  # element-wise clip of every player's gradient; 0: none
    mean_bound: float | None  # the mean(w) <= bound correction (TD-DICE, td_dice_multi); None: none
    nu_lr: float | None = None  # Adam lr of the test function nu (gendice, dualdice)
    u_lr: float | None = None  # Adam lr of the multiplier u (vpm, gendice)
    u_init: float = 0.0
    norm_penalty: float = 1.0  # lambda of u's E_D[w] = 1 term
    mask_terminals: bool = True
    power_iterations: int = 0  # VPM: T
    inner_steps: int = 0  # VPM: M steps per power iteration (w' refreshed every M steps)
    output_clipping: bool = False  # w's head: the soft clip into (1e-8, 500) (ClippedMIWNet), else the power

    @property
    def dual_keys(self) -> tuple[str, ...]:
        return tuple(k for k, lr in (("nu", self.nu_lr), ("u", self.u_lr)) if lr is not None)


def estimator_settings(cfg_miw) -> EstimatorSettings:
    """Resolve the settings of `cfg_miw.estimator`.

    TD-DICE reads the top-level `miw` keys (lr, grad_clip, mean_bound; the paper's 1e-6 rate).
    Every ablation estimator reads only its own section, whose defaults are the authors':
    - vpm (VPM_trainer.py:24-37): Adam 3e-4 for w and u, u starts at 1, lambda 1, no gradient
      clipping, T = 200 power iterations of M = 10 steps;
    - gendice (DICE_trainer.py:30-46, 98-99, 109): Adam 3e-3 for w, 1e-4 for nu and u, u starts
      at 1, lambda 1, element-wise gradient clipping at 1;
    - dualdice (DICE_trainer.py:32-42, 98-99): Adam 1e-4 for w and nu, element-wise clipping at 1.
    No ablation uses the mean(w) <= bound correction (the authors' constraint optimiser is
    TD-DICE's, td_dice_trainer.py:42-49), and none drops terminal rows' next-state term by default.
    Output clipping: TD-DICE and td_dice_multi read `miw.output_clipping` (off, as gan_main.py:76);
    each ablation its own section's (on: the authors' README runs VPM, GenDICE and DualDICE with
    --weight_output_clipping=True).
    """
    est = cfg_miw.estimator
    if est == "td_dice":
        return EstimatorSettings("td_dice", float(cfg_miw.lr), float(cfg_miw.grad_clip), 0.0, float(cfg_miw.mean_bound),
                                 output_clipping=bool(cfg_miw.output_clipping))
    if est == "td_dice_multi":  # TD-DICE's clip, bound (and tau, huber_delta); its own rate
        return EstimatorSettings("td_dice_multi", float(cfg_miw.td_dice_multi.lr), float(cfg_miw.grad_clip), 0.0,
                                 float(cfg_miw.mean_bound), output_clipping=bool(cfg_miw.output_clipping))
    e = cfg_miw[est]  # "vpm", "gendice" or "dualdice" (configuration.validate)
    common = dict(name=est, lr=float(e.lr), grad_clip_norm=0.0, grad_clip_value=float(e.grad_clip_value),
                  mean_bound=None, mask_terminals=bool(e.mask_terminals), output_clipping=bool(e.output_clipping))
    if est == "vpm":
        return EstimatorSettings(**common, u_lr=float(e.u_lr), u_init=float(e.u_init),
                                 norm_penalty=float(e.norm_penalty), power_iterations=int(e.power_iterations),
                                 inner_steps=int(e.inner_steps))
    if est == "gendice":
        return EstimatorSettings(**common, nu_lr=float(e.nu_lr), u_lr=float(e.u_lr), u_init=float(e.u_init),
                                 norm_penalty=float(e.norm_penalty))
    return EstimatorSettings(**common, nu_lr=float(e.nu_lr))


def phase_steps(cfg_miw) -> int:
    """MIW steps that change anything in one block of the "phased" schedule: `phased_steps`, but
    VPM's T * M (the authors run one power-method run per block, VPM_trainer.py:45, whatever the
    block length; the steps of a longer block past T * M are no-ops)."""
    s = estimator_settings(cfg_miw)
    if s.name == "vpm":
        return min(int(cfg_miw.phased_steps), s.power_iterations * s.inner_steps)
    return int(cfg_miw.phased_steps)


def _clip(s: EstimatorSettings) -> optax.GradientTransformation:
    if s.grad_clip_norm > 0:
        return optax.clip_by_global_norm(s.grad_clip_norm)
    if s.grad_clip_value > 0:
        return optax.clip(s.grad_clip_value)  # torch.nn.utils.clip_grad_value_
    return optax.identity()


def make_w_optimizer(cfg_miw) -> optax.GradientTransformation:
    """w's optimiser: (clip, Adam(lr)) of the estimator (TD-DICE: global norm 1, Adam 1e-6)."""
    s = estimator_settings(cfg_miw)
    return optax.chain(_clip(s), optax.adam(s.lr))


def make_dual_optimizer(cfg_miw) -> optax.GradientTransformation | None:
    """The dual player's optimiser (None for TD-DICE): (clip, Adam) over {"nu", "u"} with a
    learning rate per key; Adam is element-wise, so this is one Adam per player as the authors'."""
    s = estimator_settings(cfg_miw)
    if not s.dual_keys:
        return None
    lrs = {"nu": s.nu_lr, "u": s.u_lr}

    def per_key_lr(updates, params=None):
        del params
        return {k: jax.tree.map(lambda g, lr=lrs[k]: -lr * g, v) for k, v in updates.items()}

    return optax.chain(_clip(s), optax.chain(optax.scale_by_adam(), optax.stateless(per_key_lr)))


def init_dual_params(s: EstimatorSettings, nu_params=None) -> dict:
    """The dual player's parameters: {"nu": nu_params} and/or {"u": u_init} as the estimator uses them."""
    params = {}
    if "nu" in s.dual_keys:
        params["nu"] = nu_params
    if "u" in s.dual_keys:
        params["u"] = jnp.full((), s.u_init, jnp.float32)
    return params


# --- the MIW network's optional output clipping -----------------------------------------------------


class ClippedMIWNet(nn.Module):
    """w(s, a) softly clipped into (w_min, w_max) = (1e-8, 500), no power: the authors'
    `--weight_output_clipping True` head (networks.py:315-316, 330-334; off by default there,
    gan_main.py:76, and here for TD-DICE: miw.output_clipping; on for the ablation estimators, as the
    authors' README runs them: miw.<estimator>.output_clipping). Same parameters as ampl_nets.MIWNet."""

    hidden_dims: Sequence[int] = (400, 300)
    slope: float = 0.01
    last_layer_init: float = 3e-3
    w_min: float = 1e-8
    w_max: float = 500.0
    dtype: Any = jnp.float32  # matmul inputs (networks.MLP)

    @nn.compact
    def __call__(self, obs: jax.Array, act: jax.Array) -> jax.Array:
        x = networks.MLP(self.hidden_dims, 1, self.slope, self.last_layer_init, self.dtype)(
            jnp.concatenate([obs, act], -1))[..., 0]
        x = self.w_max - jax.nn.softplus(self.w_max - x)
        return self.w_min + jax.nn.softplus(x - self.w_min)


def make_miw_net(cfg_miw, hidden_dims: Sequence[int], slope: float, dtype: Any = jnp.float32) -> nn.Module:
    """The MIW network: (softplus(x) + 1e-8)^alpha (default), or the clipped head where the estimator's
    settings say so (`estimator_settings`); `dtype`: matmul inputs."""
    if estimator_settings(cfg_miw).output_clipping:
        return ClippedMIWNet(tuple(hidden_dims), slope, cfg_miw.last_layer_init, dtype=dtype)
    return ampl_nets.MIWNet(tuple(hidden_dims), slope, cfg_miw.alpha, cfg_miw.last_layer_init, dtype)
