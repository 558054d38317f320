"""ampl-jax: AMPL (Yang et al., NeurIPS 2022) in JAX."""

__version__ = "0.1.0"
