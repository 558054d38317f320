"""HalfCheetah, D4RL-style medium data. Horizons per dataset (spec): medium 1, medium-replay 3, medium-expert 5.

For another quality set both ids and the horizon, e.g. --config.dataset.id=mujoco/halfcheetah/medium-expert-v0
--config.dataset.fallback_id=ampl/halfcheetah/medium-expert-v1 --config.dataset.create_policy=medium-expert.
"""

from ampl_jax.config import defaults as default


def get_config():
    return default.medium_task("HalfCheetah-v5", "halfcheetah", horizon=1)
