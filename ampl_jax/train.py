"""The host loop: data, first model fit, then chunks of the compiled update_step.

Everything heavy runs inside `update_step` (one device call per rollout period); the host only
evaluates, logs, refits the world model every `model_retrain_epochs`, and writes results.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from ampl_jax import configuration
from ampl_jax.data import preprocess
from ampl_jax.data.load import DatasetError, DatasetNotFoundError, load_dataset
from ampl_jax.evaluation import check_env_matches, evaluate
from ampl_jax.metrics import MeanAccumulator, MetricsWriter, plot_learning_curve, write_json
from ampl_jax.state import Agent, TrainState, init_train_state, make_agent
from ampl_jax.types import DatasetInfo, OfflineData
from ampl_jax.update import make_dataset_weights, make_miw_phase, make_select_action, make_update_step
from ampl_jax.world_model.fit import fit, init_model_state
from ampl_jax.world_model.termination import termination_fn


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a loss became NaN); the message names what and when."""


def load_data(config: ml_collections.ConfigDict) -> tuple[OfflineData, DatasetInfo]:
    """Load the dataset, creating it locally first when the config allows and it is missing."""
    d = config.dataset
    try:
        data, info = load_dataset(d.id, download=d.download)
    except DatasetNotFoundError:
        if not d.create_if_missing:
            raise
        from ampl_jax.data.make_dataset import make_dataset

        if not d.create_env:
            raise DatasetError(
                f"dataset {d.id!r} is missing and config.dataset.create_env is empty: set it to a Gymnasium id"
            ) from None
        print(f"Dataset {d.id!r} not found locally: creating it from {d.create_env} ({d.create_policy} policy, "
              f"{d.create_steps} steps).", flush=True)
        make_dataset(d.create_env, d.create_policy, d.create_steps, config.seed, d.id)
        data, info = load_dataset(d.id)
    if d.mu0 == "env":
        data = data._replace(init_observations=_env_initial_states(info.env_id, d.mu0_env_samples, config.seed))
    return data, info


def _env_initial_states(env_id: str, n: int, seed: int) -> jax.Array:
    """The official code's mu0: states from env.reset() (touches the simulator, not the data)."""
    import gymnasium as gym

    env = gym.make(env_id)
    obs = [env.reset(seed=seed + i)[0] for i in range(n)]
    env.close()
    return jnp.asarray(np.stack(obs), jnp.float32)


def build(config: ml_collections.ConfigDict, data: OfflineData, info: DatasetInfo) -> Agent:
    check_env_matches(info.env_id, info.obs_dim, info.act_dim)
    obs_range = preprocess.obs_range(jnp.concatenate([data.observations, data.next_observations]))
    bound = float(preprocess.reward_bound(data.scaled_rewards))
    return make_agent(config, info, termination_fn(info.env_id), np.asarray(obs_range), bound)


def _check_finite(metrics: dict[str, float], step: int) -> None:
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise TrainingError(f"non-finite {', '.join(sorted(bad))} at step {step}: the run diverged; "
                            "lower the learning rates or check the dataset")


