"""FIFO model buffer: newest rows kept, invalid rows never written, sampling only filled rows."""

import jax
import jax.numpy as jnp
import numpy as np

from ampl_jax.world_model.buffer import buffer_init, buffer_insert, buffer_sample
from ampl_jax.types import Transitions

OBS, ACT, CAP = 3, 2, 10


def _batch(ids: np.ndarray) -> Transitions:
    """Rows tagged with their id in every field (reward = id)."""
    ids = ids.astype(np.float32)
    return Transitions(
        jnp.asarray(np.repeat(ids[:, None], OBS, 1)),
        jnp.asarray(np.repeat(ids[:, None], ACT, 1)),
        jnp.asarray(ids),
        jnp.asarray(np.repeat(ids[:, None], OBS, 1) + 0.5),
        jnp.asarray(ids % 2),
    )


def _contents_in_order(buf) -> np.ndarray:
    size, pos = int(buf.size), int(buf.position)
    rows = [(pos - size + k) % CAP for k in range(size)]
    return np.asarray(buf.data.rewards)[rows]


def test_fifo_keeps_newest_valid_rows_under_jit():
    rng = np.random.default_rng(0)
    insert = jax.jit(buffer_insert)
    buf = buffer_init(CAP, OBS, ACT)
    expected: list[float] = []
    next_id = 1
    for n in [3, 7, 3, 25, 7, 0, 3, 7]:  # includes a batch larger than the capacity
        ids = np.arange(next_id, next_id + n)
        next_id += n
        valid = rng.random(n) < 0.7
        batch = _batch(ids)
        # invalid rows carry junk (-1) that must never reach the buffer
        batch = jax.tree.map(lambda a: jnp.where(
            jnp.asarray(valid).reshape((-1,) + (1,) * (a.ndim - 1)), a, -1.0), batch)
        buf = insert(buf, batch, jnp.asarray(valid))
        expected += ids[valid].astype(float).tolist()
        newest = expected[-CAP:]
        assert int(buf.size) == len(newest)
        np.testing.assert_array_equal(_contents_in_order(buf), np.asarray(newest, np.float32))
        r = np.asarray(buf.data.rewards)
        assert not (r == -1.0).any()
        assert (r[int(buf.size):] == 0).all() if int(buf.size) < CAP else True
        # every field of a row belongs to the same transition
        d = buf.data
        np.testing.assert_array_equal(np.asarray(d.observations[:, 0]), r)
        np.testing.assert_array_equal(np.asarray(d.actions[:, 1]), r)
        np.testing.assert_array_equal(np.asarray(d.next_observations[:, 2]), r + 0.5 * (r != 0))
    assert len(expected) > 3 * CAP


def test_big_batch_keeps_newest_capacity_rows():
    buf = buffer_init(CAP, OBS, ACT)
    buf = buffer_insert(buf, _batch(np.arange(1, 4)), jnp.ones(3, bool))
    ids = np.arange(100, 130)
    valid = np.ones(30, bool)
    valid[-3:] = False  # the newest valid rows are 100..126
    buf = buffer_insert(buf, _batch(ids), jnp.asarray(valid))
    assert int(buf.size) == CAP and int(buf.position) == (3 + 27) % CAP
    np.testing.assert_array_equal(_contents_in_order(buf), np.arange(117, 127, dtype=np.float32))


def test_sampling_only_from_filled_part():
    buf = buffer_init(1000, OBS, ACT)
    buf = buffer_insert(buf, _batch(np.arange(1, 38)), jnp.ones(37, bool))
    s = jax.jit(buffer_sample, static_argnums=2)(buf, jax.random.PRNGKey(0), 5000)
    r = np.asarray(s.rewards)
    assert r.min() >= 1 and r.max() <= 37
    assert len(np.unique(r)) == 37  # uniform over all filled rows
    np.testing.assert_array_equal(np.asarray(s.observations[:, 0]), r)
