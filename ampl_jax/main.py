"""Entry point: `python -m ampl_jax.main --config=configs/walker.py --workdir=runs/walker`.

Overrides go as `--config.seed=3 --config.dataset.id=mujoco/hopper/medium-v0`. Problems a user
can fix (bad config, missing dataset, shape mismatch, diverged run) end with one line on stderr
and exit status 1; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for config.json, metrics, TensorBoard, summary and plots.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_bool("debug", False, "Raise errors with their traceback instead of a one-line message.")


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}: use --config=FILE --workdir=DIR and --config.KEY=VALUE overrides")
    if FLAGS.config is None:
        _fail("--config is required, e.g. --config=configs/quickstart.py")
    config = FLAGS.config
    workdir = FLAGS.workdir or os.path.join("runs", config.dataset.id.replace("/", "_") + f"_seed{config.seed}")

    from ampl_jax import train
    from ampl_jax.configuration import ConfigError
    from ampl_jax.data.load import DatasetError

    try:
        summary = train.run(config, workdir, progress=FLAGS.progress)
    except (ConfigError, DatasetError, train.TrainingError, PermissionError, ValueError) as e:
        if FLAGS.debug:
            raise
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    print(f"final normalized score {summary['final_normalized_score']:.1f} "
          f"(return {summary['final_return_mean']:.1f}) after {summary['steps']} steps; "
          f"results in {workdir}", flush=True)


def _parse_flags(argv: list[str]) -> list[str]:
    """Parse flags, turning an unknown --config.KEY or a mistyped value into one line."""
    try:
        return FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        bad = [a for a in argv[1:] if a.startswith("--config.")]
        msg = str(e).strip().strip("\"'").splitlines()[0] if str(e) else type(e).__name__
        _fail(f"bad flag or config override ({msg}); overrides given: {' '.join(bad) or 'none'}; "
              "keys must exist in configs/default.py and values must have the default's type")
        raise  # unreachable


def run_cli() -> None:
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run_cli()
