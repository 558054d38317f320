"""Every jitted program a training run compiles, taken from the functions the run itself uses.

`run_programs(config, data, info)` builds a method's agent and seed runtime as `train.run` does
and returns one `Program` per jitted function the run calls: the update step (plain for one
seed; vmapped over seeds and sharded over the seed mesh for several, `SeedRuntime.compile`), the
ensemble fit's epoch (`fit_seeds`: first fit and refits), the hook's MIW phase and refit weights
(AMPL), the evaluation's action selection, the diagnostics and the divergence guard. Each comes
with abstract arguments (`jax.ShapeDtypeStruct`s, the shapes the run passes), so it can be
lowered, compiled or exported without running anything: `tests/tools/test_lowering.py` exports each
one for GPU and TPU, `ampl_jax.lab.cost_model` compiles them for XLA's cost and memory analysis.

Functions that the run builds inside a closure (the hook's `weights` and `phase`, the
diagnostics' `on_data` and `on_policy`, the guard's `finite`) are read from that closure by
name, so a program added or renamed there fails here loudly instead of going unchecked.
Not covered: op-by-op work outside jit (`prepare_fit_data`, key splits, stacking), which
uses only standard primitives.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ampl_jax import methods
from ampl_jax.runtime import SeedRuntime
from ampl_jax.types import DatasetInfo, OfflineData

__all__ = ["Program", "abstract", "closure_fn", "run_programs", "synthetic_data"]

# Gymnasium v5 shapes of the envs the benchmarks use
ENV_SHAPES = {"Hopper-v5": (11, 3), "Walker2d-v5": (17, 6), "HalfCheetah-v5": (17, 6)}


class Program(NamedTuple):
    """One jitted function of a run and the abstract arguments the run passes it."""

    name: str
    fn: Any  # a jax.jit-wrapped callable: .lower(*args), jax.export.export(fn)(*args)
    args: tuple


def abstract(tree: Any) -> Any:
    """Arrays (or ShapeDtypeStructs) -> ShapeDtypeStructs of the same shapes and dtypes, no shardings."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x)), tree)


def closure_fn(fn: Callable, name: str) -> Any:
    """The function `name` that closure `fn` captured (a jitted function the run builds inside it)."""
    found = inspect.getclosurevars(fn).nonlocals
    if name not in found:
        raise LookupError(f"{getattr(fn, '__qualname__', fn)} no longer captures {name!r} (it captures "
                          f"{sorted(found)}): update ampl_jax/lab/programs.py to the program it compiles now")
    return found[name]


