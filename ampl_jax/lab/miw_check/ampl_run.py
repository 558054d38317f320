"""The AMPL run behind the check: trained once into <workdir>/ampl_run and reused; its checkpoints
give the AMPL target policies (actor and critic at a step) and the world model every state holds.
Without an ampl:STEP policy there is no run: the states hold an unfitted world model, which the
check's estimators never read (their test function is the critic)."""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import jax
import ml_collections

from ampl_jax import checkpoint, train
from ampl_jax.config import validation as configuration
from ampl_jax.methods.ampl import init_state
from ampl_jax.lab.miw_check import OptionError
from ampl_jax.types import OfflineData
from ampl_jax.world_model.fit import init_model_state


def ensure_ampl_run(config: ml_collections.ConfigDict, run_dir: str, log: Callable[[str], None]) -> dict[str, Any]:
    """The run's summary; trained first unless its summary.json is there (an interrupted run resumes).

    A finished run of other settings is refused rather than extended: its checkpoints would not be
    the ones the options name.
    """
    summary_path = os.path.join(run_dir, "summary.json")
    if os.path.exists(summary_path):
        with open(os.path.join(run_dir, "config.json")) as f:
            diffs = configuration.differences(json.load(f), configuration.to_dict(config), frozenset())
        if diffs:
            raise OptionError(f"{run_dir} holds an AMPL run of other settings ({'; '.join(diffs[:3])}): "
                              "use another --workdir")
        with open(summary_path) as f:
            return json.load(f)
    log(f"AMPL run -> {run_dir} ({config.train.total_steps} iterations, checkpoints every "
        f"{config.checkpoint.every}; dataset {config.dataset.id})")
    return train.run(config, run_dir, progress=False)


def restore_state(config: ml_collections.ConfigDict, agent: Any, data: OfflineData, run_dir: str, step: int) -> Any:
    """The run's whole TrainState at checkpoint `step` (its structure from a fresh state, as train.run's)."""
    keys = jax.random.split(jax.random.PRNGKey(config.seed), 4)
    target = jax.eval_shape(lambda: init_state(agent, keys[2], init_model_state(keys[0], data.transitions(),
                                                                                config.model)))
    with checkpoint.Checkpoints(run_dir, config.checkpoint.keep) as ckpts:
        if step not in ckpts.steps():
            raise OptionError(f"no checkpoint at step {step} in {run_dir} (have {ckpts.steps()}); "
                              "choose ampl:STEP among them")
        state, _ = ckpts.restore(step, target)
    return state


def world_model(config: ml_collections.ConfigDict, agent: Any, data: OfflineData, run_dir: str | None) -> Any:
    """The world model the policies' states hold: the run's last, or (no run) an unfitted one."""
    if run_dir is None:
        return init_model_state(jax.random.split(jax.random.PRNGKey(config.seed), 4)[0], data.transitions(),
                                config.model)
    return restore_state(config, agent, data, run_dir, checkpoint.list_steps(run_dir)[-1]).model
