"""Hopper, D4RL-style medium data. Horizons per dataset (spec): medium 1, medium-replay 1, medium-expert 3."""

from configs import default


def get_config():
    c = default.get_config()
    c.dataset.id = "mujoco/hopper/medium-v0"
    c.rollout.horizon = 1
    return c
