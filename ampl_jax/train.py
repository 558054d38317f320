"""The host loop: data, first model fit, then chunks of the compiled update_step.

Everything heavy runs inside `update_step` (one device call per rollout period); the host only
evaluates, logs, refits the world model every `model_retrain_epochs`, checkpoints, and writes
results. A run is a pure function of (config, dataset): every key is derived from the seed (the
evaluation's from (seed, step)), and a checkpoint holds everything else the loop carries, so a
run killed at any point and resumed ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from ampl_jax import checkpoint, configuration, distributed, precision
from ampl_jax import diagnostics
from ampl_jax import miw as miw_lib
from ampl_jax.data import preprocess, scores
from ampl_jax.data.load import DatasetError, DatasetNotFoundError, load_dataset
from ampl_jax.evaluation import check_env_matches, evaluate
from ampl_jax.metrics import (CSV_NAME, D4RL_COLUMN, TB_DIR, MeanAccumulator, MetricsWriter, plot_learning_curve,
                              truncate_jsonl, write_json)
from ampl_jax.state import Agent, TrainState, init_train_state, make_agent
from ampl_jax.types import DatasetInfo, OfflineData
from ampl_jax.update import (build_update_step, make_dataset_weights, make_miw_phase, make_select_action,
                             make_update_step)
from ampl_jax.world_model.fit import fit, init_model_state
from ampl_jax.world_model.termination import termination_fn

FITS_NAME = "model_fits.jsonl"


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a loss became NaN); the message names what and when."""


def load_data(config: ml_collections.ConfigDict, *, progress: bool = True) -> tuple[OfflineData, DatasetInfo]:
    """Load the dataset, creating it locally first when the config allows and it is missing."""
    d = config.dataset
    dataset_id = d.id
    try:
        data, info = load_dataset(dataset_id, download=d.download)
    except DatasetNotFoundError:
        if d.fallback_id and d.fallback_id != d.id:
            # Offline: the official id is not in the local store; use the locally made one.
            print(f"Dataset {d.id!r} is not in the local Minari store and download is off: using the local "
                  f"{d.fallback_id!r} instead (--config.dataset.download=True fetches the official one).", flush=True)
            dataset_id = d.fallback_id
            try:
                data, info = load_dataset(dataset_id)
            except DatasetNotFoundError:
                if not d.create_if_missing:
                    raise
                data, info = _create(config, dataset_id, progress)
        elif not d.create_if_missing:
            raise
        else:
            data, info = _create(config, dataset_id, progress)
    if d.mu0 == "env":
        data = data._replace(init_observations=_env_initial_states(info.env_id, d.mu0_env_samples, config.seed))
    return data, info


def _create(config: ml_collections.ConfigDict, dataset_id: str, progress: bool) -> tuple[OfflineData, DatasetInfo]:
    """Make a missing local dataset with make_dataset (real env, shipped behaviour policy)."""
    from ampl_jax.data.make_dataset import make_dataset

    d = config.dataset
    if not d.create_env:
        raise DatasetError(f"dataset {dataset_id!r} is missing and config.dataset.create_env is empty: "
                           "set it to a Gymnasium id such as Hopper-v5")
    print(f"Dataset {dataset_id!r} not found locally: creating it from {d.create_env} ({d.create_policy} "
          f"policy, {d.create_steps} steps).", flush=True)
    make_dataset(d.create_env, d.create_policy, d.create_steps, config.seed, dataset_id, progress=progress)
    return load_dataset(dataset_id)


def _env_initial_states(env_id: str, n: int, seed: int) -> jax.Array:
    """The official code's mu0: states from env.reset() (touches the simulator, not the data)."""
    import gymnasium as gym

    env = gym.make(env_id)
    obs = [env.reset(seed=seed + i)[0] for i in range(n)]
    env.close()
    return jnp.asarray(np.stack(obs), jnp.float32)


