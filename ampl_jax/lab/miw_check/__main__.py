"""`python -m ampl_jax.lab.miw_check [--flags]`: the check with its flags. A bad option is one line on
stderr and exit status 2 (before anything is made or trained); an unusable dataset, workdir or
checkpoint, or a diverged AMPL run, one line and exit status 1."""

from __future__ import annotations

from absl import app, flags


def _fail(message: str, status: int) -> None:
    from ampl_jax.config.validation import exit_with

    text = message.strip()
    exit_with(text.splitlines()[0] if text else "unknown error", status)


def main(argv: list[str]) -> None:
    from absl import logging

    from ampl_jax.checkpoint import CheckpointError
    from ampl_jax.data.load import DatasetError
    from ampl_jax.lab.miw_check.check import run
    from ampl_jax.lab.miw_check import OptionError
    from ampl_jax.lab.miw_check.config import opts_from_flags
    from ampl_jax.train import TrainingError, WorkdirError

    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}: options are --flags (see --helpshort)", 2)
    if not flags.FLAGS["verbosity"].present:  # orbax logs every restore at INFO
        logging.set_verbosity(logging.WARNING)
    try:
        run(opts_from_flags(flags.FLAGS), log=lambda msg: print(msg, flush=True))
    except OptionError as e:
        _fail(str(e), 2)
    except (DatasetError, TrainingError, WorkdirError, CheckpointError, OSError) as e:
        _fail(str(e) or type(e).__name__, 1)


if __name__ == "__main__":
    from ampl_jax.lab.miw_check import config

    config.define_flags()
    flags.adopt_module_key_flags(config)  # --helpshort lists them
    app.run(main)
