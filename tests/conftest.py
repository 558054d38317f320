"""Shared fixtures: a private Minari store and a small real Hopper-v5 dataset in it.

Session-scoped so the dataset is made once (about a second) for every test that needs data.

Also one persistent XLA compilation cache for the whole session (`pytest_configure`): this
process and every subprocess it starts (they inherit the environment) compile each distinct
program once; a later identical program (same HLO, compile options, XLA flags, devices and jax
version: jax's cache key) loads the executable instead of compiling it again. A loaded executable
computes exactly what a fresh compile of that program would, so bit-identity tests keep their
meaning: they compare runs, never a compile against a cache hit of a different program. Set
JAX_COMPILATION_CACHE_DIR yourself to keep the cache between sessions; otherwise it is a fresh
temporary directory, removed at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

_CACHE_ENV = {  # cache every program, however small or quick to compile
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    # A size limit (far above what a session writes) makes jax take a file lock around every read
    # and write, so a process never reads an entry that another is still writing (runs go side by side).
    "JAX_COMPILATION_CACHE_MAX_SIZE": str(8 << 30),
}
_OWN_CACHE: list[str] = []

# The tests compile many small programs and run each briefly: XLA's backend optimisations (LLVM -O2
# and its expensive passes) cost more than they save. jax_disable_most_optimizations compiles at -O0
# (about a third less compile time for AMPL's fused step; every test passes either way).
# Set in os.environ, so subprocesses (runs, CLIs) compile the same programs and share the cache;
# it is part of the compile options, hence of the cache key. JAX_DISABLE_MOST_OPTIMIZATIONS=0 (or
# false) in your environment runs the suite on fully optimised programs.
_FAST_COMPILE_ENV = "JAX_DISABLE_MOST_OPTIMIZATIONS"


def pytest_configure(config: pytest.Config) -> None:
    """One compilation cache for the session, in os.environ so that subprocesses share it."""
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        _OWN_CACHE.append(tempfile.mkdtemp(prefix="ampl-jax-test-xla-cache-"))
        os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE[0]
    os.environ.update(_CACHE_ENV)
    os.environ.setdefault(_FAST_COMPILE_ENV, "1")
    import jax  # the environment is read when jax is imported; update it in case it already was

    jax.config.update("jax_disable_most_optimizations",
                      os.environ[_FAST_COMPILE_ENV].strip().lower() in ("1", "true", "yes", "on"))

    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", int(_CACHE_ENV["JAX_COMPILATION_CACHE_MAX_SIZE"]))


@pytest.fixture(scope="module")
def optimised_programs():
    """Compile this module's programs with XLA's optimisations (the suite's -O0 above is for many
    small programs run briefly): for modules that run long loops of a few programs, where optimised
    code repays its compile, or whose float tolerances were measured on optimised code."""
    import jax

    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture
def fresh_compiles():
    """A context manager: inside it, programs compile afresh (the persistent cache is neither read
    nor written), for a test that two compiles of one program give the same bits."""
    import contextlib

    import jax
    from jax.experimental.compilation_cache import compilation_cache

    @contextlib.contextmanager
    def fresh():
        jax.config.update("jax_enable_compilation_cache", False)
        compilation_cache.reset_cache()  # is_cache_used() is decided once: make jax decide again
        try:
            yield
        finally:
            jax.config.update("jax_enable_compilation_cache", True)
            compilation_cache.reset_cache()

    return fresh


def pytest_unconfigure(config: pytest.Config) -> None:
    for path in _OWN_CACHE:
        shutil.rmtree(path, ignore_errors=True)

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
    from ampl_jax.datagen.make_dataset import make_dataset

    make_dataset("Hopper-v5", "random", HOPPER_RANDOM_STEPS, 0, HOPPER_RANDOM_ID, progress=False)
    return HOPPER_RANDOM_ID


_SLOW_LEFT_OUT: list[int] = [0]  # in the controller under pytest-xdist: what the workers reported


def pytest_deselected(items) -> None:
    _SLOW_LEFT_OUT[0] += sum(item.get_closest_marker("slow") is not None for item in items)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workeroutput"):  # an xdist worker: tell the controller
        session.config.workeroutput["slow_deselected"] = _SLOW_LEFT_OUT[0]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """xdist controller: every worker collects (and deselects) the whole suite; keep one count."""
    _SLOW_LEFT_OUT[0] = max(_SLOW_LEFT_OUT[0], getattr(node, "workeroutput", {}).get("slow_deselected", 0))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    """Say so when the slow tests were left out (the default `-m 'not slow'` of pyproject.toml)."""
    if _SLOW_LEFT_OUT[0]:
        terminalreporter.write_line(f"{_SLOW_LEFT_OUT[0]} slow tests deselected (end-to-end runs in subprocesses: "
                                    "kill and resume, repro, the baselines through main, multi-process and "
                                    "multi-device): run them with `python -m pytest -m slow`")
