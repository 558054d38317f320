"""Entry point: `python -m ampl_jax.main --config=configs/walker.py --workdir=runs/walker`.

Overrides go as `--config.seed=3 --config.dataset.id=mujoco/hopper/medium-v0`; `--list_keys` prints
every key with its value and meaning. Re-running the same command with the same --workdir resumes
from the newest checkpoint there (a finished run is left as it is, unless train.total_steps was
raised: then it is extended); a workdir holding a run of another config is refused unless
--overwrite is given.

Exit status: 0 done; 1 a problem the user can fix (bad config, flag, dataset, shapes, workdir,
unloadable checkpoints, a diverged run), reported as one line on stderr (`--debug` shows the
traceback instead); 143 stopped by SIGTERM after saving a checkpoint (run the command again to
resume).
"""

from __future__ import annotations

import os
import sys
import textwrap

from absl import app, flags

from ampl_jax.config import validation as configuration

FLAGS = flags.FLAGS


DEFAULT_WORKDIR = "runs/<dataset id, '/' -> '_'>_seed<seed>"
HELP_ARGS = ("-h", "-help", "--help", "--helpshort", "-?", "--helpfull")


def define_flags() -> None:
    """Define the CLI flags (at run time, not import time: importing this module defines nothing)."""
    if "workdir" in FLAGS:
        return
    configuration.define_config_flag("The config file (FILE or FILE:ARG), e.g. configs/quickstart.py; "
                                     "required to train.")
    flags.DEFINE_string("workdir", None, "Folder for config.json, metrics.csv, checkpoints/, tensorboard/, "
                        "model_fits.jsonl, summary.json, learning_curve.png.")
    flags.DEFINE_bool("list_keys", False, "Print every config key of --config (without --config: of the package "
                      "defaults) with its value and meaning, then exit.")
    flags.DEFINE_bool("overwrite", False, "Discard a run of another config in --workdir instead of refusing to start.")
    flags.DEFINE_bool("progress", True, "Show a progress bar.")
    flags.DEFINE_bool("debug", False, "Raise errors with their traceback instead of a one-line message.")


def default_workdir(config) -> str:
    """Where a run goes without --workdir (DEFAULT_WORKDIR)."""
    return os.path.join("runs", config.dataset.id.replace("/", "_") + f"_seed{config.seed}")


def usage() -> str:
    """What --help prints: the command, every flag of this entry point with its default, how to list the keys."""
    lines = [
        "usage: python -m ampl_jax.main --config=FILE [--workdir=DIR] [--config.KEY=VALUE ...] [flags]",
        "       python -m ampl_jax.main [--config=FILE] --list_keys",
        "",
        "Trains the config's method offline on its Minari dataset and writes the run into --workdir; the same",
        "command again resumes an unfinished run, and extends a finished one if train.total_steps was raised.",
        "",
        "flags:",
    ]
    defaults = {"config": "none", "workdir": DEFAULT_WORKDIR}
    examples = {}
    try:
        quickstart = default_workdir(configuration.load_file("configs/quickstart.py"))
        examples["workdir"] = f" For configs/quickstart.py the default is {quickstart}."
    except configuration.ConfigError:  # not run from the repository
        pass
    for name, meta in (("config", "=FILE"), ("workdir", "=DIR"), ("list_keys", ""), ("overwrite", ""),
                       ("progress", ""), ("debug", "")):
        flag = FLAGS[name]
        boolean = isinstance(flag, flags.BooleanFlag)
        lines.append(f"  --{'[no]' if boolean else ''}{name}{meta}")
        lines += textwrap.wrap(flag.help + examples.get(name, ""), 100, initial_indent=" " * 6,
                               subsequent_indent=" " * 6, break_on_hyphens=False)
        lines.append(f"      (default: {defaults.get(name, 'true' if flag.default else 'false')})")
    lines.append("  --config.KEY=VALUE")
    lines.append("      Override one key of the config, e.g. --config.seed=3 --config.train.total_steps=40000.")
    configs = configuration.config_files("configs")
    lines += [
        "",
        "Every config key with its value and one-line meaning:",
        "  python -m ampl_jax.main --config=configs/quickstart.py --list_keys",
        *textwrap.wrap(f"Config files in configs/: {', '.join(configs)}." if configs else "", 100,
                       break_on_hyphens=False),
        "",
        "Exit status: 0 done (or already complete); 1 a problem you can fix, one line on stderr (--debug",
        "shows the traceback); 143 stopped by SIGTERM after saving a checkpoint (run it again to resume).",
    ]
    return "\n".join(lines)


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def _print_all(text: str) -> None:
    """Print `text` to stdout; a reader that stops early (`| head`) ends it quietly."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        sys.exit(0)


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
    if FLAGS.list_keys:
        from ampl_jax.config import defaults as config_default, keys as config_keys

        if FLAGS.config is None:
            _print_all(config_keys.listing(config_default.get_config(),
                                           "the package defaults (ampl_jax/config/defaults.py)"))
        else:
            source = FLAGS["config"].serialize().partition("=")[2] or "--config"
            if any(arg.startswith("--config.") for arg in sys.argv[1:]):
                source += " (with the overrides given)"
            _print_all(config_keys.listing(FLAGS.config, source))
        return
    if FLAGS.config is None:
        _fail("--config is required, e.g. --config=configs/quickstart.py (`python -m ampl_jax.main --help` "
              "lists the flags)")
    config = FLAGS.config
    workdir = FLAGS.workdir or default_workdir(config)

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

    if not FLAGS.workdir and distributed.is_main_process():
        print(f"No --workdir given: using the default folder {workdir} (pass --workdir=DIR to choose another).",
              flush=True)
    try:
        summary = train.run(config, workdir, progress=FLAGS.progress, overwrite=FLAGS.overwrite,
                            say=lambda line: print(line, flush=True))
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
    if any(arg in HELP_ARGS for arg in sys.argv[1:]):  # absl's own --help exits 1 and leaves out --config
        _print_all(usage() + ("\n\nall flags:\n" + FLAGS.get_help() if "--helpfull" in sys.argv[1:] else ""))
        sys.exit(0)
    app.run(main, flags_parser=lambda argv: configuration.parse_flags(argv, exit_status=1))


if __name__ == "__main__":
    run_cli()
