"""Exact resume: runs killed (SIGKILL), preempted (SIGTERM) or left with a corrupt checkpoint end
bit-identical to an uninterrupted run; a diverging run stops with the last good checkpoint intact;
the repro command reports identical runs.

Each of these (but the reference run's layout) trains `python -m ampl_jax.main` in subprocesses:
they are marked slow (`python -m pytest -m slow`, run by .ci/run). Their building blocks are
checked in process by the default run (tests/test_checkpoint.py: save/restore, keep, fingerprint
fallback, the divergence guard, the accumulators' exact round trip, repro's diffs).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ampl_jax import checkpoint, repro
from tests import runs


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    return runs.session_dirs(tmp_path_factory)["ref"]


def assert_same_as_ref(workdir, ref, step=runs.TOTAL_STEPS):
    """Final TrainState bit for bit, metrics.csv and model_fits.jsonl (wall-clock excluded)."""
    assert checkpoint.list_steps(workdir)[-1] == step
    _, a, _ = checkpoint.load_tree(workdir, step)
    _, b, _ = checkpoint.load_tree(ref, step)
    assert repro.first_leaf_difference(a, b) is None
    assert repro.first_metrics_difference(workdir / "metrics.csv", ref / "metrics.csv") is None
    assert repro.first_fit_difference(workdir / "model_fits.jsonl", ref / "model_fits.jsonl") is None


def test_reference_run_layout(ref):
    assert checkpoint.list_steps(ref) == [36, 40]  # keep=2
    steps = [int(line.split(",")[0]) for line in (ref / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [8, 16, 24, 32, 40]


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(ref, tmp_path):
    workdir = tmp_path / "w"
    args = runs.RUN_ARGS + [f"--workdir={workdir}"]
    proc = runs.start(args, tmp_path / "killed.out")
    runs.wait_for_checkpoint(proc, workdir, 8)
    runs.kill(proc, signal.SIGKILL)
    assert not (workdir / "summary.json").exists(), "the run finished before the kill: nothing was tested"
    killed_at = checkpoint.list_steps(workdir)[-1]
    assert 8 <= killed_at < runs.TOTAL_STEPS
    first_fit = (workdir / "model_fits.jsonl").read_text().splitlines()[0]

    resumed = runs.main(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from the checkpoint at step {killed_at}" in resumed.stdout
    # the initial fit was not redone: its log line (with its wall-clock seconds) is the killed run's
    assert (workdir / "model_fits.jsonl").read_text().splitlines()[0] == first_fit
    assert_same_as_ref(workdir, ref)


@pytest.mark.slow
def test_sigterm_saves_exits_143_and_resumes_exactly(ref, tmp_path):
    # Scheduled checkpoints only every 16 steps, so the one SIGTERM forces is (most likely) off
    # schedule and holds the sums of a half-done evaluation period; checkpoint.every may differ on resume.
    workdir = tmp_path / "w"
    args = runs.RUN_ARGS + [f"--workdir={workdir}", "--config.checkpoint.every=16"]
    proc = runs.start(args, tmp_path / "term.out")
    runs.wait_for_checkpoint(proc, workdir, 16)
    rc = runs.kill(proc, signal.SIGTERM)
    err = (tmp_path / "term.err").read_text()
    assert rc == 143, err[-3000:]
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.strip()]
    assert line.startswith("stopped by SIGTERM: checkpoint saved at step ") and "run the same command" in line
    step = int(line.split("at step ")[1].split()[0])
    assert checkpoint.list_steps(workdir)[-1] == step < runs.TOTAL_STEPS
    assert not (workdir / "summary.json").exists()

    resumed = runs.main(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_as_ref(workdir, ref)


@pytest.mark.slow
def test_corrupt_newest_checkpoint_falls_back_and_total_steps_may_grow(ref, tmp_path):
    workdir = runs.copy_run(ref, tmp_path / "w")
    for f in (workdir / "checkpoints" / "40" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage" * 8)
    args = runs.RUN_ARGS + [f"--workdir={workdir}", "--config.train.total_steps=44"]
    proc = runs.main(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [line] = [x for x in proc.stderr.splitlines() if x.strip()]
    assert line.startswith("warning: checkpoint at step 40 is unreadable") and "resuming from step 36" in line
    assert "Traceback" not in proc.stderr
    assert len(list((workdir / checkpoint.CORRUPT_DIR).iterdir())) == 1
    assert checkpoint.list_steps(workdir) == [40, 44]
    _, a, _ = checkpoint.load_tree(workdir, 40)
    _, b, _ = checkpoint.load_tree(ref, 40)
    assert repro.first_leaf_difference(a, b) is None
    rows = (workdir / "metrics.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [8, 16, 24, 32, 40, 44]


_INJECT = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp
    from ampl_jax import main
    from ampl_jax.methods import ampl

    build = ampl.build_update_step

    def build_update_step(agent):
        step_fn = build(agent)

        def wrapped(state, data):
            state, metrics = step_fn(state, data)
            bad = state.step >= 16  # after the update: the losses of this chunk stay finite
            return state.replace(critic=jax.tree.map(lambda x: jnp.where(bad, x * jnp.nan, x), state.critic)), metrics

        return wrapped

    ampl.build_update_step = build_update_step
    sys.argv = ["ampl_jax.main", *sys.argv[1:]]
    main.run_cli()
""")


