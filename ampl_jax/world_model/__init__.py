"""The learned dynamics P_hat: ensemble, weighted fitting, sampling, rollouts, termination rules."""

from ampl_jax.world_model.ensemble import ModelState, init_model_state
from ampl_jax.world_model.fit import fit
from ampl_jax.world_model.rollout import predict, rollout
from ampl_jax.world_model.termination import termination_fn

__all__ = ["ModelState", "init_model_state", "fit", "predict", "rollout", "termination_fn"]
