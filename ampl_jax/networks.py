"""The networks every method shares: one copy for AMPL, MOPO, TD3+BC and the behaviour-policy SAC.

The MLP (its activation and initialisation chosen per caller: LeakyReLU(0.01) and PyTorch's init
for AMPL, as the authors), the tanh-Gaussian head (`gaussian_head`, `sample_tanh_gaussian`,
`TanhGaussianActor`: SAC's policy, and AMPL's policy-class ablation) and the twin critic, one
`nn.vmap`-ed MLP so both heads run as one batched matmul. AMPL's own networks (implicit actor,
discriminator, MIW net) are in `methods/ampl/networks.py`.

Mixed precision (`compute.dtype`): every module takes a `dtype` for its matmuls' inputs; the
parameters stay float32 (Flax's param_dtype) and the outputs are float32 (see MLP).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Params = Any


def _uniform(scale: float) -> Callable:
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


def _torch_linear_init(fan_in: int) -> tuple[Callable, Callable]:
    """PyTorch's nn.Linear default, as the authors' networks: kernel and bias ~ U(+-1/sqrt(fan_in))."""
    bound = 1.0 / float(fan_in) ** 0.5
    return _uniform(bound), _uniform(bound)


def _flax_default_init(fan_in: int) -> tuple[Callable, Callable]:
    """nn.Dense's own default (LeCun normal kernel, zero bias): the behaviour SAC's networks."""
    del fan_in
    return nn.initializers.lecun_normal(), nn.initializers.zeros


_INITS = {"torch": _torch_linear_init, "flax": _flax_default_init}


def _matmul_operands_only(inputs, kernel, bias, *, dtype=None, inexact=True):
    """Flax `promote_dtype` of a float32-output layer: inputs and kernel in `dtype`, the bias kept
    float32, since it is added to the float32 sum rather than rounded to `dtype` first."""
    del inexact
    return jnp.asarray(inputs, dtype), jnp.asarray(kernel, dtype), bias


_FLOAT32_SUM = functools.partial(jax.lax.dot_general, preferred_element_type=jnp.float32)


def _float32_output(dtype: Any) -> dict:
    """nn.Dense hooks that keep a `dtype` layer's output float32 ({} when dtype is float32 already)."""
    if jnp.dtype(dtype) == jnp.float32:
        return {}
    return {"promote_dtype": _matmul_operands_only, "dot_general": _FLOAT32_SUM}


class MLP(nn.Module):
    """LeakyReLU MLP initialised as PyTorch's nn.Linear (the authors' networks).

    `dtype` is the matmul input dtype (Flax's nn.Dense dtype; the parameters stay float32). With
    bfloat16 the hidden layers compute in bfloat16, but the last layer sums in float32 and adds its
    bias in float32, so its output (a Q value, a logit, w before its squashing) is not rounded to
    8 mantissa bits before it reaches a loss.

    `slope=None` is plain ReLU and `weight_init="flax"` nn.Dense's default initialisation: the behaviour
    SAC's networks. (ReLU is not LeakyReLU(0): their gradients differ at exactly 0.)
    """

    hidden_dims: Sequence[int]
    out_dim: int
    slope: float | None = 0.01
    final_init_scale: float | None = None  # last layer: weights U(+-scale), bias 0 (the authors' MIW net)
    dtype: Any = jnp.float32
    weight_init: str = "torch"  # "torch" (PyTorch's nn.Linear default) or "flax" (nn.Dense's default)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
        layer_init = _INITS[self.weight_init]
        for h in self.hidden_dims:
            k_init, b_init = layer_init(x.shape[-1])
            x = dense(h, kernel_init=k_init, bias_init=b_init)(x)
            x = nn.relu(x) if self.slope is None else nn.leaky_relu(x, self.slope)
        if self.final_init_scale is None:
            k_init, b_init = layer_init(x.shape[-1])
        else:
            k_init, b_init = _uniform(self.final_init_scale), nn.initializers.zeros
        out = dense(self.out_dim, kernel_init=k_init, bias_init=b_init, **_float32_output(self.dtype))(x)
        return out.astype(jnp.float32)


def dense_layers(mlp_params: Params) -> list[tuple[Any, Any]]:
    """(kernel, bias) of each layer of an `MLP`, input to output (from its variables or their "params")."""
    p = mlp_params["params"] if "params" in mlp_params else mlp_params
    names = sorted(p, key=lambda n: int(n.split("_")[-1]))  # Flax names them Dense_0, Dense_1, ...
    return [(p[n]["kernel"], p[n]["bias"]) for n in names]


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # the usual SAC bounds of the pre-tanh log std
# The authors' GaussianPolicy (networks.py: LOG_SIG_MIN, LOG_SIG_MAX, torch.clamp) and softlearning's
# (MOPO's; SCALE_DIAG_MIN_MAX, tf.clip_by_value): a hard clamp of the log std into [-20, 2].
CLAMPED_LOG_STD = (-20.0, 2.0)


