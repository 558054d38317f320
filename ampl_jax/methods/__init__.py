"""Every training method behind one small interface, so the host loop never asks which one it runs.

A method is a module (AMPL, BC, MOPO, TD3+BC; one file or sub-package each) that defines:

    NEEDS_MODEL: bool                       the loop fits the dynamics ensemble before step 0
    make_agent(config, info, termination_fn, obs_range, reward_bound, *, data) -> agent
                                            static parts: modules, optimisers, hyperparameters
    init_state(agent, key, model) -> state  every array the run carries (a pytree)
    build_update_step(agent) -> step        pure (state, data) -> (state, metrics): one rollout
                                            period of updates, jitted (and vmapped over seeds) by the loop
    make_select_action(agent) -> select     (state, key, obs[B]) -> actions[B], for evaluation
    make_hook(agent, runtime) -> Hook|None  host work between rollout periods (AMPL: its MIW
                                            phase and w-weighted model refit)
    make_diagnostics(agent) -> Diagnostics|None   extra columns logged beside every evaluation
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from ampl_jax.data import preprocess
from ampl_jax.evaluation import check_env_matches
from ampl_jax.types import DatasetInfo, OfflineData
from ampl_jax.world_model.termination import termination_fn

# config.method -> the module that implements it
MODULES = {"ampl": "ampl_jax.methods.ampl", "bc": "ampl_jax.methods.bc", "mopo": "ampl_jax.methods.mopo",
           "td3bc": "ampl_jax.methods.td3bc"}


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


def get(method: str) -> ModuleType:
    """The module implementing config.method."""
    try:
        return importlib.import_module(MODULES[method])
    except KeyError:
        raise ValueError(f"unknown method {method!r}: one of {', '.join(sorted(MODULES))}") from None


def build_agent(config, data: OfflineData, info: DatasetInfo) -> Any:
    """config.method's agent for this dataset (its env checked against the data's shapes first)."""
    check_env_matches(info.env_id, info.obs_dim, info.act_dim)
    obs_range = preprocess.obs_range(jnp.concatenate([data.observations, data.next_observations]))
    bound = float(preprocess.reward_bound(data.scaled_rewards))
    return get(config.method).make_agent(config, info, termination_fn(info.env_id), np.asarray(obs_range), bound,
                                         data=data)
