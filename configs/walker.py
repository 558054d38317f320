"""Walker2d, D4RL-style medium data (official Minari id; set dataset.id for other qualities).

Horizons per dataset (spec): medium 3, medium-replay 5, medium-expert 5.
"""

from configs import default


def get_config():
    c = default.get_config()
    c.dataset.id = "mujoco/walker2d/medium-v0"
    c.rollout.horizon = 3
    return c
