"""Gaussian dynamics ensemble P_hat: M independent MLPs held as ONE stacked pytree.

Every leaf has a leading member axis [M, ...]; one member's forward pass is vmapped over it, so
the ensemble is a few batched matmuls and never a Python loop over members. Inputs (s, a) and
targets (r~, s' - s) are standardised with statistics of the offline dataset, fixed at init.

Mixed precision (`compute.model_dtype`): `dtype` arguments set the matmul inputs' dtype; the
sums are float32 (preferred_element_type) and so is everything else: params, Adam, losses.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import optax

from ampl_jax.types import Transitions

Params = dict[str, Any]


class Normalizer(NamedTuple):
    """Per-dimension affine standardisation x -> (x - mean) / std."""

    mean: jax.Array
    std: jax.Array

    def __call__(self, x: jax.Array) -> jax.Array:
        return (x - self.mean) / self.std

    def inverse(self, x: jax.Array) -> jax.Array:
        return x * self.std + self.mean


def fit_normalizer(x: jax.Array, min_std: float = 1e-6) -> Normalizer:
    """Mean/std over the leading axis; near-constant dimensions keep std 1 (no blow-up)."""
    mean = jnp.mean(x, axis=0)
    std = jnp.std(x, axis=0)
    return Normalizer(mean, jnp.where(std < min_std, 1.0, std))


class ModelState(flax.struct.PyTreeNode):
    """Everything a (warm-started) refit and a rollout need; a pytree, so it can enter jit.

    params["max_logstd"] / params["min_logstd"] are ONE pair of log-std bounds shared by all
    members, as in the authors' ensemble (one [1, out] parameter each). They are stored
    replicated, [M, out] with identical rows, so that every member's slice p[m] (and every
    elite gather p[elites]) is a self-contained member; training keeps the rows identical
    (`tie_shared_bounds`: every row receives the summed gradient, so Adam moves them alike).
    """

    params: Params  # stacked over members: every leaf [M, ...]
    opt_state: optax.OptState  # Adam state of `params`, kept across refits (warm start)
    input_norm: Normalizer  # over concat(s, a)
    target_norm: Normalizer  # over concat(r~, s' - s)
    elites: jax.Array  # int32 [num_elites], member indices, best holdout loss first
    holdout_losses: jax.Array  # float32 [M], of the last fit (inf before any fit)
    num_fits: jax.Array  # int32 scalar, completed calls of `fit`

    @property
    def num_members(self) -> int:
        return int(self.holdout_losses.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.target_norm.mean.shape[-1]) - 1


# --------------------------------------------------------------------------------------------
# one member (vmapped over the member axis by the callers)


def _init_member(key: jax.Array, in_dim: int, out_dim: int, hidden: Sequence[int],
                 max_logstd: float, min_logstd: float) -> Params:
    """The authors' ensemble initialisation: weights fmod(N(0, 1), 2) / (2 sqrt(fan_in)), biases 0.

    fmod folds a standard normal into (-2, 2) (their "approximation to truncated normal of 2
    stds", dynamic_models/parallelized_ensemble.py:27-28); the bias starts at 0 (line 32).
    """
    dims = [in_dim, *hidden]
    keys = jax.random.split(key, len(hidden) + 1)

    def dense(k, fan_in, fan_out):
        w = jnp.fmod(jax.random.normal(k, (fan_in, fan_out), jnp.float32), 2.0) / (2.0 * fan_in**0.5)
        return {"w": w.astype(jnp.float32), "b": jnp.zeros((fan_out,), jnp.float32)}

    return {
        "hidden": [dense(keys[i], dims[i], dims[i + 1]) for i in range(len(hidden))],
        # one head for [mean, raw log-std]: the same as two heads with the same decay
        "head": dense(keys[-1], dims[-1], 2 * out_dim),
        "max_logstd": jnp.full((out_dim,), max_logstd, jnp.float32),
        "min_logstd": jnp.full((out_dim,), min_logstd, jnp.float32),
    }


def _matmul(h: jax.Array, w: jax.Array, dtype: Any) -> jax.Array:
    """h @ w with both operands in `dtype`, summed and returned in float32 (plain h @ w for float32)."""
    if jnp.dtype(dtype) == jnp.float32:
        return h @ w
    return jnp.matmul(h.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)


def member_apply(p: Params, x: jax.Array, dtype: Any = jnp.float32) -> tuple[jax.Array, jax.Array]:
    """One member on standardised inputs x [..., in] -> (mean, log-std) [..., out], float32.

    `dtype`: the matmuls' input dtype (compute.model_dtype); biases, activations and the log-std
    clamp stay float32.
    """
    h = x
    for layer in p["hidden"]:
        h = jax.nn.silu(_matmul(h, layer["w"], dtype) + layer["b"])
    out = _matmul(h, p["head"]["w"], dtype) + p["head"]["b"]
    mean, raw = jnp.split(out, 2, axis=-1)
    # soft clamp between learnable bounds (PETS/MBPO): smooth, keeps gradients to the bounds
    logstd = p["max_logstd"] - jax.nn.softplus(p["max_logstd"] - raw)
    logstd = p["min_logstd"] + jax.nn.softplus(logstd - p["min_logstd"])
    return mean, logstd


def gaussian_nll(mean: jax.Array, logstd: jax.Array, y: jax.Array) -> jax.Array:
    """Per-sample Gaussian NLL (up to constants and a factor 1/2), averaged over dims: [B]."""
    return jnp.mean(jnp.square(mean - y) * jnp.exp(-2.0 * logstd) + 2.0 * logstd, axis=-1)


def weight_decay_penalty(p: Params, decays: Sequence[float], head_decay: float) -> jax.Array:
    """sum_l decay_l * (|W_l|^2 + |b_l|^2) over the hidden layers and the head; not the log-std bounds.

    Kernels and biases alike, as the authors' per-layer Adam weight_decay (which adds
    decay * param to the gradient, the gradient of this penalty / 2) covers each layer's
    `parameters()`, W and b (dynamic_models/model_trainer.py:63-72).
    """
    layers = [*zip(decays, p["hidden"]), (head_decay, p["head"])]
    return sum(d * (jnp.sum(jnp.square(l["w"])) + jnp.sum(jnp.square(l["b"]))) for d, l in layers)


def member_loss(p: Params, x: jax.Array, y: jax.Array, w: jax.Array,
                decays: Sequence[float], head_decay: float, dtype: Any = jnp.float32) -> jax.Array:
    """mean_b w_b NLL_b + L2 weight decay / 2: one member's loss (the shared bounds' term is
    added once for the whole ensemble, `ensemble_loss`).

    With w == 1 this is exactly the plain MLE loss (multiplying by 1.0 is exact in floating point).
    """
    mean, logstd = member_apply(p, x, dtype)
    nll = jnp.mean(w * gaussian_nll(mean, logstd, y))
    return nll + weight_decay_penalty(p, decays, head_decay) / 2.0


def bound_loss(params: Params, coef: float) -> jax.Array:
    """coef * (sum max_logstd - sum min_logstd) of the ONE shared pair of bounds (row 0 of the
    replicated leaves): added once to the summed ensemble loss. The authors' term is
    0.01 * sum(2 max) - 0.01 * sum(2 min), i.e. coef = 0.02
    (dynamic_models/probabilistic_ensemble.py:101-105)."""
    return coef * (jnp.sum(params["max_logstd"][0]) - jnp.sum(params["min_logstd"][0]))


def ensemble_loss(params: Params, x: jax.Array, y: jax.Array, w: jax.Array,
                  decays: Sequence[float], head_decay: float, bound_coef: float, dtype: Any = jnp.float32):
    """sum_m member_loss_m + bound_loss: the authors' training loss. x [M, B, in], y [M, B, out],
    w [M, B] (each member its own minibatch). Returns (total, per-member losses [M])."""
    losses = jax.vmap(lambda p, xm, ym, wm: member_loss(p, xm, ym, wm, decays, head_decay, dtype))(params, x, y, w)
    return jnp.sum(losses) + bound_loss(params, bound_coef), losses


SHARED_KEYS = ("max_logstd", "min_logstd")


def tie_shared_bounds(grads: Params) -> Params:
    """Every row of the shared bounds gets the sum of the rows' gradients: the gradient of the one
    shared parameter (its use by every member, plus the bound term). Identical rows with
    identical gradients stay identical under Adam, so the pair stays shared."""
    tied = {k: jnp.broadcast_to(jnp.sum(grads[k], axis=0, keepdims=True), grads[k].shape) for k in SHARED_KEYS}
    return {**grads, **tied}


def ensemble_apply(params: Params, x: jax.Array, dtype: Any = jnp.float32) -> tuple[jax.Array, jax.Array]:
    """All members on the same inputs x [B, in] -> [M, B, out] each."""
    return jax.vmap(lambda p: member_apply(p, x, dtype))(params)


def make_optimizer(learning_rate: float) -> optax.GradientTransformation:
    """Adam over the stacked params: element-wise, so each member has its own moments."""
    return optax.adam(float(learning_rate))


def init_model_state(key: jax.Array, data: Transitions, cfg_model) -> ModelState:
    """Fresh ensemble; normalisers from the whole dataset (it never changes during a run)."""
    obs = jnp.asarray(data.observations, jnp.float32)
    act = jnp.asarray(data.actions, jnp.float32)
    inputs = jnp.concatenate([obs, act], axis=-1)
    targets = make_targets(data)
    in_dim, out_dim = inputs.shape[-1], targets.shape[-1]
    m = int(cfg_model.num_members)
    keys = jax.random.split(key, m)
    params = jax.vmap(
        lambda k: _init_member(k, in_dim, out_dim, tuple(cfg_model.hidden_dims),
                               float(cfg_model.max_logstd_init), float(cfg_model.min_logstd_init))
    )(keys)
    return ModelState(
        params=params,
        opt_state=make_optimizer(cfg_model.learning_rate).init(params),
        input_norm=fit_normalizer(inputs),
        target_norm=fit_normalizer(targets),
        elites=jnp.arange(int(cfg_model.num_elites), dtype=jnp.int32),
        holdout_losses=jnp.full((m,), jnp.inf, jnp.float32),
        num_fits=jnp.zeros((), jnp.int32),
    )


def make_targets(data: Transitions) -> jax.Array:
    """Regression target [N, 1 + obs_dim] = (r~, s' - s)."""
    obs = jnp.asarray(data.observations, jnp.float32)
    nobs = jnp.asarray(data.next_observations, jnp.float32)
    rew = jnp.asarray(data.rewards, jnp.float32)
    return jnp.concatenate([rew[:, None], nobs - obs], axis=-1)
