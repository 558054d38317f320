"""The pieces of the method protocol a method module builds on (see `ampl_jax.methods`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ampl_jax.types import OfflineData


class Hook(NamedTuple):
    """What a method does on the host between rollout periods, and when.

    due(step, last) says whether it runs after the period that ended at `step` (`last`: the step
    it last ran at, 0 before the first time; carried in checkpoints); run(state, data, step)
    returns the new state and rows for model_fits.jsonl. The state is the loop's: seed-stacked
    when the run has several seeds.
    """

    due: Callable[[int, int], bool]
    run: Callable[[Any, OfflineData, int], tuple[Any, list[dict]]]


class Diagnostics(NamedTuple):
    """Extra evaluation columns: fn(seed state, data, key, real transitions of the evaluation or None)."""

    fn: Callable[..., dict[str, float]]
    columns: tuple[str, ...]
    record: int  # real transitions each evaluation keeps for fn


def no_hook(agent: Any, runtime: Any) -> None:
    """make_hook of a method with nothing to do between rollout periods."""
    return None


def no_diagnostics(agent: Any) -> None:
    """make_diagnostics of a method that logs no extra evaluation columns."""
    return None
