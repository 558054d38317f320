"""HalfCheetah, D4RL-style medium data. Horizons per dataset (spec): medium 1, medium-replay 3, medium-expert 5."""

from configs import default


def get_config():
    c = default.get_config()
    c.dataset.id = "mujoco/halfcheetah/medium-v0"  # official Minari id (--config.dataset.download=True)
    # Offline: ampl-jax's own medium dataset, made on first use from the shipped SAC policy.
    c.dataset.fallback_id = "ampl/halfcheetah/medium-v0"
    c.dataset.create_if_missing = True
    c.dataset.create_env = "HalfCheetah-v5"
    c.dataset.create_policy = "medium"
    c.dataset.create_steps = 1_000_000
    c.rollout.horizon = 1
    return c
