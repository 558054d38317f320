"""Fixed-size FIFO of model transitions, a pytree usable inside jit.

Rows are written at a moving index with wrap-around (never `concat([buf[:-n], new])`, which keeps
the oldest rows), only the valid rows of a batch are written, and sampling only sees the filled part.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from ampl_jax.types import Transitions


class Buffer(flax.struct.PyTreeNode):
    data: Transitions  # capacity rows
    position: jax.Array  # int32: next row to write
    size: jax.Array  # int32: number of filled rows (<= capacity)

    @property
    def capacity(self) -> int:
        return int(self.data.rewards.shape[0])


def buffer_init(capacity: int, obs_dim: int, act_dim: int) -> Buffer:
    z = jnp.zeros
    data = Transitions(
        z((capacity, obs_dim), jnp.float32),
        z((capacity, act_dim), jnp.float32),
        z((capacity,), jnp.float32),
        z((capacity, obs_dim), jnp.float32),
        z((capacity,), jnp.float32),
    )
    return Buffer(data=data, position=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def buffer_insert(buf: Buffer, batch: Transitions, valid: jax.Array) -> Buffer:
    """Append the valid rows of `batch` (their order kept) after the newest rows, FIFO.

    Invalid rows are scattered to an out-of-bounds index and dropped, so they overwrite nothing.
    When more than `capacity` rows are valid, only the newest `capacity` of them are kept.
    """
    cap = buf.capacity
    valid = jnp.asarray(valid, bool).reshape(-1)
    n = valid.shape[0]
    order = jnp.argsort(~valid, stable=True)  # valid rows first, in their original order
    n_valid = jnp.sum(valid, dtype=jnp.int32)
    j = jnp.arange(n, dtype=jnp.int32)
    # rows older than the newest `cap` valid ones would be overwritten in the same scatter:
    # drop them too, so no index is written twice.
    keep = (j < n_valid) & (j >= n_valid - cap)
    dest = jnp.where(keep, (buf.position + j) % cap, cap)  # cap = out of bounds -> dropped

    def put(store, rows):
        return store.at[dest].set(rows[order].astype(store.dtype), mode="drop")

    data = jax.tree.map(put, buf.data, batch)
    return Buffer(
        data=data,
        position=((buf.position + n_valid) % cap).astype(jnp.int32),
        size=jnp.minimum(buf.size + n_valid, cap).astype(jnp.int32),
    )


def buffer_sample(buf: Buffer, key: jax.Array, n: int) -> Transitions:
    """n rows uniformly (with replacement) from the filled part. An empty buffer returns row 0."""
    idx = jax.random.randint(key, (n,), 0, jnp.maximum(buf.size, 1))
    return jax.tree.map(lambda a: a[idx], buf.data)
