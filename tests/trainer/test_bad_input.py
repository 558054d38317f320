"""Bad input: one clear line on stderr, exit status 1, no traceback, and nothing lost.

Each test points `ampl_jax.main` at a copy of a finished run (checkpoints, metrics.csv,
TensorBoard, model_fits.jsonl), asking it to go one period further, and, where the data is the bad input, at a tampered copy of the
dataset store; afterwards every file of both is byte-identical. The loader's own refusals are
tested in test_data.py; the missing-dataset message on a fresh workdir in test_main.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from tests import runs

DATASET = "ampl/test/hopper-tiny-v0"  # tests/tiny_config.py


@pytest.fixture
def run_copy(tmp_path_factory, tmp_path):
    """A copy of the finished reference run, and its files' digests before the bad run."""
    ref = runs.session_dirs(tmp_path_factory)["ref"]
    workdir = runs.copy_run(ref, tmp_path / "run")
    return workdir


@pytest.fixture
def store_copy(tmp_path_factory, tmp_path):
    """A private copy of the Minari store (with the tiny dataset) for a test to tamper with."""
    src = runs.session_dirs(tmp_path_factory)["minari"]
    dst = tmp_path / "minari"
    shutil.copytree(src, dst)
    return dst


def _data_dir(store):
    return store / DATASET / "data"


def _refused(workdir, extra_args, needles, store=None):
    """Run main on `workdir` with `extra_args`; assert the one-line refusal and nothing changed."""
    watched = [workdir] + ([store] if store is not None else [])
    before = runs.snapshot(*watched)
    # one period past the finished run: a complete run run again reads nothing (test_first_run.py),
    # an extended one must pass every check before it changes anything
    extend = [f"--config.train.total_steps={runs.TOTAL_STEPS + 4}"]
    proc = runs.main(runs.RUN_ARGS + extend + [f"--workdir={workdir}", *extra_args], minari=store)
    line = runs.assert_one_line_error(proc, *needles)
    assert runs.snapshot(*watched) == before, "a refused run changed files"
    return line


@pytest.mark.parametrize(
    "override,needle",
    [
        ("--config.rollout.horizon=0", "config.rollout.horizon=0 must be a positive integer"),
        ("--config.agent.batch_size=0", "config.agent.batch_size=0 must be a positive integer"),
        ("--config.rollout.fixed_real_fraction=1.5", "fixed_real_fraction=1.5 must lie in [0, 1]"),
        ("--config.rollout.real_min=-0.1", "config.rollout.real_min=-0.1 must lie in [0, 1]"),
        ("--config.agent.critic_lr=-0.1", "config.agent.critic_lr=-0.1 must be > 0"),
        ("--config.miw.schedule=sometimes", "miw.schedule"),
    ],
)
def test_out_of_range_config_value(run_copy, override, needle):
    _refused(run_copy, [override], [needle])


@pytest.mark.parametrize(
    "spec,needles",
    [
        ("configs/nope.py", ["config file configs/nope.py: not found"]),
        ("configs/hopper.py:x", ["config file configs/hopper.py: TypeError: get_config()", "1 was given"]),
    ],
)
def test_config_file_missing_or_failing_to_load(run_copy, spec, needles):
    before = runs.snapshot(run_copy)
    proc = runs.main([f"--config={spec}", "--config.seed=3", "--noprogress", f"--workdir={run_copy}"])
    runs.assert_one_line_error(proc, *needles)
    assert runs.snapshot(run_copy) == before, "a refused run changed files"


def test_repro_config_file_missing_is_one_line_and_status_2():
    """ampl_jax.repro reads --config as main does; its problems exit 2 (1 means the runs differ)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(runs.ROOT))
    proc = subprocess.run([sys.executable, "-m", "ampl_jax.repro", "--config=configs/nope.py"], cwd=runs.ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: config file configs/nope.py: not found (") and "configs/ holds " in line, line


def test_unknown_config_key(run_copy):
    _refused(run_copy, ["--config.agent.no_such_key=1"], ["config.agent.no_such_key is not a config key", "--list_keys"])


def test_unknown_dataset_id_even_with_overwrite(run_copy):
    # --overwrite discards the old run only once the new one's data and shapes passed their checks
    _refused(run_copy, ["--overwrite", "--config.dataset.id=ampl/none/missing-v0",
                        "--config.dataset.create_if_missing=False"], ["ampl/none/missing-v0", "not in the local Minari store"])


def test_corrupted_dataset_file(run_copy, store_copy):
    (_data_dir(store_copy) / "main_data.hdf5").write_bytes(b"this is not hdf5" * 64)
    _refused(run_copy, [], [DATASET, "unreadable"], store_copy)


def test_nan_in_dataset(run_copy, store_copy):
    with h5py.File(_data_dir(store_copy) / "main_data.hdf5", "a") as f:
        f["episode_1/actions"][3, 1] = np.nan
    _refused(run_copy, [], [DATASET, "1 non-finite", "actions"], store_copy)


def test_dataset_shapes_do_not_match_env(run_copy, store_copy):
    meta_file = _data_dir(store_copy) / "metadata.json"
    meta = json.loads(meta_file.read_text())
    for key in ("env_spec", "eval_env_spec"):
        if isinstance(meta.get(key), str):
            spec = json.loads(meta[key])
            spec["id"] = "Walker2d-v5"  # 17-d observations, 6-d actions; the data is Hopper's 11 and 3
            meta[key] = json.dumps(spec)
    meta_file.write_text(json.dumps(meta))
    _refused(run_copy, [], ["obs_dim=11, act_dim=3", "Walker2d-v5"], store_copy)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_workdir(run_copy):
    os.chmod(run_copy, 0o500)
    try:
        _refused(run_copy, [], ["is not usable", "choose another --workdir"])
    finally:
        os.chmod(run_copy, 0o700)


def test_workdir_path_through_a_file(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    proc = runs.main(runs.RUN_ARGS + [f"--workdir={blocker / 'run'}"])
    runs.assert_one_line_error(proc, "is not usable", "choose another --workdir")
    assert blocker.read_text() == "not a directory"


def test_workdir_holding_another_config(run_copy):
    line = _refused(run_copy, ["--config.agent.critic_lr=0.001"],
                    ["holds a run with a different config", "agent.critic_lr: 0.0003 -> 0.001", "--overwrite",
                     "train.total_steps"])
    assert "checkpoint.every" in line


def test_all_checkpoints_corrupt(run_copy):
    for f in (run_copy / "checkpoints").rglob("*"):
        if f.is_file() and "state" in f.parts:
            f.write_bytes(b"\x00garbage" * 8)
    # with a resumable change, so that a config.json rewritten too early would show
    _refused(run_copy, ["--config.train.total_steps=44"], ["no checkpoint in", "can be loaded", "--overwrite"])
