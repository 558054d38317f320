"""What AMPL's learning looks like from the inside, logged beside every evaluation.

Issue 14 asks why AMPL collapses at small budgets; these are the instruments: the critic's
value of the policy's actions against the data's (over-estimation shows as a growing gap), how
far the policy's actions are from the logged ones, how well the discriminator separates the two,
and the world model's one-step error on the states the policy itself visits in the real env
against its error on the data's (a model that is only right on the data misleads the critic).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ampl_jax.methods.ampl import discriminator as disc_lib
from ampl_jax.methods.ampl.state import Agent, TrainState
from ampl_jax.types import OfflineData
from ampl_jax.world_model.ensemble import member_apply

DIAG_BATCH = 1024
RECORD = 2000  # real policy transitions kept from each evaluation


def _model_mean_next(model, obs: jax.Array, act: jax.Array) -> jax.Array:
    """s' of the elites' mean prediction (no sampling): the model's best guess."""
    x = model.input_norm(jnp.concatenate([obs, act], axis=-1))
    elite_params = jax.tree.map(lambda p: p[model.elites], model.params)
    mean, _ = jax.vmap(member_apply, in_axes=(0, None))(elite_params, x)
    y = model.target_norm.inverse(jnp.mean(mean, axis=0))
    return obs + y[:, 1:]


def make_diagnostics(agent: Agent) -> Callable[..., dict[str, float]]:
    """diagnostics(state, data, key, (obs, act, next_obs) of real policy steps or None) -> floats."""

    @jax.jit
    def on_data(state: TrainState, data: OfflineData, key: jax.Array):
        k_idx, k_pi, k_fake = jax.random.split(key, 3)
        idx = data.indices(k_idx, DIAG_BATCH)
        obs, act, nxt = data.observations[idx], data.actions[idx], data.next_observations[idx]
        pi, raw_pi = agent.act(state.actor, k_pi, obs)
        q_pi = jnp.min(agent.critic.apply(state.critic, obs, pi), axis=0)
        q_data = jnp.min(agent.critic.apply(state.critic, obs, act), axis=0)
        d_true = agent.disc.apply(state.disc, obs, disc_lib.action_to_raw(act, agent.max_action))
        d_fake = agent.disc.apply(state.disc, obs, raw_pi)
        err = jnp.mean((_model_mean_next(state.model, obs, act) - nxt) ** 2)
        return {
            "diag_q_policy": jnp.mean(q_pi),
            "diag_q_data": jnp.mean(q_data),
            "diag_action_mse": jnp.mean((pi - act) ** 2),
            "diag_disc_acc": 0.5 * (jnp.mean(d_true > 0) + jnp.mean(d_fake < 0)),
            "diag_model_err_data": err,
        }

    @jax.jit
    def on_policy(model, obs: jax.Array, act: jax.Array, nxt: jax.Array, mask: jax.Array):
        per_row = jnp.mean((_model_mean_next(model, obs, act) - nxt) ** 2, axis=-1)
        return jnp.sum(jnp.where(mask, per_row, 0.0)) / jnp.maximum(jnp.sum(mask), 1)

    def diagnostics(state: TrainState, data: OfflineData, key: jax.Array, real=None) -> dict[str, float]:
        out = {k: float(v) for k, v in jax.device_get(on_data(state, data, key)).items()}
        out["diag_model_err_policy"] = float("nan")
        if real is not None and len(real[0]):  # padded to RECORD rows: one compiled shape
            n = min(len(real[0]), RECORD)
            padded = [np.zeros((RECORD,) + x.shape[1:], np.float32) for x in real]
            for p, x in zip(padded, real):
                p[:n] = x[:n]
            out["diag_model_err_policy"] = float(on_policy(state.model, *padded, np.arange(RECORD) < n))
        return out

    return diagnostics


DIAG_COLUMNS = ("diag_q_policy", "diag_q_data", "diag_action_mse", "diag_disc_acc", "diag_model_err_data",
                "diag_model_err_policy")

__all__ = ["DIAG_COLUMNS", "make_diagnostics"]
