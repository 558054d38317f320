"""The `compute` config section as JAX objects: matmul input dtypes and the default matmul precision.

Only the inputs of matmuls change: parameters, optimiser states, targets, losses, reductions,
the buffer and every checkpointed array stay float32 (see networks.MLP, ensemble.member_apply).
"""

from __future__ import annotations

import contextlib
import platform
from typing import Any, Iterator

import jax
import jax.numpy as jnp

from ampl_jax.config.validation import COMPUTE_DTYPES

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


def cpu_info(path: str = "/proc/cpuinfo") -> dict[str, Any]:
    """The CPU model and whether it has bfloat16 instructions (x86 flags amx_bf16, avx512_bf16);
    without them XLA runs bfloat16 matmuls by converting to float32, so expect no gain."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                if flags and key.strip() == "":
                    break  # the first processor's block is enough
    except OSError:
        pass
    bf16 = {name: name in flags for name in ("amx_bf16", "avx512_bf16")}
    return {"cpu_model": model, "cpu_bf16_flags": bf16, "cpu_has_bf16": any(bf16.values()),
            "cpu_avx512f": "avx512f" in flags}
