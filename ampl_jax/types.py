"""Pytrees shared across modules: the offline data, a batch of transitions, dataset metadata.

Kept in one place so that the data layer, the world model and the agent agree on field names.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax


class Transitions(NamedTuple):
    """A batch of transitions: leading axis N on every field.

    `dones` are true terminations only (float 0/1), never time-outs.
    """

    observations: jax.Array  # [N, obs_dim] float32
    actions: jax.Array  # [N, act_dim] float32
    rewards: jax.Array  # [N] float32
    next_observations: jax.Array  # [N, obs_dim] float32
    dones: jax.Array  # [N] float32


class OfflineData(NamedTuple):
    """The whole offline dataset as device arrays (one pytree, passed into jit).

    `next_actions[i]` is the action taken at `next_observations[i]` in the same episode;
    `next_action_valid[i]` is 0 where there is none (last step of an episode).
    `init_observations` holds the episode-initial states (mu0 for the MIW).
    `rewards` are raw environment rewards; `scaled_rewards` the spec's min-max rescaled r~.
    """

    observations: jax.Array  # [N, obs_dim]
    actions: jax.Array  # [N, act_dim]
    rewards: jax.Array  # [N]
    scaled_rewards: jax.Array  # [N]
    next_observations: jax.Array  # [N, obs_dim]
    dones: jax.Array  # [N] float32
    next_actions: jax.Array  # [N, act_dim]
    next_action_valid: jax.Array  # [N] float32
    init_observations: jax.Array  # [M, obs_dim]

    @property
    def size(self) -> int:
        return int(self.observations.shape[0])

    def indices(self, key: jax.Array, n: int) -> jax.Array:
        """n row indices drawn uniformly with replacement: every minibatch of every method is
        drawn here, inside jit, so batches never leave the device."""
        return jax.random.randint(key, (n,), 0, self.observations.shape[0])

    def rows(self, idx: jax.Array, scaled: bool = True) -> Transitions:
        """The transitions at idx, rewards rescaled (AMPL's r~) or raw (`scaled=False`)."""
        rewards = self.scaled_rewards if scaled else self.rewards
        return Transitions(self.observations[idx], self.actions[idx], rewards[idx], self.next_observations[idx],
                           self.dones[idx])

    def sample(self, key: jax.Array, n: int, scaled: bool = True) -> Transitions:
        """A uniform minibatch of n transitions."""
        return self.rows(self.indices(key, n), scaled)

    def transitions(self, scaled: bool = True) -> Transitions:
        return Transitions(
            self.observations,
            self.actions,
            self.scaled_rewards if scaled else self.rewards,
            self.next_observations,
            self.dones,
        )


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Host-side metadata of a dataset (never enters jit)."""

    dataset_id: str
    env_id: str  # Gymnasium id of the evaluation environment, e.g. "Hopper-v5"
    obs_dim: int
    act_dim: int
    max_action: float
    num_episodes: int
    num_transitions: int
    ref_min_score: float | None  # random-policy return
    ref_max_score: float | None  # expert return
    reward_min: float  # raw reward range, for the min-max rescaling
    reward_max: float
    env_spec_json: str | None = None  # gymnasium EnvSpec as json, when the dataset carries one
    # D4RL's v2 random / expert returns for the env family (second, approximate score scale: the
    # envs are v5); from the metadata, else ampl_jax/data/scores.py; None where D4RL has no entry.
    d4rl_ref_min_score: float | None = None
    d4rl_ref_max_score: float | None = None