@pytest.mark.slow
def test_nan_parameter_stops_the_run_and_keeps_last_good_checkpoint(ref, tmp_path):
    workdir = tmp_path / "w"
    proc = subprocess.run([sys.executable, "-c", _INJECT, *runs.RUN_ARGS, f"--workdir={workdir}"],
                          cwd=runs.ROOT, env=runs.env(), capture_output=True, text=True, timeout=600)
    line = runs.assert_one_line_error(proc, "non-finite values in critic/params/", "at step 16",
                                      "last good checkpoint (step 12)")
    assert "diverged" in line
    assert checkpoint.list_steps(workdir) == [8, 12]  # nothing non-finite was saved
    _, tree, _ = checkpoint.load_tree(workdir, 12)
    floats = [np.asarray(x) for _, x in checkpoint.named_leaves(tree) if np.asarray(x).dtype.kind == "f"]
    assert floats and all(np.isfinite(x).all() for x in floats)


@pytest.mark.slow
def test_repro_command_reports_identical(ref):
    proc = subprocess.run([sys.executable, "-m", "ampl_jax.repro", "--config=tests/tiny_config.py", "--steps=8"],
                          cwd=runs.ROOT, env=runs.env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("identical: 3 checkpoints (steps 0..8)"), proc.stdout
    assert len(proc.stdout.splitlines()) == 1  # the verdict alone; the progress goes to stderr
    said = [line for line in proc.stderr.splitlines() if line.startswith("repro: ")]  # as it goes
    assert len(said) == 5, proc.stderr[-3000:]
    assert said[0].startswith("repro: run 1 of 2: 8 iterations from seed 0 in "), said
    assert said[1].startswith("repro: run 1 of 2 done in ") and said[1].endswith(" s"), said
    assert said[2].startswith("repro: run 2 of 2: 8 iterations from seed 0 in "), said
    assert said[3].startswith("repro: run 2 of 2 done in "), said
    assert said[4] == "repro: comparing the two runs' 3 checkpoints, metrics.csv and model_fits.jsonl"


BF16 = ["--config.compute.dtype=bfloat16", "--config.compute.model_dtype=bfloat16"]


@pytest.mark.slow
def test_repro_command_reports_identical_in_bfloat16(ref, tmp_path):
    """bfloat16 matmuls (agent and world model) keep runs bit-identical, and the state float32.

    Resume needs nothing more than this: a checkpoint holds only float32/integer arrays, and a
    resumed run recomputes the same deterministic programs from them."""
    root = tmp_path / "repro"
    proc = subprocess.run([sys.executable, "-m", "ampl_jax.repro", "--config=tests/tiny_config.py", "--steps=8",
                           f"--workdir={root}", *BF16],
                          cwd=runs.ROOT, env=runs.env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("identical: 3 checkpoints (steps 0..8)"), proc.stdout
    _, tree, _ = checkpoint.load_tree(root / "a", 8)
    dtypes = {str(np.asarray(x).dtype) for _, x in checkpoint.named_leaves(tree)}
    assert dtypes <= {"float32", "int32", "uint32", "bool"}, dtypes


def _fit_steps(workdir) -> list[int]:
    import json

    return [json.loads(line)["step"] for line in (workdir / "model_fits.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_no_refit_after_the_last_iteration_and_extension_does_it(ref, tmp_path):
    """As the authors: refits open epochs 3, 6, ... (steps 12, 24, 36) but never end a run; a finished
    run extended with a larger total_steps does its end's refit first and then equals the reference."""
    assert _fit_steps(ref) == [0, 12, 24, 36]
    workdir = tmp_path / "w"
    args = runs.RUN_ARGS + [f"--workdir={workdir}"]
    short = runs.main(args + ["--config.train.total_steps=24"])
    assert short.returncode == 0, short.stderr[-3000:]
    assert _fit_steps(workdir) == [0, 12]  # no refit at step 24: the run ends there
    longer = runs.main(args)
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert _fit_steps(workdir) == [0, 12, 24, 36]
    _, a, _ = checkpoint.load_tree(workdir, runs.TOTAL_STEPS)
    _, b, _ = checkpoint.load_tree(ref, runs.TOTAL_STEPS)
    assert repro.first_leaf_difference(a, b) is None
    assert repro.first_fit_difference(workdir / "model_fits.jsonl", ref / "model_fits.jsonl") is None
    # metrics equal too, except the step-24 row's model diagnostics: the short run evaluated its
    # last model there, the reference the one refitted at 24 (the policy's returns are the same)
    import csv

    def rows(path):
        skip = ("iters_per_sec", "wall_seconds", "diag_model_err_data", "diag_model_err_policy")
        return [{k: v for k, v in r.items() if k not in skip} for r in csv.DictReader(open(path))]

    assert rows(workdir / "metrics.csv") == rows(ref / "metrics.csv")
