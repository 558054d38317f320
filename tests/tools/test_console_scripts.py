"""The console scripts pyproject.toml installs are the `python -m` programs (issue #30)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

SCRIPTS = {"ampl-train": ("ampl_jax.main", "--config"), "ampl-report": ("ampl_jax.report", "--band"),
           "ampl-repro": ("ampl_jax.repro", "--steps"), "ampl-bench": ("ampl_jax.lab.bench", "--authors_its")}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_runs_the_module(script):
    module, flag = SCRIPTS[script]
    path = shutil.which(script) or pytest.fail(f"{script} is not installed: run `python -m pip install -e '.[dev]'`")
    # --helpfull lists every module's flags: the program's own show that the script reached it
    out = subprocess.run([path, "--helpfull"], capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert f"{module}:" in text or module == "ampl_jax.main", text[-500:]
    assert flag in text, text[-500:]