def run(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Train AMPL as the config says; write config.json, metrics.csv, TensorBoard, summary.json, plot."""
    configuration.validate(config)
    start = time.time()
    os.makedirs(workdir, exist_ok=True)
    if not os.access(workdir, os.W_OK):
        raise PermissionError(f"workdir {workdir!r} is not writable: choose another --workdir")
    write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json_best_effort()))

    data, info = load_data(config)
    agent = build(config, data, info)
    t = config.train
    period = config.rollout.period
    chunks = math.ceil(t.total_steps / period)
    eval_chunks = max(1, math.ceil(t.eval_every / period))
    refit_steps = t.model_retrain_epochs * t.epoch_length

    key = jax.random.PRNGKey(config.seed)
    k_model, k_fit, k_state, k_eval = jax.random.split(key, 4)
    transitions = data.transitions()
    model = init_model_state(k_model, transitions, config.model)
    model, fit_info = fit(model, k_fit, transitions, None, config.model, progress=progress)
    _log_fit(workdir, 0, fit_info)
    state = init_train_state(agent, k_state, model)

    update_step = make_update_step(agent)
    select = make_select_action(agent)
    weights_fn = make_dataset_weights(agent)
    miw_phase = make_miw_phase(agent, config.miw.phased_steps) if config.miw.schedule == "phased" else None

    def act_fn(obs: np.ndarray) -> np.ndarray:
        nonlocal k_eval
        k_eval, sub = jax.random.split(k_eval)
        return np.asarray(select(state.actor, state.critic, sub, jnp.asarray(obs, jnp.float32)))

    writer = MetricsWriter(workdir)
    acc = MeanAccumulator()
    last_score = float("nan")
    last_eval: dict[str, float] = {}
    timer, timed_steps = time.time(), 0
    bar = tqdm(total=chunks * period, disable=not progress, desc="AMPL", unit="it", dynamic_ncols=True)
    try:
        for chunk in range(chunks):
            state, metrics = update_step(state, data)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            step = int(state.step)
            _check_finite(metrics, step)
            acc.add(metrics)
            timed_steps += period
            bar.update(period)

            if config.miw.schedule != "none" and step % refit_steps < period and step >= refit_steps:
                state = _refit(config, state, data, transitions, weights_fn, miw_phase, workdir)

            if (chunk + 1) % eval_chunks == 0 or chunk == chunks - 1:
                elapsed = time.time() - timer
                res = evaluate(act_fn, info.env_id, config.eval.episodes, seed=config.seed + 10_000 + step,
                               max_episode_steps=None if config.eval.max_episode_steps < 0 else config.eval.max_episode_steps)
                score = _score(res.return_mean, info)
                last_score = score
                last_eval = {"return_mean": float(res.return_mean), "return_std": float(res.return_std),
                             "normalized_score": score}
                row = {**last_eval, **acc.means(),
                       "iters_per_sec": timed_steps / max(elapsed, 1e-9), "wall_seconds": time.time() - start}
                writer.write(step, row)
                bar.set_postfix(score=f"{score:.1f}", ret=f"{res.return_mean:.0f}")
                timer, timed_steps = time.time(), 0
    finally:
        bar.close()
        writer.close()

    plot_learning_curve(os.path.join(workdir, "metrics.csv"), os.path.join(workdir, "learning_curve.png"))
    summary = {
        "dataset_id": info.dataset_id,
        "env_id": info.env_id,
        "seed": config.seed,
        "steps": int(state.step),
        "final_normalized_score": last_score,
        "final_return_mean": last_eval.get("return_mean"),
        "final_return_std": last_eval.get("return_std"),
        "model_fit_epochs": fit_info.get("epochs"),
        "wall_seconds": time.time() - start,
    }
    write_json(os.path.join(workdir, "summary.json"), summary)
    return summary


def _score(return_mean: float, info: DatasetInfo) -> float:
    if info.ref_min_score is None or info.ref_max_score is None:
        return float("nan")
    return float(preprocess.normalized_score(return_mean, info.ref_min_score, info.ref_max_score))


def _log_fit(workdir: str, step: int, info: dict, extra: dict | None = None) -> None:
    """One JSON line per model fit (model_fits.jsonl): epochs, holdout losses, elites, w stats."""
    row = {"step": step, **{k: np.asarray(v).tolist() for k, v in info.items() if k != "train_loss_history"},
           **(extra or {})}
    with open(os.path.join(workdir, "model_fits.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


def _refit(config, state: TrainState, data: OfflineData, transitions, weights_fn, miw_phase, workdir) -> TrainState:
    """Every model_retrain_epochs: (phased: a block of MIW steps), then a w-weighted warm refit."""
    extra = {}
    if miw_phase is not None:
        state, m = miw_phase(state, data)
        extra.update({f"phase_{k}": float(v) for k, v in jax.device_get(m).items()})
    w = weights_fn(state.miw, data.observations, data.actions)
    key, k_fit = jax.random.split(state.key)
    model, info = fit(state.model, k_fit, transitions, w, config.model, max_epochs=config.model.refit_max_epochs)
    w_np = np.asarray(w)
    extra.update({"w_min": float(w_np.min()), "w_max": float(w_np.max()), "w_std": float(w_np.std())})
    _log_fit(workdir, int(state.step), info, extra)
    return state.replace(model=model, key=key)
