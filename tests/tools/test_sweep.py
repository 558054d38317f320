"""launch.sweep: exact dry-run commands, parallel execution with a fake main, exit codes, TPU commands.

Nothing trains here: runs use a tiny fake module (written to tmp) instead of ampl_jax.main.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from launch import sweep
from tests.runs import ROOT as REPO_ROOT

ROOT = str(REPO_ROOT)  # the repository (tests/runs.py)

# Writes summary.json unless the seed is 1 (exit 3); records how many runs were alive at once.
FAKE_MAIN = textwrap.dedent("""
    import json, os, sys, time
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
    workdir, seed = args["workdir"], int(args["config.seed"])
    live = os.environ["FAKE_LIVE_DIR"]
    marker = os.path.join(live, workdir.replace(os.sep, "_"))
    open(marker, "w").close()
    others = 0
    for _ in range(60):  # wait up to 3 s to see a sibling run (proves runs overlap)
        others = max(others, len(os.listdir(live)) - 1)
        if others:
            break
        time.sleep(0.05)
    time.sleep(0.1)
    others = max(others, len(os.listdir(live)) - 1)
    os.remove(marker)
    print("fake run", workdir, "others", others)
    with open(os.path.join(workdir, "others.txt"), "w") as f:
        f.write(str(others))
    if seed == 1:
        print("error: seed 1 fails on purpose", file=sys.stderr)
        sys.exit(3)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump({"seed": seed, "final_normalized_score": 1.0}, f)
