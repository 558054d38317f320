"""The `compute` config section as JAX objects: matmul input dtypes and the default matmul precision.

Only the inputs of matmuls change: parameters, optimiser states, targets, losses, reductions,
the buffer and every checkpointed array stay float32 (see networks.MLP, ensemble.member_apply).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import jax
import jax.numpy as jnp

from ampl_jax.configuration import COMPUTE_DTYPES

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
assert set(_DTYPES) == set(COMPUTE_DTYPES)


def dtype(name: str) -> jnp.dtype:
    """'float32' | 'bfloat16' -> the jnp dtype (a config value stays a string, JSON-friendly)."""
    if name not in _DTYPES:
        raise ValueError(f"unknown compute dtype {name!r}: use one of {', '.join(map(repr, COMPUTE_DTYPES))}")
    return jnp.dtype(_DTYPES[name])


@contextlib.contextmanager
def matmul_precision(name: str) -> Iterator[None]:
    """jax.default_matmul_precision(name) for everything traced inside; "default" leaves JAX's own.

    The setting is part of jit's cache key, so programs traced inside compile with it.
    """
    if name == "default":
        yield
        return
    with jax.default_matmul_precision(name):
        yield
