"""Walker2d, D4RL-style medium data (official Minari id; set dataset.id for other qualities).

Horizons per dataset (spec): medium 3, medium-replay 5, medium-expert 5.
"""

from configs import default


def get_config():
    c = default.get_config()
    c.dataset.id = "mujoco/walker2d/medium-v0"  # official Minari id (--config.dataset.download=True)
    # Offline: ampl-jax's own medium dataset, made on first use from the shipped SAC policy.
    c.dataset.fallback_id = "ampl/walker2d/medium-v0"
    c.dataset.create_if_missing = True
    c.dataset.create_env = "Walker2d-v5"
    c.dataset.create_policy = "medium"
    c.dataset.create_steps = 1_000_000
    c.rollout.horizon = 3
    return c
