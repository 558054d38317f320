"""Behaviour policies that generate offline datasets (`make_dataset --policy=NAME`).

A registry of factories `(env, seed) -> policy`, so trained snapshots can be added later as one
entry each: "medium" and "expert" are reserved for behaviour-policy parameters shipped inside the
package (not there yet; asking for them raises a clear error instead of a silent stand-in).
"""

from __future__ import annotations

from typing import Callable

import gymnasium
import numpy as np

Policy = Callable[[np.ndarray], np.ndarray]
PolicyFactory = Callable[[gymnasium.Env, int], Policy]


class PolicyError(ValueError):
    """A behaviour policy that does not exist, or is not available in this version."""


def _box_action_space(env: gymnasium.Env) -> gymnasium.spaces.Box:
    space = env.action_space
    if not isinstance(space, gymnasium.spaces.Box):
        raise PolicyError(f"behaviour policies need a Box action space, got {space}")
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise PolicyError(f"the random policy needs a bounded action space, got {space}")
    return space


def random_policy(env: gymnasium.Env, seed: int) -> Policy:
    """Uniform actions in the action box, from its own seeded generator (reproducible)."""
    space = _box_action_space(env)
    rng = np.random.default_rng(seed)
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)

    def act(obs: np.ndarray) -> np.ndarray:
        del obs  # the random policy ignores the state
        return rng.uniform(low, high).astype(space.dtype)

    return act


POLICIES: dict[str, PolicyFactory] = {
    "random": random_policy,
}

# Names reserved for trained behaviour-policy snapshots (parameter files shipped in the package).
PLANNED_POLICIES: tuple[str, ...] = ("medium", "expert")


def make_policy(name: str, env: gymnasium.Env, seed: int) -> Policy:
    """The behaviour policy `name` for `env` (obs -> action), seeded."""
    if name in POLICIES:
        return POLICIES[name](env, seed)
    known = ", ".join(sorted(POLICIES))
    if name in PLANNED_POLICIES:
        raise PolicyError(
            f"behaviour policy '{name}' is not available yet (trained snapshots are not shipped in "
            f"this version); available: {known}"
        )
    raise PolicyError(f"unknown behaviour policy '{name}'; available: {known}")