def method_module(config: ml_collections.ConfigDict):
    """None for AMPL itself, else the baseline module (same interface: make_agent, init_state, ...)."""
    if config.method == "ampl":
        return None
    from ampl_jax import baselines

    return baselines.get(config.method)


def build(config: ml_collections.ConfigDict, data: OfflineData, info: DatasetInfo) -> Agent:
    check_env_matches(info.env_id, info.obs_dim, info.act_dim)
    obs_range = preprocess.obs_range(jnp.concatenate([data.observations, data.next_observations]))
    bound = float(preprocess.reward_bound(data.scaled_rewards))
    module = method_module(config)
    if module is None:
        return make_agent(config, info, termination_fn(info.env_id), np.asarray(obs_range), bound)
    extra = {"data": data} if getattr(module, "AGENT_NEEDS_DATA", False) else {}  # e.g. TD3+BC's state statistics
    return module.make_agent(config, info, termination_fn(info.env_id), np.asarray(obs_range), bound, **extra)


def _check_finite(metrics: dict[str, float], step: int, last_good: str) -> None:
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise TrainingError(f"non-finite {', '.join(sorted(bad))} at step {step}: the run diverged; {last_good}; "
                            "lower the learning rates or check the dataset")


def make_nonfinite_check(state: TrainState) -> Callable[[TrainState], list[str]]:
    """A cheap divergence guard: one jitted all-finite reduction per float leaf of the state.

    Returns a function giving the names of the leaves holding a NaN or inf (empty when all are
    finite); it runs before every evaluation and every checkpoint, so no checkpoint holds one.
    """
    paths, _ = zip(*jax.tree_util.tree_flatten_with_path(state)[0])
    names = [checkpoint.leaf_name(p) for p in paths]

    @jax.jit
    def finite(s: TrainState) -> jax.Array:
        return jnp.stack([jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.array(True)
                          for x in jax.tree.leaves(s)])

    def check(s: TrainState) -> list[str]:
        ok = np.asarray(finite(s))
        return [n for n, good in zip(names, ok) if not good]

    return check


class WorkdirError(RuntimeError):
    """The workdir cannot be used as asked (unwritable, or it holds another run); nothing was changed."""


# What a run writes in its workdir, besides the checkpoints: all of it goes on --overwrite.
RUN_FILES = ("config.json", CSV_NAME, FITS_NAME, "summary.json", "learning_curve.png")
RUN_DIRS = (checkpoint.CKPT_DIR, checkpoint.CORRUPT_DIR, TB_DIR)

# `main` exits with this status when SIGTERM stopped a run after saving a checkpoint (128 + 15,
# what a shell reports for a process ended by SIGTERM): the run is incomplete but resumable.
EXIT_PREEMPTED = 143


def _prepare_workdir(workdir: str) -> None:
    """Create the workdir and prove it writable, before any work is done."""
    try:
        os.makedirs(workdir, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=workdir, prefix=".write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise WorkdirError(f"workdir {workdir!r} is not usable ({e.strerror or type(e).__name__}): "
                           "choose another --workdir") from None


def _check_same_run(workdir: str, resolved: dict) -> None:
    """Refuse a workdir holding a run of another config (keys in RESUMABLE_KEYS may differ)."""
    saved = []
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        try:
            with open(path) as f:
                saved.append(json.load(f))
        except (OSError, ValueError) as e:
            raise WorkdirError(f"{path} is unreadable ({type(e).__name__}); use another --workdir, "
                               "or --overwrite to discard the run in it") from None
    extra = checkpoint.read_extra(workdir)
    if extra and isinstance(extra.get("config"), dict):
        saved.append(extra["config"])
    for cfg in saved:
        diffs = configuration.differences(cfg, resolved)
        if diffs:
            shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
            raise WorkdirError(
                f"workdir {workdir!r} holds a run with a different config ({shown}); use another --workdir, "
                f"or --overwrite to discard that run (on resume only {', '.join(sorted(configuration.RESUMABLE_KEYS))} "
                "may change)"
            )