""")


def _sweep(*args, env=None, timeout=60):
    env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "launch.sweep", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_dry_run_two_datasets_two_seeds_exact_commands(tmp_path):
    root = str(tmp_path / "sw")
    proc = _sweep("--config=configs/hopper.py", "--datasets=mujoco/hopper/medium-v0,ampl/walker/x-v0",
                  "--seeds=0-1", f"--root={root}", "--python=python3", "--dry_run")
    assert proc.returncode == 0, proc.stderr
    base = "python3 -m ampl_jax.main --config=configs/hopper.py"
    assert proc.stdout.splitlines() == [
        "# 4 of 4 runs",
        f"{base} --workdir={root}/mujoco_hopper_medium-v0/base/seed0 --config.seed=0 --config.dataset.id=mujoco/hopper/medium-v0 --noprogress",
        f"{base} --workdir={root}/mujoco_hopper_medium-v0/base/seed1 --config.seed=1 --config.dataset.id=mujoco/hopper/medium-v0 --noprogress",
        f"{base} --workdir={root}/ampl_walker_x-v0/base/seed0 --config.seed=0 --config.dataset.id=ampl/walker/x-v0 --noprogress",
        f"{base} --workdir={root}/ampl_walker_x-v0/base/seed1 --config.seed=1 --config.dataset.id=ampl/walker/x-v0 --noprogress",
    ]
    assert not os.path.exists(root)  # a dry run creates nothing


def test_dry_run_two_seeds_two_overrides_quotes_and_skips_done(tmp_path):
    root = str(tmp_path / "sw")
    variants = sweep.expand_grid(sweep.parse_grid("model.hidden_dims=(64,64),(32,);miw.schedule=phased"))
    runs = sweep.build_runs("configs/q.py", ["d/x"], [0, 1], variants, root, extra_args=["--debug"])
    os.makedirs(runs[1].workdir)
    open(os.path.join(runs[1].workdir, "summary.json"), "w").close()
    w = f"{root}/d_x/model.hidden_dims="
    tail = "--config.miw.schedule=phased --noprogress --debug"
    assert sweep.dry_run_lines(runs, "py") == [
        f"py -m ampl_jax.main --config=configs/q.py --workdir={w}64,64+miw.schedule=phased/seed0 --config.seed=0 "
        f"--config.dataset.id=d/x '--config.model.hidden_dims=(64,64)' {tail}",
        f"# done (summary.json exists): py -m ampl_jax.main --config=configs/q.py "
        f"--workdir={w}64,64+miw.schedule=phased/seed1 --config.seed=1 "
        f"--config.dataset.id=d/x '--config.model.hidden_dims=(64,64)' {tail}",
        f"py -m ampl_jax.main --config=configs/q.py --workdir={w}32,+miw.schedule=phased/seed0 --config.seed=0 "
        f"--config.dataset.id=d/x '--config.model.hidden_dims=(32,)' {tail}",
        f"py -m ampl_jax.main --config=configs/q.py --workdir={w}32,+miw.schedule=phased/seed1 --config.seed=1 "
        f"--config.dataset.id=d/x '--config.model.hidden_dims=(32,)' {tail}",
    ]
    assert sweep.dry_run_lines(runs, "py", rerun=True)[1].startswith("py -m")


def test_parallel_runs_logs_skips_and_failure_exit_code(tmp_path):
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "fake_main.py").write_text(FAKE_MAIN)
    live = tmp_path / "live"
    live.mkdir()
    root = tmp_path / "sw"
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "mod"), ROOT]), "FAKE_LIVE_DIR": str(live)}
    args = ["--config=configs/hopper.py", "--datasets=a/x,b/y", "--seeds=0,1", f"--root={root}",
            "--parallel=2", "--main_module=fake_main", "--", "--extra"]
    proc = _sweep(*args, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "sweep: 2 ok, 2 failed, 0 skipped of 4 runs" in proc.stdout
    assert proc.stdout.count("FAILED (exit 3)") == 2
    seen = []
    for ds in ("a_x", "b_y"):
        for seed in (0, 1):
            wd = root / ds / "base" / f"seed{seed}"
            assert "fake run" in (wd / "stdout.log").read_text()
            assert "--extra" in (wd / "command.sh").read_text()
            assert (wd / "summary.json").exists() == (seed == 0)
            assert ("fails on purpose" in (wd / "stderr.log").read_text()) == (seed == 1)
            seen.append(int((wd / "others.txt").read_text()))
    assert max(seen) == 1  # runs overlapped, never more than --parallel=2 at once

    again = _sweep(*args, env=env)  # done runs are skipped, failed ones run again
    assert again.returncode == 1
    assert "sweep: 0 ok, 2 failed, 2 skipped of 4 runs" in again.stdout


def test_execute_all_ok_returns_zero_codes(tmp_path):
    runs = [sweep.Run("d", "base", s, str(tmp_path / f"s{s}"), ("-c", f"print({s})")) for s in range(3)]
    results = sweep.execute(runs, sys.executable, parallel=3, poll_s=0.02, log=lambda s: None)
    assert results == {r.workdir: 0 for r in runs}
    assert (tmp_path / "s2" / "stdout.log").read_text() == "2\n"
    text, ok = sweep.summarise(results)
    assert ok and text == "sweep: 3 ok, 0 failed, 0 skipped of 3 runs"


def test_tpu_dry_run_prints_gcloud_commands():
    proc = _sweep("--config=configs/hopper.py", "--seeds=0-3", "--grid=rollout.horizon=1,3", "--root=runs/s",
                  "--tpu=amp", "--zone=us-central2-b", "--accelerator_type=v4-16",
                  "--tpu_steps=create,copy,start,fetch", "--dry_run", "--", "--config.dataset.download=True")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    g = "gcloud compute tpus tpu-vm"
    assert lines[0] == f"{g} create amp --zone=us-central2-b --accelerator-type=v4-16 --version=tpu-ubuntu2204-base"
    assert lines[1] == f"{g} ssh amp --zone=us-central2-b --worker=all '--command=mkdir -p ampl-jax'"
    assert lines[2] == (f"{g} scp --recurse ampl_jax configs launch pyproject.toml README.md 'amp:~/ampl-jax/' "
                        "--zone=us-central2-b --worker=all")
    assert lines[3].startswith(f"{g} ssh amp --zone=us-central2-b --worker=all '--command=cd ampl-jax && ")
    for part in ("python3 -m launch.sweep --config=configs/hopper.py --seeds=0-3 --root=runs/s --parallel=1 "
                 "--num_shards=auto --shard_index=auto --grid=rollout.horizon=1,3 -- --config.dataset.download=True",
                 "nohup", "agent-worker-number"):
        assert part in lines[3]
    assert lines[4:] == [f"{g} scp --recurse 'amp:~/ampl-jax/runs/s' runs --zone=us-central2-b --worker={w}"
                         for w in (0, 1)]


def test_tpu_multihost_dry_run_runs_every_run_on_all_workers():
    """--tpu_multihost: each run is one job over the slice: no shards, AMPL_MULTIHOST=1, fetch worker 0."""
    proc = _sweep("--config=configs/hopper.py", "--seeds=0", "--root=runs/s", "--tpu=amp", "--accelerator_type=v4-16",
                  "--tpu_multihost", "--tpu_steps=start,fetch", "--dry_run", "--", "--config.num_seeds=4")
    assert proc.returncode == 0, proc.stderr
    start, *fetch = proc.stdout.splitlines()
    assert "nohup env AMPL_MULTIHOST=1 python3 -m launch.sweep --config=configs/hopper.py --seeds=0 --root=runs/s " \
           "--parallel=1 --rerun -- --config.num_seeds=4 >" in start
    assert "num_shards" not in start
    assert fetch == ["gcloud compute tpus tpu-vm scp --recurse 'amp:~/ampl-jax/runs/s' runs --zone=us-central2-b --worker=0"]


def test_shards_split_runs_round_robin():
    runs = sweep.build_runs("c.py", ["d"], list(range(5)), [[]], "r")
    parts = [sweep.shard(runs, 2, i) for i in (0, 1)]
    assert [r.seed for r in parts[0]] == [0, 2, 4] and [r.seed for r in parts[1]] == [1, 3]
    assert sweep.resolve_shards("2", "1") == (2, 1)
    with pytest.raises(sweep.SweepError):
        sweep.resolve_shards("2", "2")
    assert sweep.tpu_hosts("v4-8") == 1 and sweep.tpu_hosts("v4-32") == 4
    assert sweep.tpu_hosts("v5litepod-8") == 1 and sweep.tpu_hosts("v6e-16") == 4


def test_grid_and_seed_parsing(tmp_path):
    assert sweep.parse_seeds("0-2,7") == [0, 1, 2, 7]
    for bad in ("", "0,0", "a"):
        with pytest.raises(sweep.SweepError):
            sweep.parse_seeds(bad)
    assert sweep.parse_grid("rollout.horizon=1,3; --config.miw.schedule=none") == [
        {"rollout.horizon": ["1", "3"], "miw.schedule": ["none"]}]
    for bad in ("horizon", "seed=1,2", "a=1;a=2", "a b=1"):
        with pytest.raises(sweep.SweepError):
            sweep.parse_grid(bad)
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps([{"miw.schedule": "none"},
                                {"miw.schedule": ["interleaved", "phased"], "agent.hidden_dims": [[64, 64]],
                                 "agent.weighted_regularizer": True}]))
    variants = sweep.expand_grid(sweep.load_grid_file(str(grid)))
    assert [sweep.variant_tag(v) for v in variants] == [
        "miw.schedule=none",
        "miw.schedule=interleaved+agent.hidden_dims=64,64+agent.weighted_regularizer=True",
        "miw.schedule=phased+agent.hidden_dims=64,64+agent.weighted_regularizer=True"]
    assert variants[1][1] == ("agent.hidden_dims", "(64,64)")
    assert sweep.expand_grid([]) == [[]] and sweep.variant_tag([]) == "base"


def test_bad_grid_is_one_line_error():
    proc = _sweep("--config=configs/hopper.py", "--datasets=d", "--grid=rollout.horizon", "--dry_run")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: bad --grid entry 'rollout.horizon': expected KEY=V1,V2"]


def test_claim_keeps_two_launchers_off_one_run(tmp_path):
    runs = [sweep.Run("d", "base", s, str(tmp_path / f"s{s}"), ("-c", f"print({s})")) for s in range(2)]
    assert sweep.claim(runs[0].workdir)  # as if another launcher (alive: this process) ran s0
    assert not sweep.claim(runs[0].workdir)
    results = sweep.execute(runs, sys.executable, poll_s=0.02, log=lambda s: None)
    assert results == {runs[0].workdir: "busy", runs[1].workdir: 0}
    assert not (tmp_path / "s0" / "stdout.log").exists()  # never started here
    assert not (tmp_path / "s1" / sweep.CLAIM).exists()  # released when its run ended
    text, ok = sweep.summarise(results)
    assert ok and text == "sweep: 1 ok, 0 failed, 0 skipped, 1 busy (run by another launcher) of 2 runs"
    sweep.release(runs[0].workdir)
    assert sweep.execute(runs[:1], sys.executable, poll_s=0.02, log=lambda s: None) == {runs[0].workdir: 0}


def test_claim_of_a_dead_launcher_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    wd = tmp_path / "run"
    wd.mkdir()
    (wd / sweep.CLAIM).write_text(f"{os.uname().nodename} {dead.pid}")
    assert sweep.claim(str(wd))
    assert (wd / sweep.CLAIM).read_text() == f"{os.uname().nodename} {os.getpid()}"
    (wd / sweep.CLAIM).write_text(f"another-host {dead.pid}")  # other hosts' claims are honoured
    assert not sweep.claim(str(wd))


_GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                GIT_COMMITTER_EMAIL="t@t")


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, env=_GIT_ENV, capture_output=True, text=True, check=True).stdout


def test_commit_runs_commits_finished_runs_only(tmp_path):
    """launch/commit_runs.sh: one commit of the run folders with summary.json (their ignored
    checkpoints left out), unfinished runs and the user's other changes left alone; idempotent."""
    repo = tmp_path / "repo"
    (repo / "grid").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / ".gitignore").write_text("checkpoints/\n.commit_lock\n")
    (repo / "notes.md").write_text("v1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "init")
    done, running = repo / "grid/cell/method=a/seed0", repo / "grid/cell/method=b/seed0"
    for run in (done, running):
        (run / "checkpoints/10").mkdir(parents=True)
        (run / "checkpoints/10/state").write_text("big")
        (run / "metrics.csv").write_text("step\n10\n")
    (done / "summary.json").write_text("{}")
    (repo / "notes.md").write_text("v2, staged by the user\n")
    _git(repo, "add", "notes.md")
    script = os.path.join(ROOT, "launch", "commit_runs.sh")

    def commit():
        return subprocess.run(["bash", script, "grid"], cwd=repo, env=_GIT_ENV, capture_output=True, text=True)

    first = commit()
    assert first.returncode == 0, first.stderr
    assert "committed 1 run(s): cell/method=a/seed0" in first.stdout
    assert _git(repo, "show", "--name-only", "--format=", "HEAD").split() == [
        "grid/cell/method=a/seed0/metrics.csv", "grid/cell/method=a/seed0/summary.json"]
    assert _git(repo, "log", "-1", "--format=%s") == "Benchmark runs finished: cell/method=a/seed0\n"
    assert _git(repo, "diff", "--cached", "--name-only") == "notes.md\n"  # still staged, not committed
    head = _git(repo, "rev-parse", "HEAD")
    again = commit()
    assert again.returncode == 0 and again.stdout == "" and _git(repo, "rev-parse", "HEAD") == head
    (running / "summary.json").write_text("{}")
    third = commit()
    assert "committed 1 run(s): cell/method=b/seed0" in third.stdout
    assert _git(repo, "show", "--name-only", "--format=", "HEAD").split() == [
        "grid/cell/method=b/seed0/metrics.csv", "grid/cell/method=b/seed0/summary.json"]