def synthetic_data(n: int, env_id: str = "Hopper-v5", seed: int = 0,
                   num_init: int = 50) -> tuple[OfflineData, DatasetInfo]:
    """Random data of `env_id`'s shapes (healthy Hopper/Walker heights, so rollouts live): for
    programs' shapes and costs, which do not depend on the values."""
    obs_dim, act_dim = ENV_SHAPES[env_id]
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32) * 0.1
    obs[:, 0] += 1.25
    act = rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32)
    nxt = obs + 0.01 * rng.normal(size=(n, obs_dim)).astype(np.float32)
    rew = rng.normal(size=n).astype(np.float32)
    scaled = (rew - rew.min() + 1e-3) / (rew.max() - rew.min())
    data = OfflineData(jnp.asarray(obs), jnp.asarray(act), jnp.asarray(rew), jnp.asarray(scaled), jnp.asarray(nxt),
                       jnp.zeros(n), jnp.asarray(np.roll(act, -1, 0)), jnp.ones(n), jnp.asarray(obs[:num_init]))
    info = DatasetInfo(f"synthetic/{env_id}", env_id, obs_dim, act_dim, 1.0, max(1, n // 1000), n, 0.0, 1.0,
                       float(rew.min()), float(rew.max()))
    return data, info


def run_programs(config: ml_collections.ConfigDict, data: OfflineData, info: DatasetInfo, *,
                 agent: Any = None) -> list[Program]:
    """The programs a run of `config` (its method, num_seeds, schedules) compiles on `data`.

    Built as `train.run` builds them: the agent by `methods.build_agent`, the seeds' layout by
    `SeedRuntime.from_config`, the step by `rt.compile(method.build_update_step(agent))`, the
    hook by `method.make_hook(agent, rt)`, the fit's epoch by the same cached constructors
    `fit_seeds` calls. Several seeds: every per-seed argument has a leading seed axis.
    """
    from ampl_jax import train
    from ampl_jax.world_model.fit import (EpochCarry, init_model_state, make_epoch_fn, make_seeds_epoch_fn,
                                          prepare_fit_data, static_from_config)

    method = methods.get(config.method)
    agent = methods.build_agent(config, data, info) if agent is None else agent
    rt = SeedRuntime.from_config(config.seed, config.num_seeds)
    transitions = data.transitions()
    new_model = lambda k: init_model_state(k[0], transitions, config.model) if method.NEEDS_MODEL else None
    # as train._restore_or_start: every seed's initial state, stacked when there are several
    state = jax.eval_shape(lambda: rt.stack([method.init_state(agent, k[2], new_model(k)) for k in rt.all_keys],
                                            place=False))
    seed_state = jax.eval_shape(lambda s: rt.seed_view(s, 0), state)
    a_state, a_data, a_seed = abstract(state), abstract(data), abstract(seed_state)
    key = abstract(jax.random.PRNGKey(0))
    seeds = len(rt.seeds)
    per_seed = (lambda x: jax.ShapeDtypeStruct((seeds, *x.shape), x.dtype)) if rt.stacked else (lambda x: x)

    update_step, _ = rt.compile(method.build_update_step(agent), data)
    programs = [Program("update_step", update_step, (a_state, a_data))]

    if method.NEEDS_MODEL:  # fit_seeds: the first fit, and every refit of the hook
        static = static_from_config(config.model, config.compute.model_dtype)
        model = jax.eval_shape(lambda: new_model(rt.keys[0]))
        fit_data = jax.eval_shape(lambda m: prepare_fit_data(m, jax.random.PRNGKey(0), transitions, None,
                                                             float(config.model.holdout_fraction),
                                                             int(config.model.max_holdout)), model)
        inf = jax.ShapeDtypeStruct((int(config.model.num_members),), jnp.float32)
        carry = EpochCarry(model.params, model.opt_state, model.params, inf, inf)
        if rt.stacked:  # (carry, key, data, active) of every seed
            args = jax.tree.map(per_seed, (carry, key, fit_data, jax.ShapeDtypeStruct((), jnp.bool_)))
            programs.append(Program("fit_epoch", make_seeds_epoch_fn(static, config.model.seed_batching), args))
        else:
            programs.append(Program("fit_epoch", make_epoch_fn(static), abstract((carry, key, fit_data))))

    hook = method.make_hook(agent, rt)
    if hook is not None:  # AMPL: (a phased MIW block), the refit weights, then fit_seeds (above)
        weights = closure_fn(hook.run, "weights")
        programs.append(Program("refit_weights", weights, (a_state.miw, a_data.observations, a_data.actions)))
        phase = closure_fn(hook.run, "phase")
        if phase is not None:
            programs.append(Program("miw_phase", phase, (a_state, a_data)))

    eval_obs = jax.ShapeDtypeStruct((int(config.eval.episodes), info.obs_dim), jnp.float32)
    selects = [("select_action", method.make_select_action(agent))]
    single = getattr(method, "make_single_sample_action", None)
    if single is not None and config.eval.one_sample_too:
        selects.append(("select_action_one_sample", single(agent)))
    for name, select in selects:  # AMPL's is a lambda around a jitted function: the same program
        programs.append(Program(name, select if hasattr(select, "lower") else jax.jit(select), (a_seed, key, eval_obs)))

    diagnose = method.make_diagnostics(agent)
    if diagnose is not None:
        programs.append(Program("diagnostics_on_data", closure_fn(diagnose.fn, "on_data"), (a_seed, a_data, key)))
        rec = int(diagnose.record)
        rows = lambda d: jax.ShapeDtypeStruct((rec, d), jnp.float32)
        programs.append(Program("diagnostics_on_policy", closure_fn(diagnose.fn, "on_policy"),
                                (a_seed.model, rows(info.obs_dim), rows(info.act_dim), rows(info.obs_dim),
                                 jax.ShapeDtypeStruct((rec,), jnp.bool_))))

    programs.append(Program("nonfinite_guard", closure_fn(train.make_nonfinite_check(state), "finite"), (a_state,)))
    return programs
