"""Hopper, D4RL-style medium data. Horizons per dataset (spec): medium 1, medium-replay 1, medium-expert 3.

For another quality set both ids and the horizon, e.g. --config.dataset.id=mujoco/hopper/medium-expert-v0
--config.dataset.fallback_id=ampl/hopper/medium-expert-v1 --config.dataset.create_policy=medium-expert.
"""

from ampl_jax.config import defaults as default


def get_config():
    return default.medium_task("Hopper-v5", "hopper", horizon=1)
