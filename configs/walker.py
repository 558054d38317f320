"""Walker2d, D4RL-style medium data. Horizons per dataset (spec): medium 3, medium-replay 5, medium-expert 5.

For another quality set both ids and the horizon, e.g. --config.dataset.id=mujoco/walker2d/medium-expert-v0
--config.dataset.fallback_id=ampl/walker2d/medium-expert-v1 --config.dataset.create_policy=medium-expert.
"""

from ampl_jax.config import defaults as default


def get_config():
    return default.medium_task("Walker2d-v5", "walker2d", horizon=3)