def _clear_run(workdir: str) -> None:
    """--overwrite: remove what an earlier run wrote here (only the names a run writes)."""
    for name in RUN_DIRS:
        shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    for name in RUN_FILES:
        path = os.path.join(workdir, name)
        if os.path.exists(path):
            os.remove(path)


@contextlib.contextmanager
def _sigterm_flag() -> Iterator[dict[str, str | None]]:
    """While active, SIGTERM only sets flag["signal"]: the loop saves and stops at the next chunk."""
    flag: dict[str, str | None] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag["signal"] = signal.Signals(signum).name

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def eval_key(k_eval: jax.Array, step: int) -> jax.Array:
    """The key of the evaluation at `step`: derived, never carried, so a resumed run draws the same."""
    return jax.random.fold_in(k_eval, step)


def run(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True,
        overwrite: bool = False) -> dict[str, Any]:
    """Train AMPL as the config says, resuming from the newest checkpoint in `workdir` if any.

    Writes config.json, metrics.csv, TensorBoard events, model_fits.jsonl, checkpoints/,
    summary.json and learning_curve.png. Every check that can refuse the run (config, workdir,
    earlier run of another config, dataset, shapes) runs before anything in `workdir` changes;
    `overwrite=True` discards an earlier run (only after those checks passed). A SIGTERM saves a
    checkpoint at the next chunk boundary and returns {"interrupted": "SIGTERM", ...} without a summary.

    In a multi-process job (distributed.maybe_initialize_multihost) every process trains its own
    block of the seeds; only process 0 touches `workdir` (logs, checkpoints, summary), after
    gathering the other processes' metrics and states.

    Everything runs under `compute.matmul_precision` (jax.default_matmul_precision; "default":
    JAX's own), which is part of every jitted program's cache key.
    """
    configuration.validate(config)
    with precision.matmul_precision(config.compute.matmul_precision):
        return _run(config, workdir, progress=progress, overwrite=overwrite)


