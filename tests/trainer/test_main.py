"""End to end: `python -m ampl_jax.main` on a tiny dataset writes every promised file."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from tests import runs
from tests.runs import ROOT as REPO_ROOT

ROOT = str(REPO_ROOT)  # the repository (tests/runs.py)


def _env(minari_root, **extra):
    """os.environ (with the session's compilation cache, tests/conftest.py) plus the store and CPU."""
    return dict(os.environ, MINARI_DATASETS_PATH=str(minari_root), JAX_PLATFORMS="cpu", MPLBACKEND="Agg", **extra)


def _main(args, minari_root, timeout=600):
    return subprocess.run([sys.executable, "-m", "ampl_jax.main", *args], cwd=ROOT, env=_env(minari_root),
                          capture_output=True, text=True, timeout=timeout)


def _start(args, minari_root, **extra):
    """`ampl_jax.main` in the background (stdout and stderr piped: read them with communicate)."""
    return subprocess.Popen([sys.executable, "-m", "ampl_jax.main", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(minari_root, **extra))


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_main_writes_all_outputs(tmp_path_factory):
    """The session's reference run (tests/runs.py: `python -m ampl_jax.main` on tests/tiny_config.py,
    40 iterations, evaluations every 8), which the resume, bad-input, eval-rules and critic-check
    tests read too."""
    workdir = runs.session_dirs(tmp_path_factory)["ref"]
    stdout = runs.session_dirs(tmp_path_factory)["ref_stdout"]
    assert "final normalized score" in stdout and f"after {runs.TOTAL_STEPS} steps" in stdout
    diag_rows = list(csv.DictReader(open(workdir / "metrics.csv")))
    for col in ("diag_q_policy", "diag_q_data", "diag_action_mse", "diag_disc_acc", "diag_model_err_data",
                "diag_model_err_policy"):  # the instruments of every evaluation (ampl_jax/diagnostics.py)
        assert all(math.isfinite(float(r[col])) for r in diag_rows), col
    assert all(0.0 <= float(r["diag_disc_acc"]) <= 1.0 for r in diag_rows)
    config = json.load(open(workdir / "config.json"))
    assert config["train"]["total_steps"] == runs.TOTAL_STEPS
    rows = list(csv.DictReader(open(workdir / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [8, 16, 24, 32, 40]
    for r in rows:
        for col in ("return_mean", "normalized_score", "critic_loss", "disc_loss", "actor_loss", "miw_residual",
                    "d4rl_normalized_score"):
            assert math.isfinite(float(r[col])), col
        # Hopper on D4RL's v2 scale (random -20.272305, expert 3234.3), from the same return.
        assert float(r["d4rl_normalized_score"]) == pytest.approx(
            100 * (float(r["return_mean"]) + 20.272305) / (3234.3 + 20.272305), rel=1e-5)
    columns = list(rows[0])
    assert columns[:5] == ["step", "seed", "return_mean", "return_std", "normalized_score"]
    # AMPL's diagnostics come after the D4RL score, then (cpu_budget's eval.one_sample_too) the
    # actor's own-sample scores of the same episodes.
    one = ["one_sample_return_mean", "one_sample_normalized_score", "one_sample_d4rl_normalized_score"]
    assert columns[-3:] == one
    assert all(math.isfinite(float(r[c])) for r in rows for c in one)
    n_diag = sum(c.startswith("diag_") for c in columns)
    assert n_diag == 6 and all(c.startswith("diag_") for c in columns[-n_diag - 3:-3])
    assert columns[-n_diag - 6:-n_diag - 3] == ["iters_per_sec", "wall_seconds", "d4rl_normalized_score"]
    summary = json.load(open(workdir / "summary.json"))
    assert summary["steps"] == runs.TOTAL_STEPS
    assert math.isfinite(summary["final_normalized_score"])
    assert summary["final_d4rl_normalized_score"] == pytest.approx(float(rows[-1]["d4rl_normalized_score"]))
    assert summary["final_normalized_score"] != summary["final_d4rl_normalized_score"]  # two scales
    scales = summary["score_scales"]
    assert "dataset scale" in scales["final_normalized_score"]
    assert "D4RL v2 scale" in scales["final_d4rl_normalized_score"] and "v5" in scales["final_d4rl_normalized_score"]
    assert summary["wall_seconds"] > 0
    assert summary["compute"]["backend"] in ("cpu", "gpu", "tpu") and summary["compute"]["devices"] >= 1
    assert os.path.getsize(workdir / "learning_curve.png") > 1000
    assert any(f.startswith("events.out.tfevents") for _, _, fs in os.walk(workdir) for f in fs)


def test_missing_dataset_names_both_fixes(tmp_path):
    proc = _main(["--config=tests/tiny_config.py", f"--workdir={tmp_path / 'w'}",
                  "--config.dataset.create_if_missing=False", "--config.dataset.id=ampl/none/missing-v0"], tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "make_dataset" in proc.stderr and "download" in proc.stderr


@pytest.fixture
def started():
    """The processes a test starts (append them); any still running when it ends, failed, are killed."""
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.slow
def test_vmapped_seeds_in_main_match_single_seed_runs_and_two_processes(tmp_path_factory, tmp_path, started):
    """--config.num_seeds=2 trains seeds 0 and 1 in one program; each matches its run alone.

    Then the same run as a 2-process job (jax.distributed on localhost, one seed per process):
    process 0 alone writes one metrics.csv and one checkpoint holding both seeds, equal to the
    1-process run's to float32 rounding, and a single process resumes that checkpoint.

    Independent runs go two at a time (the store holds the dataset already, made with seed 0).
    """
    from ampl_jax import checkpoint

    store = runs.tiny_store(tmp_path_factory)
    args = ["--config=tests/tiny_config.py", "--noprogress", "--config.train.total_steps=16"]

    def finish(proc, workdir):
        out, err = proc.communicate(timeout=2400)  # hangs only: a loaded machine needed > 1200 s
        assert proc.returncode == 0, err[-3000:]
        return list(csv.DictReader(open(workdir / "metrics.csv")))

    def start(name, *extra, **env):
        started.append(_start([*args, f"--workdir={tmp_path / name}", *extra], store, **env))
        return started[-1]

    running = [start("both", "--config.num_seeds=2"), start("s0", "--config.seed=0")]
    both, alone = finish(running[0], tmp_path / "both"), {0: finish(running[1], tmp_path / "s0")}
    # Two processes, one seed each, sharing the workdir and the store; next to the seed-1 run.
    mp, port = tmp_path / "mp", _free_port()
    procs = [start("mp", "--config.num_seeds=2", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                   JAX_PROCESS_ID=str(i)) for i in (0, 1)]
    alone[1] = finish(start("s1", "--config.seed=1"), tmp_path / "s1")
    outs = [p.communicate(timeout=2400) for p in procs]
    assert sorted((int(r["step"]), int(float(r["seed"]))) for r in both) == [(8, 0), (8, 1), (16, 0), (16, 1)]
    for r in both:
        ref = next(a for a in alone[int(float(r["seed"]))] if a["step"] == r["step"])
        for col in ("critic_loss", "disc_loss", "actor_loss", "miw_residual", "q_mean"):
            assert float(r[col]) == pytest.approx(float(ref[col]), rel=1e-3, abs=1e-6), col
    assert both[0]["critic_loss"] != both[1]["critic_loss"]  # two different seeds
    summary = json.load(open(tmp_path / "both" / "summary.json"))
    assert summary["seeds"] == [0, 1] and len(summary["final_normalized_score_per_seed"]) == 2
    d4rl = summary["final_d4rl_normalized_score_per_seed"]
    assert d4rl == [float(r["d4rl_normalized_score"]) for r in both if r["step"] == "16"]
    assert summary["final_d4rl_normalized_score"] == pytest.approx(sum(d4rl) / 2)

    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    multi = list(csv.DictReader(open(mp / "metrics.csv")))
    assert [(r["step"], r["seed"]) for r in multi] == [(r["step"], r["seed"]) for r in both]
    for r, ref in zip(multi, both):
        for col in ("critic_loss", "disc_loss", "actor_loss", "miw_residual", "q_mean", "return_mean"):
            assert float(r[col]) == pytest.approx(float(ref[col]), rel=1e-4, abs=1e-6), col
    assert json.load(open(mp / "summary.json"))["processes"] == 2
    step_a, tree_a, _ = checkpoint.load_tree(tmp_path / "both")
    step_b, tree_b, _ = checkpoint.load_tree(mp)
    assert step_a == step_b == 16
    for (name, a), (_, b) in zip(checkpoint.named_leaves(tree_a), checkpoint.named_leaves(tree_b)):
        assert a.shape == b.shape and a.shape[:1] == (2,), name  # one checkpoint, both seeds
        if a.dtype.kind == "f":
            assert float(abs(a.astype("float64") - b).max(initial=0.0)) < 1e-5, name
        else:
            assert (a == b).all(), name
    proc = _main([*args[:-1], "--config.train.total_steps=24", f"--workdir={mp}", "--config.num_seeds=2"], store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resuming from the checkpoint at step 16" in proc.stdout
    assert [int(r["step"]) for r in csv.DictReader(open(mp / "metrics.csv"))] == [8, 8, 16, 16, 24, 24]


def test_offline_fallback_to_local_dataset(tmp_path, monkeypatch, capsys):
    """An official id missing offline falls back to the local dataset, created on first use."""
    from ampl_jax import train
    from tests import tiny_config

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    config = tiny_config.get_config()
    config.dataset.id = "mujoco/hopper/medium-v0"
    config.dataset.fallback_id = "ampl/test/hopper-fallback-v0"
    config.dataset.create_steps = 300
    data, info = train.load_data(config, progress=False)
    assert info.dataset_id == "ampl/test/hopper-fallback-v0" and data.observations.shape == (300, 11)
    assert "using the local 'ampl/test/hopper-fallback-v0'" in capsys.readouterr().out
    assert not (tmp_path / "mujoco").exists()  # nothing written under the official id


@pytest.mark.slow
@pytest.mark.parametrize("method", ["bc", "mopo", "td3bc"])
def test_baselines_run_in_the_same_job(tmp_path_factory, tmp_path, method):
    proc = _main(["--config=tests/tiny_config.py", f"--workdir={tmp_path / 'w'}", "--noprogress",
                  f"--config.method={method}", "--config.train.total_steps=8",
                  "--config.mopo.hidden_dims=(32, 32)", "--config.mopo.batch_size=32",
                  "--config.mopo.settings=config", "--config.mopo.rollout_batch_size=1000",  # no MOPO dataset; 4 starts
                  "--config.bc.hidden_dims=(32, 32)", "--config.bc.batch_size=32",
                  "--config.td3bc.hidden_dims=(32, 32)", "--config.td3bc.batch_size=32"], runs.tiny_store(tmp_path_factory))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "w" / "metrics.csv")))
    losses = {"bc": ["bc_loss"], "mopo": ["critic_loss"], "td3bc": ["critic_loss", "actor_loss", "bc_mse"]}[method]
    for loss in losses:
        assert rows and math.isfinite(float(rows[-1][loss])), loss
    assert math.isfinite(float(rows[-1]["return_mean"]))
    fits = (tmp_path / "w" / "model_fits.jsonl")
    assert fits.exists() == (method == "mopo")  # BC and TD3+BC fit no world model


@pytest.mark.slow
def test_two_processes_one_failing_both_exit_with_one_line(tmp_path):
    """Only process 0 checks the workdir; when it refuses, process 1 must not wait for it forever."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "ampl_jax.main", "--config=tests/tiny_config.py", "--noprogress",
                               f"--workdir={blocker / 'run'}", "--config.num_seeds=2"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(tmp_path / "minari", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                                       JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
             for i in (0, 1)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [1, 1], errs
    assert "Traceback" not in errs[0] + errs[1]
    assert "is not usable" in errs[0]
    assert "process 0 failed: WorkdirError" in errs[1] and "is not usable" in errs[1]
    assert blocker.read_text() == "not a directory"
