"""Reproducibility check: `python -m ampl_jax.repro --config=configs/quickstart.py --steps=500`.

Trains the config twice from its fixed seed for `--steps` iterations (default: two rollout
periods), each in a fresh temporary workdir with a checkpoint after every chunk, then compares
the two runs: every checkpoint's TrainState leaves bit for bit (in step order, so a difference is
reported at the first step it appears), the metrics.csv rows and the model_fits.jsonl lines
(wall-clock columns excluded). Prints "identical: ..." and exits 0, or "differs: ..." naming the
first differing leaf or column and its step, and exits 1; a problem (config, flag, dataset) is
one line on stderr and exit status 2. While it works it says on stderr which run it is at and how
long each took (stdout holds only the verdict). Both runs share one process, so this
checks the computation (kernels, reductions, PRNG use, host-side bookkeeping), not process-level
settings.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from absl import app, flags

from ampl_jax import checkpoint
from ampl_jax.config import validation as configuration

# Columns that measure time, not the computation: never compared.
WALL_CLOCK_COLUMNS = ("iters_per_sec", "wall_seconds")
WALL_CLOCK_FIT_KEYS = ("seconds",)

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Define the CLI flags (at run time: importing the comparison helpers defines no flags)."""
    configuration.define_config_flag()
    flags.DEFINE_integer("steps", 0, "Iterations per run (overrides train.total_steps); 0: two rollout periods.")
    flags.DEFINE_string("workdir", None, "Keep both runs under this directory (default: a temporary one, removed).")
    flags.DEFINE_bool("debug", False, "Raise errors with their traceback instead of a one-line message.")


def first_leaf_difference(a: Any, b: Any) -> str | None:
    """Name of the first leaf (in name order) whose dtype, shape or bytes differ; None if all equal."""
    la, lb = dict(checkpoint.named_leaves(a)), dict(checkpoint.named_leaves(b))
    for name in sorted(set(la) | set(lb)):
        if name not in la or name not in lb:
            return f"{name} (present in only one run)"
        x, y = np.asarray(la[name]), np.asarray(lb[name])
        if x.dtype != y.dtype or x.shape != y.shape:
            return f"{name} ({x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)})"
        if np.ascontiguousarray(x).tobytes() != np.ascontiguousarray(y).tobytes():
            return name
    return None


def _rows(path: str) -> list[dict[str, str]]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def first_metrics_difference(csv_a: str, csv_b: str, ignore=WALL_CLOCK_COLUMNS) -> tuple[str, str] | None:
    """(step, column) of the first metrics.csv cell that differs (as written), wall-clock excluded."""
    ra, rb = _rows(csv_a), _rows(csv_b)
    for i in range(max(len(ra), len(rb))):
        if i >= len(ra) or i >= len(rb):
            row = (ra if i < len(ra) else rb)[i]
            return row.get("step", "?"), "(row present in only one run)"
        a, b = ra[i], rb[i]
        for col in sorted(set(a) | set(b)):
            if col not in ignore and a.get(col) != b.get(col):
                return a.get("step", "?"), col
    return None