def _run(config: ml_collections.ConfigDict, workdir: str, *, progress: bool, overwrite: bool) -> dict[str, Any]:
    """`run` after validation, inside the matmul-precision context."""
    start = time.time()
    resolved = configuration.to_dict(config)
    multi = jax.process_count() > 1
    is_main = distributed.is_main_process()

    t = config.train
    period = config.rollout.period
    chunks = math.ceil(t.total_steps / period)
    eval_chunks = max(1, math.ceil(t.eval_every / period))
    ckpt_chunks = max(1, math.ceil(config.checkpoint.every / period))
    refit_steps = t.model_retrain_epochs * t.epoch_length

    # Seeds: config.seed + i for i < num_seeds. Each seed's keys are those of a run with that
    # seed alone; with several seeds the state gets a leading seed axis (vmapped update_step,
    # the axis sharded over all local devices). Process p of P trains seeds p*n .. p*n+n-1, n = num_seeds/P.
    num_seeds = config.num_seeds
    stacked = num_seeds > 1
    all_seeds = [config.seed + i for i in range(num_seeds)]
    seeds = distributed.agree(lambda: distributed.process_seeds(config.seed, num_seeds))
    lo, hi = seeds[0] - config.seed, seeds[-1] - config.seed + 1
    seed_keys = [jax.random.split(jax.random.PRNGKey(s), 4) for s in all_seeds]  # k_model, k_fit, k_state, k_eval
    local_keys = seed_keys[lo:hi]
    mesh = distributed.seed_mesh(len(seeds)) if stacked else None

    def prepare() -> None:
        if is_main:
            _prepare_workdir(workdir)
            if not overwrite:
                _check_same_run(workdir, resolved)

    distributed.agree(prepare)
    # Process 0 first, so that processes sharing a Minari store never create a dataset at once.
    first = distributed.agree(lambda: load_data(config, progress=progress) if is_main else None)
    data, info = distributed.agree(lambda: first if is_main else load_data(config, progress=progress))
    agent = distributed.agree(lambda: build(config, data, info))
    if overwrite and is_main:
        _clear_run(workdir)
    transitions = data.transitions()

    module = method_module(config)
    needs_model = module is None or module.NEEDS_MODEL
    init_state = init_train_state if module is None else module.init_state

    def fresh_state(models: list, keys: list) -> TrainState:
        states = [init_state(agent, k[2], m) for k, m in zip(keys, models)]
        return distributed.stack_seeds(states) if stacked else states[0]

    def place(state: TrainState) -> TrainState:
        return state if mesh is None else distributed.shard_seeds(state, mesh)

    def seed_view(state: TrainState, i: int) -> TrainState:
        return distributed.unstack_seed(state, i) if stacked else state

    def gathered(local: list) -> list:
        """Per-seed values of every process, in seed order."""
        return [x for block in distributed.gather_json(local) for x in block]

    def write_fits(rows: list[dict]) -> None:
        rows = gathered(rows)
        if is_main:
            _append_jsonl(os.path.join(workdir, FITS_NAME), rows)

    ckpts = distributed.agree(lambda: checkpoint.Checkpoints(workdir, config.checkpoint.keep) if is_main else None)
    writer = None
    try:
        target = jax.eval_shape(lambda: fresh_state(
            [init_model_state(k[0], transitions, config.model) if needs_model else None for k in seed_keys], seed_keys))
        # the last check that can refuse: nothing changed before it
        restored = distributed.agree(lambda: ckpts.restore_latest(target) if is_main else None)
        if multi:
            head = distributed.gather_json(None if restored is None else [restored[0], restored[2]])[0]
            if head is not None:
                full = distributed.broadcast_from_main(
                    restored[1] if is_main else jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), target))
                restored = (head[0], jax.tree.map(lambda x: x[lo:hi], full), head[1])
        fits_path = os.path.join(workdir, FITS_NAME)
        if is_main:
            write_json(os.path.join(workdir, "config.json"), resolved)
        if restored is not None:
            start_step, state, extra = restored
            state = place(state)
            if is_main:
                print(f"Resuming from the checkpoint at step {start_step} in {ckpts.directory} "
                      "(the initial model fit is skipped).", flush=True)
                writer = MetricsWriter(workdir, resume=True)
                writer.truncate_after(start_step)
                truncate_jsonl(fits_path, start_step)
            local = slice(lo, hi) if stacked else slice(0, 1)
            accs = [MeanAccumulator.from_state(p) for p in extra["pending_metrics"][local]]
            last_eval = [dict(e) for e in extra["last_eval"][local]]
            fit_epochs = list(extra["model_fit_epochs"][local])
            wall_before = float(extra["wall_seconds"])
            last_refit = int(extra.get("last_refit", start_step))
        else:
            last_refit = 0
            start_step, wall_before = 0, 0.0
            if is_main:
                writer = MetricsWriter(workdir, resume=False)
                writer.truncate_after(-1)  # TensorBoard: drop events of an earlier, unfinished attempt
                truncate_jsonl(fits_path, -1)
            accs, last_eval = [MeanAccumulator() for _ in seeds], [{} for _ in seeds]
            models, fit_epochs, fit_rows = [], [], []
            for seed, k in zip(seeds, local_keys):  # one plain-MLE fit per seed, as each would run alone
                if not needs_model:  # behaviour cloning: no world model at all
                    models.append(None)
                    fit_epochs.append(None)
                    continue
                model = init_model_state(k[0], transitions, config.model)
                model, fit_info = fit(model, k[1], transitions, None, config.model, progress=progress and is_main,
                                      dtype=config.compute.model_dtype)
                fit_rows.append(_fit_row(0, fit_info, {"seed": seed} if stacked else None))
                models.append(model)
                fit_epochs.append(fit_info.get("epochs"))
            write_fits(fit_rows)
            state = place(fresh_state(models, local_keys))

        nonfinite = make_nonfinite_check(state)
        last_saved = start_step if restored is not None else None

        def last_good() -> str:
            if last_saved is None:
                return "no checkpoint was saved"
            where = ckpts.directory if is_main else os.path.join(workdir, checkpoint.CKPT_DIR)
            return f"the last good checkpoint (step {last_saved}) in {where} is intact"

        def guard(step: int) -> None:
            bad = gathered(nonfinite(state)) if multi else nonfinite(state)
            if bad:
                shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
                raise TrainingError(f"non-finite values in {shown} at step {step}: the run diverged; {last_good()}; "
                                    "lower the learning rates or check the dataset")

        def save(step: int) -> None:
            nonlocal last_saved
            guard(step)
            whole = distributed.gather_seeds(state) if multi else state
            pending, evals, epochs = gathered([acc.state() for acc in accs]), gathered(last_eval), gathered(fit_epochs)
            if is_main:
                ckpts.save(step, whole, {
                    "config": resolved,
                    "pending_metrics": pending,
                    "last_eval": evals,
                    "model_fit_epochs": epochs,
                    "wall_seconds": wall_before + time.time() - start,
                    "last_refit": last_refit,
                })
            last_saved = step

        if restored is None:
            save(0)  # the initial fit is the slow part of a start: never do it twice

        if not stacked:
            update_step = make_update_step(agent) if module is None else module.make_update_step(agent)
        else:
            pure_step = build_update_step(agent) if module is None else module.build_update_step(agent)
            update_step = distributed.make_seeded_step(pure_step, mesh)
            data = distributed.replicate(data, mesh)
        if module is None:
            ampl_select = make_select_action(agent)
            select = lambda st, key, obs: ampl_select(st.actor, st.critic, key, obs)
            weights_fn = make_dataset_weights(agent)
        else:  # baselines: their own policy; MOPO fits its model once (no MIW, no reweighted refits)
            select, weights_fn = module.make_select_action(agent), None
        diagnose = diagnostics.make_diagnostics(agent) if module is None else None  # AMPL's instruments
        miw_phase = (make_miw_phase(agent, miw_lib.phase_steps(config.miw))
                     if module is None and config.miw.schedule == "phased" else None)

        def make_act_fn(key: jax.Array, seed_state: TrainState) -> Callable[[np.ndarray], np.ndarray]:
            calls = itertools.count()

            def act_fn(obs: np.ndarray) -> np.ndarray:
                sub = jax.random.fold_in(key, next(calls))
                return np.asarray(select(seed_state, sub, jnp.asarray(obs, jnp.float32)))

            return act_fn

        def refit_due(step: int) -> bool:
            """As the authors: a refit opens epochs 100, 200, ..., never after the last iteration."""
            return (weights_fn is not None and config.miw.schedule != "none" and step % refit_steps < period
                    and refit_steps <= step < t.total_steps and step != last_refit)

        def refit(step: int) -> None:
            nonlocal state, last_refit
            refitted, fit_rows = [], []
            for i, seed in enumerate(seeds):
                new, row = _refit(config, seed_view(state, i), data, transitions, weights_fn, miw_phase,
                                  seed if stacked else None)
                refitted.append(new)
                fit_rows.append(row)
            write_fits(fit_rows)
            state = place(distributed.stack_seeds(refitted)) if stacked else refitted[0]
            last_refit = step

        if restored is not None and refit_due(start_step):  # a finished run extended: its end's refit is due now
            refit(start_step)

        interrupted = None
        timer, timed_steps = time.time(), 0
        bar = tqdm(total=chunks * period, initial=min(start_step, chunks * period), disable=not (progress and is_main),
                   desc=config.method.upper(), unit="it", dynamic_ncols=True)
        try:
            with _sigterm_flag() as flag:
                for chunk in range(start_step // period, chunks):
                    state, metrics = update_step(state, data)
                    metrics = jax.device_get(metrics)
                    step = int(np.asarray(jax.device_get(state.step)).reshape(-1)[0])
                    error = None
                    try:
                        for i in range(len(seeds)):
                            seed_metrics = {k: float(np.asarray(v).reshape(-1)[i]) for k, v in metrics.items()}
                            _check_finite(seed_metrics, step, last_good())
                            accs[i].add(seed_metrics)
                    except TrainingError as e:
                        error = str(e)
                    signal_name = flag["signal"]
                    if multi:  # every process stops on any one's error or SIGTERM, at the same chunk
                        status = distributed.gather_json([error, signal_name])
                        error = next((e for e, _ in status if e), None)
                        signal_name = next((s for _, s in status if s), None)
                    if error:
                        raise TrainingError(error)
                    timed_steps += period
                    bar.update(period)

                    if refit_due(step):
                        refit(step)

                    if (chunk + 1) % eval_chunks == 0 or chunk == chunks - 1:
                        guard(step)
                        elapsed = time.time() - timer
                        rows = []
                        for i, seed in enumerate(seeds):
                            res = evaluate(make_act_fn(eval_key(local_keys[i][3], step), seed_view(state, i)),
                                           info.env_id, config.eval.episodes, seed=seed + 10_000 + step,
                                           max_episode_steps=None if config.eval.max_episode_steps < 0
                                           else config.eval.max_episode_steps,
                                           record=diagnostics.RECORD if diagnose is not None else 0)
                            scored = {"return_mean": float(res.return_mean), "return_std": float(res.return_std),
                                      "normalized_score": _score(res.return_mean, info)}
                            d4rl = _d4rl_score(res.return_mean, info)
                            last_eval[i] = {**scored, D4RL_COLUMN: d4rl}
                            # The D4RL-scale score is the last column, so older columns keep their order.
                            diag = ({} if diagnose is None else diagnose(
                                seed_view(state, i), data, jax.random.fold_in(eval_key(local_keys[i][3], step), 1),
                                res.transitions))
                            rows.append({"seed": seed, **scored, **accs[i].means(),
                                         "iters_per_sec": timed_steps / max(elapsed, 1e-9),
                                         "wall_seconds": wall_before + time.time() - start, D4RL_COLUMN: d4rl,
                                         **diag})
                        rows = gathered(rows)
                        if is_main:
                            # a run resumed from before these columns existed
                            writer.add_columns([D4RL_COLUMN, *(diagnostics.DIAG_COLUMNS if diagnose else ())])
                            for row in rows:
                                writer.write(step, row, tb_prefix=f"seed{row['seed']}/" if stacked else "")
                        bar.set_postfix(score=f"{float(np.mean([r['normalized_score'] for r in rows])):.1f}")
                        timer, timed_steps = time.time(), 0

                    if (chunk + 1) % ckpt_chunks == 0 or chunk == chunks - 1 or signal_name:
                        save(step)
                    if signal_name:
                        interrupted = signal_name
                        break
        finally:
            bar.close()
            if writer is not None:
                writer.close()
    finally:
        if ckpts is not None:
            ckpts.close()

    steps_done = int(np.asarray(jax.device_get(state.step)).reshape(-1)[0])
    if interrupted:
        return {"interrupted": interrupted, "steps": steps_done,
                "checkpoint_dir": os.path.abspath(os.path.join(workdir, checkpoint.CKPT_DIR))}

    last_eval, fit_epochs = gathered(last_eval), gathered(fit_epochs)
    finals = [e.get("normalized_score", float("nan")) for e in last_eval]
    d4rl_finals = [e.get(D4RL_COLUMN, float("nan")) for e in last_eval]
    summary = {
        "dataset_id": info.dataset_id,
        "env_id": info.env_id,
        "seed": config.seed,
        "steps": steps_done,
        # one seed: its score; several: the mean over seeds (each seed's in *_per_seed)
        "final_normalized_score": float(np.mean(finals)),
        "final_return_mean": float(np.mean([e.get("return_mean", float("nan")) for e in last_eval])),
        "final_return_std": last_eval[0].get("return_std") if not stacked else None,
        "model_fit_epochs": fit_epochs[0] if not stacked else fit_epochs,
        "resumed_from_step": start_step if restored is not None else None,
        **({"seeds": all_seeds, "final_normalized_score_per_seed": finals,
            "final_normalized_score_std": float(np.std(finals, ddof=1))} if stacked else {}),
        # The same returns on D4RL's v2 scale (approximate: the envs are v5); see "score_scales".
        "final_d4rl_normalized_score": float(np.mean(d4rl_finals)),
        **({"final_d4rl_normalized_score_per_seed": d4rl_finals,
            "final_d4rl_normalized_score_std": float(np.std(d4rl_finals, ddof=1))} if stacked else {}),
        "score_scales": _score_scales(info),
        **({"processes": jax.process_count()} if multi else {}),
        "wall_seconds": wall_before + time.time() - start,
    }
    if is_main:
        plot_learning_curve(os.path.join(workdir, CSV_NAME), os.path.join(workdir, "learning_curve.png"))
        write_json(os.path.join(workdir, "summary.json"), summary)
    return summary


def _score(return_mean: float, info: DatasetInfo) -> float:
    if info.ref_min_score is None or info.ref_max_score is None:
        return float("nan")
    return float(preprocess.normalized_score(return_mean, info.ref_min_score, info.ref_max_score))


def _d4rl_score(return_mean: float, info: DatasetInfo) -> float:
    """The return on D4RL's v2 scale (random 0, expert 100); nan where D4RL has no reference."""
    if info.d4rl_ref_min_score is None or info.d4rl_ref_max_score is None:
        return float("nan")
    return scores.d4rl_normalized_score(return_mean, info.env_id, (info.d4rl_ref_min_score, info.d4rl_ref_max_score))


def _score_scales(info: DatasetInfo) -> dict[str, str]:
    """What 0 and 100 mean for each score in summary.json: the two scales differ."""
    return {
        "final_normalized_score": (
            f"dataset scale: 0 = ref_min_score ({info.ref_min_score}), 100 = ref_max_score "
            f"({info.ref_max_score}) of the dataset (its metadata, else D4RL's table)"),
        "final_d4rl_normalized_score": (
            f"D4RL v2 scale: 0 = {info.d4rl_ref_min_score}, 100 = {info.d4rl_ref_max_score}. {scores.D4RL_SCALE_NOTE}"
            if info.d4rl_ref_min_score is not None else f"none: D4RL has no reference returns for {info.env_id}"),
    }


def _fit_row(step: int, info: dict, extra: dict | None = None) -> dict:
    """One JSON line of model_fits.jsonl: epochs, holdout losses, elites, w stats."""
    return {"step": step, **{k: np.asarray(v).tolist() for k, v in info.items() if k != "train_loss_history"},
            **(extra or {})}


def _append_jsonl(path: str, rows: list[dict]) -> None:
    if not rows:  # e.g. BC: no world model, so no model_fits.jsonl at all
        return
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _refit(config, state: TrainState, data: OfflineData, transitions, weights_fn, miw_phase,
           seed: int | None = None) -> tuple[TrainState, dict]:
    """Every model_retrain_epochs: (phased: a block of MIW steps), then a w-weighted warm refit.

    Returns the new state and its model_fits.jsonl row.
    """
    extra = {} if seed is None else {"seed": seed}
    if miw_phase is not None:
        state, m = miw_phase(state, data)
        extra.update({f"phase_{k}": float(v) for k, v in jax.device_get(m).items()})
    w = weights_fn(state.miw, data.observations, data.actions)
    key, k_fit = jax.random.split(state.key)
    model, info = fit(state.model, k_fit, transitions, w, config.model, max_epochs=config.model.refit_max_epochs,
                      dtype=config.compute.model_dtype)
    w_np = np.asarray(w)
    extra.update({"w_min": float(w_np.min()), "w_max": float(w_np.max()), "w_std": float(w_np.std())})
    if config.agent.weighted_regularizer:  # WPR weighs its GAN losses by the last refit's weights
        state = state.replace(data_weights=w)
    return state.replace(model=model, key=key), _fit_row(int(state.step), info, extra)
