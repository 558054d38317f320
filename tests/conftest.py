"""Shared fixtures: a private Minari store and a small real Hopper-v5 dataset in it.

Session-scoped so the dataset is made once (about a second) for every test that needs data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

HOPPER_RANDOM_ID = "ampl/hopper/random-v0"
HOPPER_RANDOM_STEPS = 3000


@pytest.fixture(scope="session")
def minari_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MINARI_DATASETS_PATH pointed at a fresh directory for the session (restored afterwards)."""
    root = str(tmp_path_factory.mktemp("minari_datasets"))
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = root
    try:
        yield root
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


@pytest.fixture(scope="session")
def hopper_random(minari_root: str) -> str:
    """Id of a Hopper-v5 random-policy dataset of 3000 steps (seed 0) in `minari_root`."""
    from ampl_jax.data.make_dataset import make_dataset

    make_dataset("Hopper-v5", "random", HOPPER_RANDOM_STEPS, 0, HOPPER_RANDOM_ID, progress=False)
    return HOPPER_RANDOM_ID