def _fits(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def first_fit_difference(path_a: str, path_b: str, ignore=WALL_CLOCK_FIT_KEYS) -> tuple[str, str] | None:
    """(step, key) of the first model_fits.jsonl entry that differs, wall-clock excluded."""
    fa, fb = _fits(path_a), _fits(path_b)
    for i in range(max(len(fa), len(fb))):
        if i >= len(fa) or i >= len(fb):
            return str((fa if i < len(fa) else fb)[i].get("step")), "(fit present in only one run)"
        for key in sorted(set(fa[i]) | set(fb[i])):
            if key not in ignore and fa[i].get(key) != fb[i].get(key):
                return str(fa[i].get("step")), key
    return None


def compare_runs(dir_a: str, dir_b: str) -> tuple[bool, str]:
    """(identical, one-line report) for two workdirs of the same config."""
    steps_a, steps_b = checkpoint.list_steps(dir_a), checkpoint.list_steps(dir_b)
    if steps_a != steps_b:
        return False, f"differs: checkpoint steps {steps_a} vs {steps_b}"
    n_leaves = 0
    for step in steps_a:
        _, tree_a, _ = checkpoint.load_tree(dir_a, step)
        _, tree_b, _ = checkpoint.load_tree(dir_b, step)
        diff = first_leaf_difference(tree_a, tree_b)
        if diff is not None:
            return False, f"differs: first at step {step}, TrainState leaf {diff}"
        n_leaves = len(checkpoint.named_leaves(tree_a))
    diff = first_metrics_difference(os.path.join(dir_a, "metrics.csv"), os.path.join(dir_b, "metrics.csv"))
    if diff is not None:
        return False, f"differs: first at step {diff[0]}, metrics.csv column {diff[1]}"
    diff = first_fit_difference(os.path.join(dir_a, "model_fits.jsonl"), os.path.join(dir_b, "model_fits.jsonl"))
    if diff is not None:
        return False, f"differs: first at step {diff[0]}, model_fits.jsonl key {diff[1]}"
    rows = len(_rows(os.path.join(dir_a, "metrics.csv")))
    fits = len(_fits(os.path.join(dir_a, "model_fits.jsonl")))
    return True, (f"identical: {len(steps_a)} checkpoints (steps {steps_a[0]}..{steps_a[-1]}) x {n_leaves} "
                  f"TrainState leaves bit for bit, {rows} metrics rows (all but {', '.join(WALL_CLOCK_COLUMNS)}) "
                  f"and {fits} model fits equal")


def reproduce(config, steps: int, root: str, *, progress: bool = False,
              say: Callable[[str], None] = lambda line: None) -> tuple[bool, str]:
    """Run `config` twice for `steps` iterations under `root`/a and `root`/b and compare them;
    `say` gets a line as each run starts and ends and as the comparison starts."""
    from ampl_jax import train

    config = config.copy_and_resolve_references()
    period = config.rollout.period
    config.train.total_steps = steps if steps > 0 else 2 * period
    chunks = -(-config.train.total_steps // period)
    config.checkpoint.every = period
    config.checkpoint.keep = chunks + 1  # step 0 and every chunk
    dirs = [os.path.join(root, name) for name in ("a", "b")]
    for i, d in enumerate(dirs, 1):
        say(f"repro: run {i} of 2: {chunks * period} iterations from seed {config.seed} in {d} "
            f"(dataset, first model fit, {chunks} rollout periods{', compilation' if i == 1 else ''})")
        began = time.time()
        train.run(config, d, progress=progress, overwrite=True)
        say(f"repro: run {i} of 2 done in {time.time() - began:.0f} s")
    say(f"repro: comparing the two runs' {chunks + 1} checkpoints, metrics.csv and model_fits.jsonl")
    return compare_runs(*dirs)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv) -> None:
    from absl import logging

    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1 or FLAGS.config is None:
        print("error: usage: python -m ampl_jax.repro --config=FILE [--steps=N] [--config.KEY=VALUE ...]",
              file=sys.stderr)
        sys.exit(2)
    from ampl_jax import train
    from ampl_jax.data.load import DatasetError

    try:
        if FLAGS.workdir:
            same, report = reproduce(FLAGS.config, FLAGS.steps, FLAGS.workdir)
        else:
            with tempfile.TemporaryDirectory(prefix="ampl-repro-") as root:
                same, report = reproduce(FLAGS.config, FLAGS.steps, root, say=_say)
    except (configuration.ConfigError, DatasetError, train.TrainingError, train.WorkdirError, checkpoint.CheckpointError,
            ValueError, OSError) as e:
        if FLAGS.debug:
            raise
        text = str(e).strip()
        print(f"error: {text.splitlines()[0] if text else type(e).__name__}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(report, flush=True)
    sys.exit(0 if same else 1)


def cli() -> None:
    """The console script (pyproject.toml), as `python -m ampl_jax.repro`."""
    define_flags()
    app.run(main, flags_parser=lambda argv: configuration.parse_flags(argv, exit_status=2, program="ampl_jax.repro"))


if __name__ == "__main__":
    cli()
