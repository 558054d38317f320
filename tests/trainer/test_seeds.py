"""Seeds as a vmapped axis: each seed's result equals that seed run alone; devices don't matter."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ampl_jax import distributed
from ampl_jax.methods.ampl.state import init_train_state
from ampl_jax.methods.ampl.update import build_update_step, make_update_step
from tests.methods.ampl.test_update import _setup
from tests.runs import ROOT as REPO_ROOT

ROOT = str(REPO_ROOT)  # the repository (tests/runs.py)


def _leaf_diff(x, y) -> float:
    """Max |x - y|, with equal entries (inf == inf included) counting 0 and NaN vs number inf."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    with np.errstate(invalid="ignore"):
        d = np.where(x == y, 0.0, np.abs(x - y))
    return float(np.max(np.nan_to_num(d, nan=np.inf), initial=0.0))


def _max_abs_diff(a, b) -> float:
    return max(_leaf_diff(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_vmapped_seeds_equal_seeds_run_alone():
    config, agent, data, state0 = _setup()
    seeds = [0, 1, 2]
    alone = []
    for s in seeds:
        st = init_train_state(agent, jax.random.PRNGKey(s), jax.tree.map(jnp.copy, state0.model))
        step = make_update_step(agent)
        for _ in range(2):
            st, _ = step(st, data)
        alone.append(jax.device_get(st))
    stacked = distributed.stack_seeds([init_train_state(agent, jax.random.PRNGKey(s), jax.tree.map(jnp.copy, state0.model)) for s in seeds])
    vstep = distributed.make_seeded_step(build_update_step(agent))
    for _ in range(2):
        stacked, metrics = vstep(stacked, data)
    stacked = jax.device_get(stacked)
    assert metrics["critic_loss"].shape == (len(seeds),)
    for i, s in enumerate(seeds):
        got = distributed.unstack_seed(stacked, i)
        # integer leaves (counters, buffer positions, keys) must match exactly
        for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(alone[i])):
            if not np.issubdtype(np.asarray(x).dtype, np.floating):
                np.testing.assert_array_equal(x, y)
        diff = _max_abs_diff(got, alone[i])
        print(f"seed {s}: vmapped vs alone, max abs leaf difference {diff:.3g}")
        assert diff < 1e-4, f"seed {s} differs by {diff}"
    # and the seeds really are different runs
    assert _max_abs_diff(distributed.unstack_seed(stacked, 0).actor, distributed.unstack_seed(stacked, 1).actor) > 1e-3


def _start_worker(tmp_path, devices: int):
    """tests/seeds_worker.py on `devices` CPU devices. For 1, the default: no device-count flag, so
    that its XLA flags, part of the compilation cache key, are this process's."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    if devices != 1:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(flags))
    out = tmp_path / f"dev{devices}.npz"
    proc = subprocess.Popen([sys.executable, "-m", "tests.seeds_worker", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, out


def _result(started):
    proc, out = started
    _, err = proc.communicate(timeout=2400)  # hangs only: a loaded machine needed > 1200 s
    assert proc.returncode == 0, err[-3000:]
    return np.load(out)


@pytest.mark.slow
def test_four_devices_give_the_same_seeds_as_one(tmp_path):
    started = [_start_worker(tmp_path, 1), _start_worker(tmp_path, 4)]  # side by side: two cores
    try:
        one, four = _result(started[0]), _result(started[1])
    finally:
        for proc, _ in started:  # a failed worker's partner is not left running
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert int(one["devices"]) == 1 and int(four["devices"]) == 4
    names = [k for k in one.files if k.startswith("leaf")]
    worst = max(_leaf_diff(one[k], four[k]) for k in names)
    print(f"4 devices vs 1: max abs leaf difference {worst:.3g}")
    assert worst < 1e-4, worst


def test_seed_mesh_uses_devices_the_seeds_divide():
    mesh = distributed.seed_mesh(3)
    assert 3 % mesh.devices.size == 0
