"""fit_seeds: S seeds' model fits as one epoch program per device call, each seed as if alone.

batching="map" (lax.map over seeds) is bit-identical to `fit` per seed. batching="vmap" (the
default) equals it up to float32 rounding: the seed axis changes XLA:CPU's reduction shapes
(fit_seeds' docstring), with identical epoch counts, elites and early-stopping decisions. A seed
that stops early is frozen (select, not cond).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ampl_jax.distributed import stack_seeds, unstack_seed
from ampl_jax.world_model.fit import fit, fit_seeds, init_model_state
from tests.world_model.test_world_model import _cfg, _two_regimes

# vmap: float32 rounding of a different reduction order, grown over <= a few hundred Adam steps,
# as a fraction of each leaf's largest magnitude. Measured on CPU over these tests: the returned
# params (the members' snapshots) 4.5e-6, holdout losses 2e-6, the train-loss history 4e-4 and
# Adam's moments 5.4e-3 (both of the last epochs, where the weighted fits' log-stds sit near their
# lower bound and the NLL's exp(-2 log-std) magnifies any difference in the params). A wrong key,
# weight or split shows as differences of order 1e-2..1 in params and holdout losses; a stopped
# seed that kept training as a wrong Adam step count (compared exactly) and moved moments/bounds.
REL = {"params": 3e-5, "opt_state": 2e-2, "holdout_losses": 2e-5, "holdout_history": 2e-5,
       "train_loss_history": 2e-3}


def _assert_close(got, want, what, rel):
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(want)]
    for path, a, b in zip(paths, jax.tree.leaves(got), jax.tree.leaves(want)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, f"{what}{path}"
        if rel is None or np.issubdtype(a.dtype, np.integer):
            np.testing.assert_array_equal(a, b, err_msg=f"{what}{path}")
        else:
            np.testing.assert_allclose(a, b, rtol=0, atol=rel * np.abs(b).max(), err_msg=f"{what}{path}")


def _check_each_seed_equals_fit(states, keys, data, weights, cfg, batching="vmap", **kw):
    stacked, infos = fit_seeds(stack_seeds(states), jnp.stack(keys), data,
                               None if weights is None else jnp.stack(weights), cfg, batching=batching, **kw)
    assert len(infos) == len(states)
    exact = batching == "map"
    for s, (state, key) in enumerate(zip(states, keys)):
        alone, info = fit(state, key, data, None if weights is None else weights[s], cfg, **kw)
        got = unstack_seed(stacked, s)
        assert infos[s]["epochs"] == info["epochs"], s
        np.testing.assert_array_equal(infos[s]["elites"], info["elites"])
        assert set(infos[s]) == set(info)
        assert (infos[s]["num_train"], infos[s]["num_holdout"]) == (info["num_train"], info["num_holdout"])
        for k in ("holdout_losses", "holdout_history", "train_loss_history"):
            _assert_close(infos[s][k], info[k], f"seed {s} info {k}", None if exact else REL[k])
        for k in ("params", "opt_state", "holdout_losses"):
            _assert_close(getattr(got, k), getattr(alone, k), f"seed {s} {k}", None if exact else REL[k])
        for k in ("elites", "num_fits", "input_norm", "target_norm"):
            _assert_close(getattr(got, k), getattr(alone, k), f"seed {s} {k}", None)
    return stacked, infos


@pytest.fixture(scope="module")
def regimes():
    return _two_regimes(n=1000)


def test_three_seeds_each_equal_their_own_fit_plain_mle(regimes):
    data, _ = regimes
    cfg = _cfg(max_epochs=5, patience=2, epoch_steps=30)
    states = [init_model_state(jax.random.PRNGKey(s), data, cfg) for s in range(3)]
    keys = [jax.random.PRNGKey(10 + s) for s in range(3)]
    stacked, infos = _check_each_seed_equals_fit(states, keys, data, None, cfg)
    assert np.asarray(stacked.num_fits).tolist() == [1, 1, 1]
    # the seeds really are different fits (different splits, inits and minibatches)
    assert not np.array_equal(infos[0]["holdout_history"][0], infos[1]["holdout_history"][0])


@pytest.mark.parametrize("batching", ["vmap", "map"])
def test_three_seeds_each_equal_their_own_fit_weighted_warm_refit(regimes, batching):
    data, regime_b = regimes
    cfg = _cfg(max_epochs=3, refit_max_epochs=4, patience=2, epoch_steps=30)
    states, infos = [], []
    for s in range(3):  # warm starts: a refit continues params and Adam state
        st, _ = fit(init_model_state(jax.random.PRNGKey(s), data, cfg), jax.random.PRNGKey(20 + s), data, None, cfg)
        states.append(st)
    weights = [jnp.ones((1000,), jnp.float32), jnp.asarray(~regime_b, jnp.float32),
               jnp.linspace(0.1, 2.0, 1000, dtype=jnp.float32)]
    keys = [jax.random.PRNGKey(30 + s) for s in range(3)]
    stacked, infos = _check_each_seed_equals_fit(states, keys, data, weights, cfg, batching)
    assert all(1 <= i["epochs"] <= 4 for i in infos)  # refit_max_epochs: the seeds' own default
    assert np.asarray(stacked.num_fits).tolist() == [2, 2, 2]


@pytest.mark.parametrize("batching", ["vmap", "map"])
def test_a_seed_that_stops_early_stays_frozen_while_another_continues(regimes, batching):
    """Seed 0 is a converged model (its refit stops after patience = 1 stale epoch), seed 1 a
    fresh one (improves for several epochs): seed 0 must come out exactly as its own fit, so
    its Adam step count (exact integers) shows it took no step after its stop."""
    data, _ = regimes
    cfg = _cfg(patience=1, max_epochs=12, refit_max_epochs=12, epoch_steps=30)
    long = _cfg(max_epochs=20, patience=20, epoch_steps=100)
    converged, _ = fit(init_model_state(jax.random.PRNGKey(1), data, long), jax.random.PRNGKey(2), data, None, long)
    fresh = init_model_state(jax.random.PRNGKey(0), data, cfg)
    stacked, infos = _check_each_seed_equals_fit([converged, fresh], [jax.random.PRNGKey(10), jax.random.PRNGKey(20)],
                                                 data, None, cfg, batching)
    e0, e1 = infos[0]["epochs"], infos[1]["epochs"]
    assert e0 < e1 < 12, (e0, e1)  # both stopped by patience, seed 0 first
    count = np.asarray(stacked.opt_state[0].count)
    assert count.tolist() == [20 * 100 + e0 * 30, e1 * 30]
    assert infos[0]["seconds"] <= infos[1]["seconds"]


def test_per_seed_default_epoch_limits_and_explicit_max_epochs(regimes):
    """max_epochs None: a seed's first fit runs up to cfg.max_epochs, a refit up to
    cfg.refit_max_epochs, in the same call; an explicit max_epochs applies to every seed."""
    data, _ = regimes
    cfg = _cfg(max_epochs=3, refit_max_epochs=1, patience=10, epoch_steps=20)
    fresh = init_model_state(jax.random.PRNGKey(0), data, cfg)
    refit, _ = fit(init_model_state(jax.random.PRNGKey(1), data, cfg), jax.random.PRNGKey(2), data, None, cfg)
    keys = [jax.random.PRNGKey(3), jax.random.PRNGKey(4)]
    _, infos = _check_each_seed_equals_fit([fresh, refit], keys, data, None, cfg)
    assert [i["epochs"] for i in infos] == [3, 1]
    _, infos = fit_seeds(stack_seeds([fresh, refit]), jnp.stack(keys), data, None, cfg, max_epochs=2)
    assert [i["epochs"] for i in infos] == [2, 2]
    _, infos = fit_seeds(stack_seeds([fresh, refit]), jnp.stack(keys), data, None, cfg, max_epochs=0)
    assert [i["epochs"] for i in infos] == [0, 0] and infos[0]["holdout_history"].shape == (0, 3)


def test_one_seed_stack_is_fit_bit_for_bit(regimes):
    """S = 1 runs the unbatched program: exactly `fit` (which is this call on a one-seed stack)."""
    data, regime_b = regimes
    cfg = _cfg(max_epochs=3, patience=2, epoch_steps=20)
    state = init_model_state(jax.random.PRNGKey(0), data, cfg)
    w = jnp.asarray(~regime_b, jnp.float32)
    stacked, infos = fit_seeds(stack_seeds([state]), jax.random.PRNGKey(5)[None], data, w[None], cfg)
    alone, info = fit(state, jax.random.PRNGKey(5), data, w, cfg)
    for a, b in zip(jax.tree.leaves(unstack_seed(stacked, 0)), jax.tree.leaves(alone)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(infos[0]["holdout_history"], info["holdout_history"])


def test_shapes_are_checked(regimes):
    data, _ = regimes
    cfg = _cfg(max_epochs=1)
    states = stack_seeds([init_model_state(jax.random.PRNGKey(s), data, cfg) for s in range(2)])
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    with pytest.raises(ValueError, match="weights must have shape"):
        fit_seeds(states, keys, data, jnp.ones((1000,)), cfg)
    with pytest.raises(ValueError, match="one key per seed"):
        fit_seeds(states, keys[:1], data, None, cfg)
    with pytest.raises(ValueError, match="batching"):
        fit_seeds(states, keys, data, None, cfg, batching="pmap")
    with pytest.raises(ValueError, match="num_members"):
        fit_seeds(states, keys, data, None, _cfg(num_members=5))
