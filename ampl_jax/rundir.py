"""A run's files: what it may write where, how it resumes from them, and what it leaves at the end.

Only process 0 touches the workdir; every other process gets the same answers through the
runtime's agreement. Every check that can refuse a run (an unusable workdir, a run of another
config in it) happens before anything there changes.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from typing import Any

from ampl_jax import checkpoint
from ampl_jax.config import validation as configuration
from ampl_jax.metrics import (CSV_NAME, TB_DIR, MeanAccumulator, MetricsWriter, plot_learning_curve, truncate_jsonl,
                              write_json)
from ampl_jax.runtime import SeedRuntime

FITS_NAME = "model_fits.jsonl"
# What a run writes in its workdir, besides the checkpoints: all of it goes on --overwrite.
RUN_FILES = ("config.json", CSV_NAME, FITS_NAME, "summary.json", "learning_curve.png")
RUN_DIRS = (checkpoint.CKPT_DIR, checkpoint.CORRUPT_DIR, checkpoint.FIT_DIR, TB_DIR)


LOCK_NAME = ".lock"  # held (flock) by the one process that writes the workdir, for the whole run


class WorkdirError(RuntimeError):
    """The workdir cannot be used as asked (unwritable, in use, or it holds another run); nothing was changed."""


class WorkdirLock:
    """One writer per workdir: an exclusive `flock` on WORKDIR/.lock, taken before anything in the
    workdir changes and held until `release` (or the process's end: the kernel drops the lock of a
    killed process, so a crash never leaves a lock that blocks its own resume). The holder writes
    its pid, host and start time into the file for the message a refused run prints; readers
    (report, eval_rules) never take it."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_NAME)
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode("utf-8", "replace")
            os.close(fd)
            try:
                h = json.loads(holder)
                who = f"pid {h['pid']} on {h['host']}, started {h['started']}"
            except (ValueError, KeyError, TypeError):
                who = "holder unknown"
            raise WorkdirError(f"workdir {os.path.dirname(self.path)!r} is in use by another run ({who}): "
                               "wait for it to end or stop it, or choose another --workdir") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


@dataclasses.dataclass
class Progress:
    """What the host loop carries besides the state; saved with every checkpoint, per local seed."""

    start_step: int  # where this attempt started (0, or the checkpoint it resumed from)
    resumed: bool
    accs: list[MeanAccumulator]  # the update metrics since the last evaluation
    last_eval: list[dict]  # the newest evaluation's scores
    fit_epochs: list  # epochs of the first model fit
    wall_before: float  # wall seconds of earlier attempts
    last_hook: int  # step the method's hook last ran at (0: never)
    started: float  # time.time() when this attempt started

    @classmethod
    def fresh(cls, num_seeds: int, fit_epochs: list, started: float) -> Progress:
        return cls(0, False, [MeanAccumulator() for _ in range(num_seeds)], [{} for _ in range(num_seeds)],
                   fit_epochs, 0.0, 0, started)

    @classmethod
    def from_extra(cls, step: int, extra: dict, local: slice, started: float) -> Progress:
        """The progress saved with checkpoint `step`, this process's seeds' part."""
        return cls(step, True, [MeanAccumulator.from_state(p) for p in extra["pending_metrics"][local]],
                   [dict(e) for e in extra["last_eval"][local]], list(extra["model_fit_epochs"][local]),
                   float(extra["wall_seconds"]), int(extra.get("last_refit", step)), started)

    def wall(self) -> float:
        return self.wall_before + time.time() - self.started


