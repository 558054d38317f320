"""Behaviour policies that generate offline datasets (`make_dataset --policy=NAME`).

A registry of factories `(env, seed) -> policy`: "random" draws uniform actions; "medium" and
"expert" are the SAC snapshots shipped in ampl_jax/datagen/snapshots for the env's exact id
(e.g. Hopper-v5). Like D4RL, the trained policies act by sampling their stochastic
tanh-Gaussian, not by its mean, so the data covers the policy's own action noise.
"""

from __future__ import annotations

from typing import Callable

import gymnasium
import numpy as np

Policy = Callable[[np.ndarray], np.ndarray]
PolicyFactory = Callable[[gymnasium.Env, int], Policy]


class PolicyError(ValueError):
    """A behaviour policy that does not exist, or is not available for this env."""


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


def snapshot_policy(name: str) -> PolicyFactory:
    """Factory of the shipped SAC snapshot `name`: samples a ~ tanh-Gaussian (seeded NumPy)."""

    def factory(env: gymnasium.Env, seed: int) -> Policy:
        from ampl_jax.datagen.sac import act_np, to_env_action
        from ampl_jax.datagen.snapshots import SnapshotError, load_snapshot

        space = _box_action_space(env)
        env_id = env.spec.id if env.spec is not None else "<unregistered env>"
        try:
            snap = load_snapshot(env_id, name)
        except SnapshotError as e:
            raise PolicyError(str(e)) from None
        obs_dim = int(np.prod(env.observation_space.shape))
        if snap.layers[0][0].shape[0] != obs_dim or snap.meta["act_dim"] != int(np.prod(space.shape)):
            raise PolicyError(f"snapshot '{name}' of {env_id} does not fit the env's spaces")
        rng = np.random.default_rng(seed)
        layers, low, high = snap.layers, snap.low, snap.high

        def act(obs: np.ndarray) -> np.ndarray:
            return to_env_action(act_np(layers, obs, rng), low, high).astype(space.dtype)

        return act

    return factory


POLICIES: dict[str, PolicyFactory] = {
    "random": random_policy,
    "medium": snapshot_policy("medium"),
    "expert": snapshot_policy("expert"),
}


def make_policy(name: str, env: gymnasium.Env, seed: int) -> Policy:
    """The behaviour policy `name` for `env` (obs -> action), seeded."""
    if name in POLICIES:
        return POLICIES[name](env, seed)
    known = ", ".join(sorted(POLICIES))
    raise PolicyError(f"unknown behaviour policy '{name}'; available: {known}")
