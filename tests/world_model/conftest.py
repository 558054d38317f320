"""The world model's tests fit small ensembles for hundreds of steps: compiled at -O0 they took as
long as optimised (153 s against 155 s for this folder, 2-core Zen 3 EPYC, 2026-12-08), and
test_fit_seeds' vmap tolerances, measured on optimised code, were exceeded at -O0 on that CPU
(train-loss history 2.1e-3 of its max against 2e-3). So this folder compiles optimised."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _optimised(optimised_programs):
    """Every module of this folder: optimised programs (tests/conftest.py)."""
