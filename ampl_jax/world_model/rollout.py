"""Sampling from the ensemble and short model rollouts of the current policy (MBPO style)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ampl_jax.types import Transitions
from ampl_jax.world_model.ensemble import ModelState, ensemble_apply, member_apply

PolicyFn = Callable[[jax.Array, jax.Array], jax.Array]
TerminationFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def _elite_outputs_iid(elite_params, x: jax.Array, key: jax.Array, dtype: Any):
    """Every elite on every input, then one uniformly drawn elite per input (exact, E x cost)."""
    num_elites = jax.tree.leaves(elite_params)[0].shape[0]
    mean, logstd = ensemble_apply(elite_params, x, dtype)  # [E, B, D]
    choice = jax.random.randint(key, (x.shape[0],), 0, num_elites)
    rows = jnp.arange(x.shape[0])
    return mean[choice, rows], logstd[choice, rows]


def _elite_outputs_balanced(elite_params, x: jax.Array, key: jax.Array, dtype: Any):
    """A random balanced split of the batch over the elites (1 x cost).

    Each input's elite is still uniform over the elites, but the draws are not independent
    across inputs (every elite gets ceil(B / E) inputs of a padded batch).
    """
    num_elites = jax.tree.leaves(elite_params)[0].shape[0]
    b = x.shape[0]
    per = -(-b // num_elites)
    padded = jnp.concatenate([x, jnp.zeros((per * num_elites - b, x.shape[1]), x.dtype)])
    perm = jax.random.permutation(key, per * num_elites)
    groups = padded[perm].reshape(num_elites, per, x.shape[1])
    mean, logstd = jax.vmap(lambda p, g: member_apply(p, g, dtype))(elite_params, groups)  # [E, per, D]
    inv = jnp.argsort(perm)
    mean = mean.reshape(per * num_elites, -1)[inv][:b]
    logstd = logstd.reshape(per * num_elites, -1)[inv][:b]
    return mean, logstd


def predict(
    state: ModelState,
    key: jax.Array,
    obs: jax.Array,
    act: jax.Array,
    *,
    deterministic: bool = False,
    elite_sampling: str = "iid",
    dtype: Any = jnp.float32,
) -> tuple[jax.Array, jax.Array]:
    """Sample (s', r~) for a batch [B] of (s, a): a random elite per input, a Gaussian sample.

    deterministic=True returns the chosen elite's mean. elite_sampling: "iid" (an independent
    uniform elite per input, as the authors' code) or "balanced" (see _elite_outputs_balanced).
    The reward is in the scaled reward space the model was fitted on. `dtype`: the ensemble's
    matmul input dtype (compute.model_dtype); the outputs are float32.
    """
    k_member, k_noise = jax.random.split(key)
    x = state.input_norm(jnp.concatenate([obs, act], axis=-1))
    elite_params = jax.tree.map(lambda p: p[state.elites], state.params)
    if elite_sampling == "iid":
        mean, logstd = _elite_outputs_iid(elite_params, x, k_member, dtype)
    elif elite_sampling == "balanced":
        mean, logstd = _elite_outputs_balanced(elite_params, x, k_member, dtype)
    else:
        raise ValueError(f"predict: unknown elite_sampling {elite_sampling!r}")
    if deterministic:
        sample = mean
    else:
        sample = mean + jnp.exp(logstd) * jax.random.normal(k_noise, mean.shape, mean.dtype)
    y = state.target_norm.inverse(sample)
    return obs + y[:, 1:], y[:, 0]


def rollout(
    key: jax.Array,
    state: ModelState,
    policy_fn: PolicyFn,
    start_obs: jax.Array,
    horizon: int,
    termination_fn: TerminationFn,
    obs_range: jax.Array,
    reward_bound: float | jax.Array,
    *,
    deterministic: bool = False,
    elite_sampling: str = "iid",
    dtype: Any = jnp.float32,
) -> tuple[Transitions, jax.Array]:
    """`horizon` model steps of `policy_fn` from every start state; jittable (horizon static).

    policy_fn(key, obs [B, obs_dim]) -> actions [B, act_dim] is called on the whole batch, so each
    rollout gets its own action. A transition is done if the env rule says so, or any
    |s'_i| > obs_range_i, or |r| > reward_bound (these two also set r = -reward_bound; a non-finite
    s' or r counts as out of range). Returns transitions and a valid mask flattened to [h * B],
    step-major; a rollout's steps after its first done are invalid.
    """
    obs_range = jnp.asarray(obs_range, jnp.float32)
    reward_bound = jnp.asarray(reward_bound, jnp.float32)

    def step(carry, k):
        obs, alive = carry
        k_pi, k_model = jax.random.split(k)
        act = policy_fn(k_pi, obs)
        next_obs, rew = predict(state, k_model, obs, act, deterministic=deterministic,
                                elite_sampling=elite_sampling, dtype=dtype)
        # written as "not within" so that NaN counts as out of range
        out_of_range = ~jnp.all(jnp.abs(next_obs) <= obs_range, axis=-1)
        bad_reward = ~(jnp.abs(rew) <= reward_bound)
        penalised = out_of_range | bad_reward
        rew = jnp.where(penalised, -reward_bound, rew)
        done = termination_fn(obs, act, next_obs) | penalised
        # Stored rows are finite: a non-finite coordinate of s' (already done above) reads as s's,
        # as the authors zero non-finite model outputs, so no 0 * NaN can reach a loss.
        next_obs = jnp.where(jnp.isfinite(next_obs), next_obs, obs)
        tr = Transitions(obs, act, rew, next_obs, done.astype(jnp.float32))
        return (next_obs, alive & ~done), (tr, alive)

    alive0 = jnp.ones(start_obs.shape[:1], bool)
    keys = jax.random.split(key, horizon)
    _, (trs, valid) = jax.lax.scan(step, (start_obs, alive0), keys)
    flat = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), trs)
    return flat, valid.reshape(-1)
