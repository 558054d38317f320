"""Issue #31, the audit's items off AMPL's default path (N1, N2, N4, N5, N6): each test fails on
the behaviour before the fix. docs/fidelity.md lists them with the authors' lines."""

from __future__ import annotations

import os

import pytest
from absl import flags
from ml_collections import config_flags

from ampl_jax import config_default, configuration
from ampl_jax.methods.ampl.hparams import AMPLHyper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parsed(spec: str, *overrides: str):
    """The config that `--config=spec OVERRIDES` gives, through the entry points' own parser."""
    argv = ["prog", f"--config={spec}", *overrides]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True, sys_argv=argv)
    fv["config"].parser = configuration._ConfigFileParser()
    fv(argv)
    return fv.config


# --- N4: rollout.real_full_epochs follows the warm start, as the authors' warm_start_epochs + 5 ----


def test_real_full_epochs_is_derived_from_the_warm_start_unless_set():
    c = config_default.get_config()
    assert (c.agent.warm_start_epochs, c.rollout.real_full_epochs) == (40, 45)
    c.agent.warm_start_epochs = 20
    assert c.rollout.real_full_epochs == 25  # was 45: the schedule desynchronised
    assert AMPLHyper.from_config(c).rollout.real_full_epochs == 25
    assert configuration.to_dict(c)["rollout"]["real_full_epochs"] == 25  # config.json holds the value
    c.rollout.real_full_epochs = 30  # an explicit value wins over the derivation
    c.agent.warm_start_epochs = 10
    assert c.rollout.real_full_epochs == 30


def test_real_full_epochs_follows_a_warm_start_override_on_the_command_line():
    c = _parsed(os.path.join(ROOT, "configs", "hopper.py"), "--config.agent.warm_start_epochs=30")
    assert (c.agent.warm_start_epochs, c.rollout.real_full_epochs) == (30, 35)
    c = _parsed(os.path.join(ROOT, "configs", "hopper.py"), "--config.agent.warm_start_epochs=30",
                "--config.rollout.real_full_epochs=50")
    assert c.rollout.real_full_epochs == 50
    # configs that set their own schedule keep it (the 20k protocol: warm start 8, real data to 10)
    c = _parsed(os.path.join(ROOT, "configs", "benchmark.py") + ":hopper-medium_expert",
                "--config.agent.warm_start_epochs=6")
    assert c.rollout.real_full_epochs == 10
    c = _parsed(os.path.join(ROOT, "configs", "benchmark.py") + ":hopper-medium_expert-long")
    assert (c.agent.warm_start_epochs, c.rollout.real_full_epochs) == (40, 45)
