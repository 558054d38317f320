"""The first model fit saves its progress and resumes bit for bit (issue #29: with the paper's
early stopping on 2M transitions it runs for hours), and a run can start from another run's
finished first fit (NW beside AMPL)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ampl_jax import checkpoint
from ampl_jax.config import validation as configuration
from ampl_jax.distributed import stack_seeds
from ampl_jax.runtime import SeedRuntime
from ampl_jax.train import first_fit_checkpoint
from ampl_jax.world_model.fit import FitCheckpoint, FitCheckpointError, fit_seeds, init_model_state
from tests import tiny_config
from tests.world_model.test_world_model import _cfg, _two_regimes


class _Stop(Exception):
    """Stands for the process being killed right after a save."""


class _Store:
    """An in-memory FitCheckpoint that can 'die' after the save of a given epoch."""

    def __init__(self, identity=None, stop_at=None):
        self.saved, self.saves, self.stop_at, self.identity = None, 0, stop_at, identity or {"data": "two regimes"}

    def checkpoint(self, every_seconds=0.0) -> FitCheckpoint:
        def meta():
            return None if self.saved is None else json.loads(self.saved[1])

        def load(target):
            carry = self.saved[0]
            jax.tree.map(lambda a, b: None if a.shape == b.shape else pytest.fail("shape"), target, carry)
            return jax.tree.map(jnp.asarray, carry)

        def save(epoch, carry, meta):
            self.saved = (jax.device_get(carry), json.dumps(meta))  # what orbax and the JSON sidecar keep
            self.saves += 1
            if epoch == self.stop_at:
                raise _Stop

        return FitCheckpoint(meta, load, save, every_seconds, self.identity)


@pytest.fixture(scope="module")
def data():
    return _two_regimes(n=1000)[0]


def _fit(data, cfg, num_seeds, ckpt=None):
    keys = [jax.random.PRNGKey(10 + s) for s in range(num_seeds)]
    states = stack_seeds([init_model_state(jax.random.PRNGKey(s), data, cfg) for s in range(num_seeds)])
    return fit_seeds(states, jnp.stack(keys), data, None, cfg, batching="map", checkpoint=ckpt)


def _assert_identical(a, b):
    (sa, ia), (sb, ib) = a, b
    for x, y in zip(jax.tree.leaves(sa), jax.tree.leaves(sb)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for da, db in zip(ia, ib):
        assert da["epochs"] == db["epochs"]
        for k in ("holdout_losses", "elites", "holdout_history", "train_loss_history"):
            np.testing.assert_array_equal(da[k], db[k], err_msg=k)


@pytest.mark.parametrize("num_seeds", [1, 2])
def test_a_fit_killed_after_a_save_resumes_bit_for_bit(data, num_seeds):
    cfg = _cfg(hidden_dims=(32, 32), epoch_steps=20, patience=2, max_epochs=7, improvement_threshold=0.0)
    whole = _fit(data, cfg, num_seeds)
    assert whole[1][0]["epochs"] >= 5  # the kill below lands mid-fit
    store = _Store(stop_at=3)
    with pytest.raises(_Stop):
        _fit(data, cfg, num_seeds, store.checkpoint())
    assert store.saves == 3  # every_seconds=0: one save per epoch
    resumed = _fit(data, cfg, num_seeds, store.checkpoint())
    _assert_identical(resumed, whole)
    # the finished fit was saved too: read back, nothing is trained or saved again
    saves = store.saves
    store.stop_at = -1
    again = _fit(data, cfg, num_seeds, store.checkpoint())
    assert store.saves == saves
    _assert_identical(again, whole)


def test_a_fit_shorter_than_the_period_saves_nothing(data):
    cfg = _cfg(hidden_dims=(32, 32), epoch_steps=20, patience=2, max_epochs=3)
    store = _Store()
    _fit(data, cfg, 1, store.checkpoint(every_seconds=3600.0))
    assert store.saves == 0 and store.saved is None


def test_a_saved_fit_of_another_fit_is_refused(data):
    cfg = _cfg(hidden_dims=(32, 32), epoch_steps=20, patience=2, max_epochs=4)
    store = _Store(stop_at=2)
    with pytest.raises(_Stop):
        _fit(data, cfg, 2, store.checkpoint())
    with pytest.raises(FitCheckpointError, match="num_seeds: saved 2, here 1"):
        _fit(data, cfg, 1, store.checkpoint())
    store.identity = {"data": "other"}
    with pytest.raises(FitCheckpointError, match="data: saved 'two regimes', here 'other'"):
        _fit(data, cfg, 2, store.checkpoint())


def _config(**model):
    c = tiny_config.get_config()
    c.num_seeds = 2
    c.model.hidden_dims = (32, 32)
    c.model.epoch_steps = 20
    c.model.patience = 2
    c.model.max_epochs = 6
    c.model.improvement_threshold = 0.0
    c.checkpoint.fit_every_seconds = 0
    c.model.update(model)
    return c


def _run_fit(config, workdir, data):
    rt = SeedRuntime.from_config(config.seed, config.num_seeds)
    states = stack_seeds([init_model_state(k[0], data, config.model) for k in rt.keys])
    ckpt = first_fit_checkpoint(config, rt, str(workdir), data)
    return fit_seeds(states, jnp.stack([k[1] for k in rt.keys]), data, None, config.model,
                     batching=config.model.seed_batching, checkpoint=ckpt)


def test_orbax_fit_checkpoint_resumes_and_another_run_starts_from_it(data, tmp_path):
    """The workdir's model_fit_checkpoint (orbax): a finished fit is read back, by this run and by
    a run naming it in model.first_fit_from; a fit of other settings or no fit there is refused."""
    config = _config()
    whole = _run_fit(config, tmp_path / "ampl", data)
    assert checkpoint.list_steps(str(tmp_path / "ampl"), checkpoint.FIT_DIR) == [whole[1][0]["epochs"]]
    _assert_identical(_run_fit(config, tmp_path / "ampl", data), whole)  # its own: read back

    nw = _config(first_fit_from=str(tmp_path / "ampl"))
    _assert_identical(_run_fit(nw, tmp_path / "nw", data), whole)
    assert not (tmp_path / "nw" / checkpoint.FIT_DIR).exists()  # nothing trained, nothing saved

    with pytest.raises(FitCheckpointError, match="model: saved"):
        _run_fit(_config(first_fit_from=str(tmp_path / "ampl"), learning_rate=3e-4), tmp_path / "other", data)
    with pytest.raises(configuration.ConfigError, match="holds no saved model fit"):
        _run_fit(_config(first_fit_from=str(tmp_path / "nw")), tmp_path / "x", data)
