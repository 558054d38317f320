"""Entry point: `python -m ampl_jax.main --config=configs/walker.py --workdir=runs/walker`.

Overrides go as `--config.seed=3 --config.dataset.id=mujoco/hopper/medium-v0`. Re-running the
same command with the same --workdir resumes from the newest checkpoint there; a workdir holding
a run of another config is refused unless --overwrite is given.

Exit status: 0 done; 1 a problem the user can fix (bad config, flag, dataset, shapes, workdir,
unloadable checkpoints, a diverged run), reported as one line on stderr (`--debug` shows the
traceback instead); 143 stopped by SIGTERM after saving a checkpoint (run the command again to
resume).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from ampl_jax import configuration

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Define the CLI flags (at run time, not import time: importing this module defines nothing)."""
    if "workdir" in FLAGS:
        return
    configuration.define_config_flag()
    flags.DEFINE_string("workdir", None, "Directory for config.json, checkpoints, metrics, TensorBoard, summary, plots.")
    flags.DEFINE_bool("overwrite", False, "Discard a run of another config in --workdir instead of refusing to start.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")
    flags.DEFINE_bool("debug", False, "Raise errors with their traceback instead of a one-line message.")


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def quiet_logs() -> None:
    """absl logs INFO to stderr under app.run; orbax logs every save there. Keep stderr for problems."""
    from absl import logging

    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def main(argv) -> None:
    quiet_logs()
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}: use --config=FILE --workdir=DIR and --config.KEY=VALUE overrides")
    if FLAGS.config is None:
        _fail("--config is required, e.g. --config=configs/quickstart.py")
    config = FLAGS.config
    workdir = FLAGS.workdir or os.path.join("runs", config.dataset.id.replace("/", "_") + f"_seed{config.seed}")

    try:
        configuration.validate(config)  # before the heavy imports: a bad value fails in a second
    except configuration.ConfigError as e:
        if FLAGS.debug:
            raise
        _fail(_one_line(e))

    from ampl_jax import distributed, train
    from ampl_jax.checkpoint import CheckpointError

    try:
        distributed.maybe_initialize_multihost()  # a no-op on one host
    except (RuntimeError, ValueError, KeyError) as e:
        if FLAGS.debug:
            raise
        _fail(f"could not join the multi-host job ({_one_line(e)}): check JAX_COORDINATOR_ADDRESS, "
              "JAX_NUM_PROCESSES and JAX_PROCESS_ID")
    from ampl_jax.data.load import DatasetError

    try:
        summary = train.run(config, workdir, progress=FLAGS.progress, overwrite=FLAGS.overwrite)
    except (configuration.ConfigError, DatasetError, train.TrainingError, train.WorkdirError, CheckpointError, ValueError,
            OSError, distributed.ProcessFailed) as e:
        if FLAGS.debug:
            raise
        _fail(_one_line(e))
    if summary.get("interrupted"):
        print(f"stopped by {summary['interrupted']}: checkpoint saved at step {summary['steps']} in "
              f"{summary['checkpoint_dir']}; run the same command again to resume", file=sys.stderr, flush=True)
        sys.exit(train.EXIT_PREEMPTED)
    print(f"final normalized score {summary['final_normalized_score']:.1f} (dataset scale; "
          f"{summary.get('final_d4rl_normalized_score', float('nan')):.1f} on the D4RL v2 scale) "
          f"(return {summary['final_return_mean']:.1f}) after {summary['steps']} steps; "
          f"results in {workdir}", flush=True)


def run_cli() -> None:
    define_flags()
    app.run(main, flags_parser=lambda argv: configuration.parse_flags(argv, exit_status=1))


if __name__ == "__main__":
    run_cli()
