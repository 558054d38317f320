"""AMPL as a method of the host loop: its agent, state, fused update step, evaluation policy, and
the hook that runs its MIW phase and w-weighted model refit between rollout periods."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from ampl_jax.methods.ampl import diagnostics
from ampl_jax.methods.protocol import Diagnostics, Hook
from ampl_jax.methods.ampl.state import Agent, TrainState, init_train_state, make_agent as _make_agent
from ampl_jax.metrics import fit_row
from ampl_jax.types import DatasetInfo, OfflineData
from ampl_jax.methods.ampl.update import build_update_step, make_select_action as _select
from ampl_jax.methods.ampl.miw_step import build_miw_phase, make_dataset_weights
from ampl_jax.world_model.fit import ModelState, fit, fit_seeds

NEEDS_MODEL = True

__all__ = ["NEEDS_MODEL", "build_update_step", "init_state", "make_agent", "make_diagnostics", "make_hook",
           "make_select_action", "make_single_sample_action"]


def make_agent(config, info: DatasetInfo, termination_fn: Callable, obs_range: np.ndarray, reward_bound: float,
               *, data: OfflineData | None = None) -> Agent:
    del data  # AMPL reads only the shapes and bounds
    return _make_agent(config, info, termination_fn, obs_range, reward_bound)


def init_state(agent: Agent, key: jax.Array, model: ModelState) -> TrainState:
    return init_train_state(agent, key, model)


def make_select_action(agent: Agent) -> Callable[[TrainState, jax.Array, jax.Array], jax.Array]:
    """Best of N sampled actions by min(Q1, Q2), from the state's actor and critic."""
    select = _select(agent)
    return lambda state, key, obs: select(state.actor, state.critic, key, obs)


def make_single_sample_action(agent: Agent) -> Callable[[TrainState, jax.Array, jax.Array], jax.Array]:
    """The actor's own sample, no critic in the choice (`eval.one_sample_too`): tells a bad actor
    from a critic that ranks the sampled actions badly."""
    select = _select(agent, n_samples=1)
    return lambda state, key, obs: select(state.actor, state.critic, key, obs)


def make_diagnostics(agent: Agent) -> Diagnostics:
    return Diagnostics(diagnostics.make_diagnostics(agent), tuple(diagnostics.DIAG_COLUMNS), diagnostics.RECORD)


def make_hook(agent: Agent, runtime) -> Hook | None:
    """Every model_retrain_epochs: (phased: a block of MIW steps), then a w-weighted warm refit.

    As the authors: a refit opens epochs 100, 200, ..., never after the last iteration. With
    several seeds the phase, the weights and the refit each run once for all of them (vmapped,
    `fit_seeds`), as the update step does.
    """
    hp = agent.hp
    if hp.miw.schedule == "none":
        return None
    period, total = hp.rollout.period, hp.train.total_steps
    refit_steps = hp.train.model_retrain_epochs * hp.train.epoch_length
    stacked = runtime.stacked
    weights = make_dataset_weights(agent)
    batching = hp.model.fit_config.seed_batching
    if stacked and batching == "vmap":
        weights = jax.jit(jax.vmap(weights, in_axes=(0, None, None)))
    elif stacked:  # "map": each seed's w computed as the seed alone computes it
        one = weights
        weights = jax.jit(lambda params, obs, act: jax.lax.map(lambda p: one(p, obs, act), params))
    phase = None
    if hp.miw.schedule == "phased":
        phase = runtime.compile(build_miw_phase(agent, hp.miw.phase_steps), None)[0]

    def due(step: int, last: int) -> bool:
        return step % refit_steps < period and refit_steps <= step < total and step != last

    def run(state: Any, data: OfflineData, step: int) -> tuple[Any, list[dict]]:
        seeds = runtime.seeds if stacked else (None,)
        rows = [{} if seed is None else {"seed": seed} for seed in seeds]
        if phase is not None:
            state, m = phase(state, data)
            m = jax.device_get(m)
            for i, row in enumerate(rows):
                row.update({f"phase_{k}": runtime.per_seed(v)[i] for k, v in m.items()})
        w = weights(state.miw, data.observations, data.actions)
        if stacked:
            keys = jax.vmap(jax.random.split)(state.key)
            key, k_fit = keys[:, 0], keys[:, 1]
            model, infos = fit_seeds(state.model, k_fit, data.transitions(), w, hp.model.fit_config,
                                     max_epochs=hp.model.refit_max_epochs, dtype=hp.model.dtype,
                                     batching=batching)
        else:
            key, k_fit = jax.random.split(state.key)
            model, info = fit(state.model, k_fit, data.transitions(), w, hp.model.fit_config,
                              max_epochs=hp.model.refit_max_epochs, dtype=hp.model.dtype)
            infos = [info]
        w_np = np.asarray(w).reshape(len(seeds), -1)
        for row, w_seed in zip(rows, w_np):
            row.update({"w_min": float(w_seed.min()), "w_max": float(w_seed.max()), "w_std": float(w_seed.std())})
        if hp.agent.weighted_regularizer:  # WPR weighs its GAN losses by the last refit's weights
            state = state.replace(data_weights=w)
        state = runtime.place(state.replace(model=model, key=key))
        return state, [fit_row(step, info, row) for info, row in zip(infos, rows)]

    return Hook(due, run)
