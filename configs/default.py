"""The default config (it lives in the package: ampl_jax/config/defaults.py); for
`--config=configs/default.py` and for configs that import `configs.default`."""

from ampl_jax.config.defaults import cpu_budget, get_config, medium_task

__all__ = ["cpu_budget", "get_config", "medium_task"]