class RunFiles:
    """The workdir of one run: checks, checkpoints, metrics, model-fit log and summary."""

    def __init__(self, workdir: str, resolved: dict, runtime: SeedRuntime, keep: int, keep_steps: tuple[int, ...] = ()):
        self.workdir, self.resolved, self.rt, self.keep, self.keep_steps = workdir, resolved, runtime, keep, keep_steps
        self.ckpts: checkpoint.Checkpoints | None = None
        self.writer: MetricsWriter | None = None
        self.last_saved: int | None = None
        self.lock = WorkdirLock(workdir)

    # --- before anything is written ----------------------------------------------------

    def prepare(self, overwrite: bool) -> None:
        """Create the workdir, prove it writable, take its lock (a second writer is refused), and
        refuse a run of another config in it."""

        def check() -> None:
            _prepare_workdir(self.workdir)
            self.lock.acquire()
            if not overwrite:
                _check_same_run(self.workdir, self.resolved)

        self.rt.on_main(check)

    def completed(self, total_steps: int) -> dict | None:
        """The summary.json of a finished run here that reached `total_steps`: nothing is left to
        do. None when there is none, it is unreadable, it stopped short of `total_steps` (the run
        is to be extended), or a newer checkpoint shows an extension under way."""
        try:
            with open(os.path.join(self.workdir, "summary.json")) as f:
                summary = json.load(f)
        except (OSError, ValueError):
            return None
        steps = summary.get("steps") if isinstance(summary, dict) else None
        if not isinstance(steps, int) or steps < total_steps:
            return None
        if any(s > steps for s in checkpoint.list_steps(self.workdir)):
            return None
        return summary

    def clear(self) -> None:
        """--overwrite, once every check passed: remove what an earlier run wrote here."""
        if self.rt.is_main:
            clear_run(self.workdir)

    def restore(self, target: Any) -> tuple[int, Any, dict] | None:
        """Open the checkpoints and load the newest: (step, this process's state, extra), or None."""
        self.ckpts = self.rt.on_main(lambda: checkpoint.Checkpoints(self.workdir, self.keep, keep_steps=self.keep_steps))
        restored = self.rt.on_main(lambda: self.ckpts.restore_latest(target))
        restored = self.rt.share_restored(restored, target)
        self.last_saved = None if restored is None else restored[0]
        return restored

    # --- during the run -----------------------------------------------------------------

    def begin(self, resumed_from: int | None) -> None:
        """config.json, and the logs cut back to the checkpoint the run continues from."""
        if not self.rt.is_main:
            return
        write_json(os.path.join(self.workdir, "config.json"), self.resolved)
        if resumed_from is not None:
            print(f"Resuming from the checkpoint at step {resumed_from} in {self.ckpts.directory} "
                  "(the initial model fit is skipped).", flush=True)
        self.writer = MetricsWriter(self.workdir, resume=resumed_from is not None)
        # drop what an earlier, unfinished attempt wrote after that point (TensorBoard, fits)
        step = -1 if resumed_from is None else resumed_from
        self.writer.truncate_after(step)
        truncate_jsonl(os.path.join(self.workdir, FITS_NAME), step)

    def write_fits(self, rows: list[dict]) -> None:
        rows = self.rt.gathered(rows)
        if self.rt.is_main and rows:  # e.g. BC: no world model, so no model_fits.jsonl at all
            with open(os.path.join(self.workdir, FITS_NAME), "a") as f:
                for row in rows:
                    f.write(json.dumps(row) + "\n")

    def write_evaluation(self, step: int, rows: list[dict], columns: tuple[str, ...]) -> list[dict]:
        """Every process's evaluation rows to metrics.csv and TensorBoard; returns them all."""
        rows = self.rt.gathered(rows)
        if self.rt.is_main:
            self.writer.add_columns(list(columns))  # a run resumed from before these columns existed
            for row in rows:
                self.writer.write(step, row, tb_prefix=f"seed{row['seed']}/" if self.rt.stacked else "")
        return rows

    def save(self, step: int, state: Any, progress: Progress) -> None:
        whole = self.rt.whole(state)
        pending = self.rt.gathered([acc.state() for acc in progress.accs])
        evals, epochs = self.rt.gathered(progress.last_eval), self.rt.gathered(progress.fit_epochs)
        if self.rt.is_main:
            self.ckpts.save(step, whole, {
                "config": self.resolved, "pending_metrics": pending, "last_eval": evals,
                "model_fit_epochs": epochs, "wall_seconds": progress.wall(), "last_refit": progress.last_hook,
            })
        self.last_saved = step

    def checkpoint_dir(self) -> str:
        return os.path.abspath(os.path.join(self.workdir, checkpoint.CKPT_DIR))

    def last_good(self) -> str:
        """For error messages: where the run can be resumed from."""
        if self.last_saved is None:
            return "no checkpoint was saved"
        where = self.ckpts.directory if self.rt.is_main else os.path.join(self.workdir, checkpoint.CKPT_DIR)
        return f"the last good checkpoint (step {self.last_saved}) in {where} is intact"

    # --- at the end ---------------------------------------------------------------------

    def finish(self, summary: dict) -> None:
        if self.rt.is_main:
            plot_learning_curve(os.path.join(self.workdir, CSV_NAME), os.path.join(self.workdir, "learning_curve.png"))
            write_json(os.path.join(self.workdir, "summary.json"), summary)

    def close(self) -> None:
        try:
            if self.writer is not None:
                self.writer.close()
            if self.ckpts is not None:
                self.ckpts.close()
        finally:
            self.lock.release()


def _prepare_workdir(workdir: str) -> None:
    """Create the workdir and prove it writable, before any work is done."""
    try:
        os.makedirs(workdir, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=workdir, prefix=".write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise WorkdirError(f"workdir {workdir!r} is not usable ({e.strerror or type(e).__name__}): "
                           "choose another --workdir") from None


def _check_same_run(workdir: str, resolved: dict) -> None:
    """Refuse a workdir holding a run of another config (keys in RESUMABLE_KEYS may differ)."""
    saved = []
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        try:
            with open(path) as f:
                saved.append(json.load(f))
        except (OSError, ValueError) as e:
            raise WorkdirError(f"{path} is unreadable ({type(e).__name__}); use another --workdir, "
                               "or --overwrite to discard the run in it") from None
    extra = checkpoint.read_extra(workdir)
    if extra and isinstance(extra.get("config"), dict):
        saved.append(extra["config"])
    for cfg in saved:
        diffs = configuration.differences(cfg, resolved)
        if diffs:
            shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
            raise WorkdirError(
                f"workdir {workdir!r} holds a run with a different config ({shown}); use another --workdir, "
                f"or --overwrite to discard that run (on resume only {', '.join(sorted(configuration.RESUMABLE_KEYS))} "
                "may change)"
            )


def clear_run(workdir: str) -> None:
    """Remove what an earlier run wrote here (only the names a run writes)."""
    for name in RUN_DIRS:
        shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    for name in RUN_FILES:
        path = os.path.join(workdir, name)
        if os.path.exists(path):
            os.remove(path)
