"""One workdir, one writer (issue #34): a second run on a folder in use is refused in one line and
changes nothing; a killed holder leaves no lock behind; readers need no lock."""

import json
import os
import signal
import subprocess
import sys

import pytest

from ampl_jax.rundir import LOCK_NAME, WorkdirError, WorkdirLock
from tests import runs

_HOLD = """
import sys, time
from ampl_jax.rundir import WorkdirLock
WorkdirLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def _hold(workdir) -> subprocess.Popen:
    """Another process holding the workdir's lock, as a running `ampl_jax.main` does."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(workdir)], cwd=runs.ROOT, env=runs.env(runs.ROOT),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_and_a_killed_holder_leaves_no_lock(tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir()
    holder = _hold(workdir)
    try:
        with pytest.raises(WorkdirError, match=rf"in use by another run \(pid {holder.pid} on .+, started .+\)"):
            WorkdirLock(str(workdir)).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    lock = WorkdirLock(str(workdir))
    lock.acquire()  # the kernel dropped the killed process's lock: its run can resume
    assert json.loads((workdir / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    WorkdirLock(str(workdir)).acquire()  # released: free again (this one is dropped with its fd)


def test_main_on_a_folder_in_use_exits_with_one_line_and_changes_nothing(tmp_path_factory, tmp_path):
    store = runs.tiny_store(tmp_path_factory)
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "metrics.csv").write_text("step,return_mean\n8,1.0\n")
    holder = _hold(workdir)
    try:
        before = runs.snapshot(workdir)
        proc = runs.main(["--config=tests/tiny_config.py", "--noprogress", f"--workdir={workdir}"], store)
        line = runs.assert_one_line_error(proc, f"workdir '{workdir}' is in use by another run", f"pid {holder.pid}")
        assert "choose another --workdir" in line
        assert runs.snapshot(workdir) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)



def test_a_reader_works_on_a_run_in_progress(tmp_path):
    """Readers take no lock: the report tabulates a run folder whose lock a writer holds."""
    from ampl_jax import report

    run = tmp_path / "runs" / "ampl_tiny-v0" / "method=ampl" / "seed0"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"seed": 0, "num_seeds": 1, "method": "ampl",
                                                 "dataset": {"id": "ampl/tiny-v0"}}))
    (run / "metrics.csv").write_text("step,return_mean,normalized_score\n8,10.0,1.0\n16,20.0,2.0\n")
    holder = _hold(run)
    try:
        result = report.make_report(str(tmp_path / "runs"), str(tmp_path / "out"), last_k=2)
        assert result and (tmp_path / "out" / "report.md").exists()
        assert "1.5" in (tmp_path / "out" / "report.md").read_text()  # the last-2 mean of 1.0 and 2.0
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