def gaussian_head(
    out: jax.Array, log_std_min: float = LOG_STD_MIN, log_std_max: float = LOG_STD_MAX, clamp: bool = False
) -> tuple[jax.Array, jax.Array]:
    """An MLP's 2 * act_dim outputs as (mean, log_std) of the pre-tanh Gaussian; log_std squashed
    smoothly (tanh) into [log_std_min, log_std_max] rather than clipped, so it keeps a gradient, or
    with `clamp` clipped into it (no gradient outside), as torch.clamp / tf.clip_by_value."""
    mean, raw_log_std = jnp.split(out, 2, axis=-1)
    if clamp:
        return mean, jnp.clip(raw_log_std, log_std_min, log_std_max)
    log_std = log_std_min + 0.5 * (log_std_max - log_std_min) * (jnp.tanh(raw_log_std) + 1.0)
    return mean, log_std


def sample_tanh_gaussian(
    mean: jax.Array, log_std: jax.Array, eps: jax.Array, max_action: float = 1.0
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Reparameterised a = max_action * tanh(u), u = mean + std * eps with eps ~ N(0, 1).

    Returns (a, u, log pi(a)), the density by the change of variables.
    """
    u = mean + jnp.exp(log_std) * eps
    log_prob = jnp.sum(-0.5 * jnp.square(eps) - log_std - 0.5 * math.log(2.0 * math.pi), axis=-1)
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
    log_prob = log_prob - jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)
    log_prob = log_prob - mean.shape[-1] * math.log(max_action)
    return max_action * jnp.tanh(u), u, log_prob


class TanhGaussianActor(nn.Module):
    """A squashed Gaussian policy, pi(s) = max_action * tanh(mu(s) + sigma(s) * eps): MOPO's actor and
    AMPL's policy-class ablation (`agent.policy="tanh_gaussian"`).

    `distribution(obs)` gives (mean, log_std), from which MOPO samples and scores actions. The call
    `(obs, noise)` is ImplicitActor's convention, so AMPL's callers are shared: `noise` is the
    standard-normal eps [B, act_dim] (see Agent.noise), and the pre-tanh sample is returned as the
    raw action for the discriminator. In AMPL there is no entropy bonus: the JSD regulariser matches
    the data's (s, raw a) distribution, spread included, and is what keeps sigma from collapsing
    (with `agent.regularizer="none"` nothing does).

    `clamp_log_std`: the log std is clamped into [log_std_min, log_std_max] (the authors' and
    softlearning's [-20, 2], `CLAMPED_LOG_STD`) instead of squashed smoothly (the default, which the
    behaviour SAC's snapshots were trained with).
    """

    act_dim: int
    max_action: float = 1.0
    hidden_dims: Sequence[int] = (400, 300)
    slope: float = 0.01
    log_std_min: float = LOG_STD_MIN
    log_std_max: float = LOG_STD_MAX
    dtype: Any = jnp.float32
    clamp_log_std: bool = False

    @nn.compact
    def distribution(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(tuple(self.hidden_dims), 2 * self.act_dim, self.slope, dtype=self.dtype)(obs)
        return gaussian_head(out, self.log_std_min, self.log_std_max, self.clamp_log_std)

    def __call__(self, obs: jax.Array, noise: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, log_std = self.distribution(obs)
        action, raw, _ = sample_tanh_gaussian(mean, log_std, noise, self.max_action)
        return action, raw


TWIN_HEADS = "VmapMLP_0"  # the name Flax gave the vmapped heads, kept: it seeds their initial values


class TwinCritic(nn.Module):
    """`num_heads` independent Q(s, a) MLPs as one `nn.vmap`-ed MLP; output [num_heads, ...batch].

    `slope` and `weight_init` as MLP's. `heads_name` names the heads' parameters; Flax derives their
    initial values from it, so each caller keeps the name its heads had (the behaviour SAC's
    checkpoints use "Vmap_QNet_0"). One head alone: `first_head`, `q1`.
    """

    hidden_dims: Sequence[int] = (400, 300)
    slope: float | None = 0.01
    num_heads: int = 2
    dtype: Any = jnp.float32
    weight_init: str = "torch"
    heads_name: str = TWIN_HEADS

    @nn.compact
    def __call__(self, obs: jax.Array, act: jax.Array) -> jax.Array:
        heads = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_heads,
        )(tuple(self.hidden_dims), 1, self.slope, dtype=self.dtype, weight_init=self.weight_init, name=self.heads_name)
        return heads(jnp.concatenate([obs, act], -1))[..., 0]


def first_head(critic: TwinCritic, critic_params: Params) -> tuple[MLP, Params]:
    """Head 0 alone: its module and its variables, as a standalone MLP (input [s, a])."""
    head = MLP(tuple(critic.hidden_dims), 1, critic.slope, dtype=critic.dtype, weight_init=critic.weight_init)
    return head, {"params": jax.tree.map(lambda p: p[0], critic_params["params"][critic.heads_name])}


def q1(critic: TwinCritic, critic_params: Params, obs: jax.Array, act: jax.Array) -> jax.Array:
    """Head 0's Q(s, a) [batch] without running the other heads."""
    head, variables = first_head(critic, critic_params)
    return head.apply(variables, jnp.concatenate([obs, act], -1))[..., 0]
