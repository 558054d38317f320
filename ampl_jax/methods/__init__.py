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

from types import ModuleType
from typing import Any

import jax.numpy as jnp
import numpy as np

from ampl_jax.data import preprocess
from ampl_jax.evaluation import check_env_matches
from ampl_jax.methods import ampl, bc, mopo, td3bc
from ampl_jax.methods.protocol import Diagnostics, Hook, no_diagnostics, no_hook
from ampl_jax.types import DatasetInfo, OfflineData
from ampl_jax.world_model.termination import termination_fn

__all__ = ["MODULES", "Diagnostics", "Hook", "build_agent", "get", "no_diagnostics", "no_hook"]

# config.method -> the module that implements it (a new method: import it above and add it here)
MODULES: dict[str, ModuleType] = {"ampl": ampl, "bc": bc, "mopo": mopo, "td3bc": td3bc}


def get(method: str) -> ModuleType:
    """The module implementing config.method."""
    try:
        return MODULES[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}: one of {', '.join(sorted(MODULES))}") from None


def build_agent(config, data: OfflineData, info: DatasetInfo) -> Any:
    """config.method's agent for this dataset (its env checked against the data's shapes first)."""
    check_env_matches(info.env_id, info.obs_dim, info.act_dim)
    obs_range = preprocess.obs_range(jnp.concatenate([data.observations, data.next_observations]))
    bound = float(preprocess.reward_bound(data.scaled_rewards))
    return get(config.method).make_agent(config, info, termination_fn(info.env_id), np.asarray(obs_range), bound,
                                         data=data)
