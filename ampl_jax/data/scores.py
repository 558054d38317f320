"""Reference returns for D4RL-style normalised scores, per environment family.

Why a table: locally made datasets (and some published Minari ones) carry no expert reference,
and the normalised score 100 * (R - random) / (expert - random) needs both ends. The numbers are
D4RL's REF_MIN_SCORE (uniform random policy) and REF_MAX_SCORE (expert policy) of the v2 MuJoCo
tasks, so scores stay comparable with the published AMPL table (spec section 3). Minari's
MuJoCo datasets use the v5 environments, whose returns are close to, not identical with, the
v2 ones: treat scores on v5 as D4RL-comparable, not identical.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from ampl_jax.metrics import D4RL_COLUMN

if TYPE_CHECKING:
    from ampl_jax.types import DatasetInfo

# family -> (random return, expert return); D4RL infos.py REF_MIN_SCORE / REF_MAX_SCORE.
REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}

# Wording shared by the dataset metadata, summary.json and the report, so the caveat travels with
# every D4RL-scale figure.
D4RL_SCALE_NOTE = (
    "D4RL-scale score: 100 * (R - random) / (expert - random) with D4RL's random and expert returns "
    "of the v2 MuJoCo envs; the envs here are v5, whose returns differ slightly from v2, so this is "
    "an approximate comparison with published D4RL scores"
)

# env id -> (mean, std) return of the uniform random policy over 100 episodes (policy seed 0,
# reset seeds 0..99), measured here on the v5 environments: the ref_min_score of datasets made by
# make_dataset, cached so dataset creation does not spend 100 episodes on it. Differs from D4RL's
# v2 numbers (e.g. Hopper: +16.7 on v5 against -20.3 on v2).
RANDOM_RETURNS_V5: dict[str, tuple[float, float]] = {
    "Hopper-v5": (16.66883949956298, 17.6028855542871),
    "Walker2d-v5": (1.7700239419401487, 7.738026004404768),
    "HalfCheetah-v5": (-282.4868419273262, 72.26329452520169),
}
RANDOM_RETURN_EPISODES = 100

# family -> the Gymnasium environment the project uses for it (datasets, evaluation).
DEFAULT_ENV_IDS: dict[str, str] = {
    "hopper": "Hopper-v5",
    "halfcheetah": "HalfCheetah-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
}


def env_family(name: str) -> str | None:
    """The family of an env or dataset id ("Hopper-v5", "mujoco/hopper/medium-v0" -> "hopper").

    Matches whole words of the lower-cased id; "halfcheetah" is tested before any shorter name.
    """
    words = set(re.split(r"[^a-z0-9]+", name.lower()))
    # "Walker2d-v5" splits into {"walker2d", "v5"}; "HalfCheetah" into {"halfcheetah"}.
    for family in sorted(REFERENCE_SCORES, key=len, reverse=True):
        if family in words:
            return family
    return None


def reference_scores(env_id: str) -> tuple[float, float] | None:
    """(random return, expert return) for an env id such as "Hopper-v5"; None if not tabulated."""
    family = env_family(env_id)
    return None if family is None else REFERENCE_SCORES[family]


def d4rl_normalized_score(
    return_mean: float, env_id: str, refs: tuple[float, float] | None = None
) -> float:
    """Score of `return_mean` on the D4RL v2 scale (random 0, expert 100); NaN without a reference.

    `refs` = (random, expert) overrides the table (e.g. values stored in a dataset's metadata); else
    the family of `env_id` (a Gymnasium or dataset id) picks D4RL's numbers. NaN, not an error,
    for envs D4RL never scored (e.g. InvertedPendulum), so a metrics row can still be written.
    """
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a str such as 'Hopper-v5', got {type(env_id).__name__}")
    refs = refs if refs is not None else reference_scores(env_id)
    if refs is None:
        return math.nan
    low, high = float(refs[0]), float(refs[1])
    if high == low:
        raise ValueError(f"D4RL references for '{env_id}' have random == expert == {low}")
    return 100.0 * (float(return_mean) - low) / (high - low)


def random_return_v5(env_id: str) -> float | None:
    """Cached mean return of the uniform random policy in `env_id` (exact id), or None."""
    entry = RANDOM_RETURNS_V5.get(env_id)
    return None if entry is None else entry[0]


def default_env_id(dataset_id: str) -> str | None:
    """The Gymnasium id that fits a dataset id (for error messages that suggest a command)."""
    family = env_family(dataset_id)
    return None if family is None else DEFAULT_ENV_IDS[family]


def evaluation_scores(return_mean: float, return_std: float, info: DatasetInfo) -> dict[str, float]:
    """One evaluation's columns; the D4RL-scale score last, so older columns keep their order."""
    return {"return_mean": float(return_mean), "return_std": float(return_std),
            "normalized_score": _score(return_mean, info), D4RL_COLUMN: _d4rl_score(return_mean, info)}


def _score(return_mean: float, info: DatasetInfo) -> float:
    from ampl_jax.data.preprocess import normalized_score  # JAX's float32 arithmetic, as logged since the start

    if info.ref_min_score is None or info.ref_max_score is None:
        return float("nan")
    return float(normalized_score(return_mean, info.ref_min_score, info.ref_max_score))


def _d4rl_score(return_mean: float, info: DatasetInfo) -> float:
    """The return on D4RL's v2 scale (random 0, expert 100); nan where D4RL has no reference."""
    if info.d4rl_ref_min_score is None or info.d4rl_ref_max_score is None:
        return float("nan")
    return d4rl_normalized_score(return_mean, info.env_id, (info.d4rl_ref_min_score, info.d4rl_ref_max_score))
