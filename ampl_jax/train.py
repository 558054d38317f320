"""The host loop: data, first model fit, then chunks of the method's compiled update step.

Everything heavy runs inside the update step (one device call per rollout period); the host only
runs the method's hook between periods (AMPL: MIW phase and refit), evaluates, logs and
checkpoints. A run is a pure function of (config, dataset): every key is derived from the seed
(the evaluation's and its episodes' from (seed, step)), and a checkpoint holds everything else the loop carries,
so a run killed at any point and resumed ends bit-identical to an uninterrupted one. Where the
seeds live is `runtime.SeedRuntime`'s business, the workdir `rundir.RunFiles`', the method's
`methods`'.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from ampl_jax import checkpoint, distributed, methods, results
from ampl_jax.config import precision, validation as configuration
from ampl_jax.datagen.source import load_data
from ampl_jax.evaluation import episode_seeds, evaluate
from ampl_jax.metrics import D4RL_COLUMN, fit_row
from ampl_jax.rundir import Progress, RunFiles, WorkdirError
from ampl_jax.runtime import SeedRuntime
from ampl_jax.types import DatasetInfo, OfflineData
from ampl_jax.world_model.fit import FitCheckpoint, fit_seeds, init_model_state

__all__ = ["EXIT_PREEMPTED", "TrainingError", "WorkdirError", "load_data", "make_nonfinite_check", "run"]

# `main` exits with this status when SIGTERM stopped a run after saving a checkpoint (128 + 15,
# what a shell reports for a process ended by SIGTERM): the run is incomplete but resumable.
EXIT_PREEMPTED = 143


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a loss became NaN); the message names what and when."""


def run(config: ml_collections.ConfigDict, workdir: str, *, progress: bool = True,
        overwrite: bool = False, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train config.method as the config says, resuming from the newest checkpoint in `workdir` if any.

    Writes config.json, metrics.csv, TensorBoard events, model_fits.jsonl, checkpoints/,
    summary.json and learning_curve.png. Every check that can refuse the run (config, workdir,
    earlier run of another config, dataset, shapes) runs before anything in `workdir` changes;
    `overwrite=True` discards an earlier run (only after those checks passed). A SIGTERM saves a
    checkpoint at the next chunk boundary and returns {"interrupted": "SIGTERM", ...} without a summary.
    A finished run that already reached train.total_steps is left untouched: its summary comes back
    with "already_complete": True.

    `say` (e.g. print) gets the lines a user should see before the slow part starts: steps rounded
    up to whole rollout periods, where the run is written, or that it is complete already.

    In a multi-process job (distributed.maybe_initialize_multihost) every process trains its own
    block of the seeds; only process 0 touches `workdir`. Everything runs under
    `compute.matmul_precision` (jax.default_matmul_precision), part of every jitted program's cache key.
    """
    configuration.validate(config)
    with precision.matmul_precision(config.compute.matmul_precision):
        start = time.time()
        rt = SeedRuntime.from_config(config.seed, config.num_seeds)
        say = say if say is not None and rt.is_main else (lambda line: None)
        note = rounding_note(config)
        if note:
            say(note)
        files = RunFiles(workdir, configuration.to_dict(config), rt, config.checkpoint.keep,
                         tuple(config.checkpoint.keep_steps))
        try:  # close() releases the workdir's lock, whatever fails after prepare() took it
            files.prepare(overwrite)
            total = _whole_periods(config.train.total_steps, config.rollout.period)
            done = None if overwrite else distributed.gather_json(rt.on_main(lambda: files.completed(total)))[0]
            if done is not None:
                say(f"Run already complete: {os.path.abspath(workdir)} reached step {done['steps']} "
                    f"(train.total_steps={config.train.total_steps}); nothing was changed. To train longer, "
                    "raise --config.train.total_steps; to start again, add --overwrite.")
                return {**done, "already_complete": True}
            say(f"Writing the run to {os.path.abspath(workdir)}")
            # Process 0 first, so that processes sharing a Minari store never create a dataset at once.
            first = rt.on_main(lambda: load_data(config, progress=progress))
            data, info = rt.agree(lambda: first if rt.is_main else load_data(config, progress=progress))
            agent = rt.agree(lambda: methods.build_agent(config, data, info))
            if overwrite:
                files.clear()
            return _loop(config, rt, files, methods.get(config.method), agent, data, info, progress, start)
        finally:
            files.close()


def _whole_periods(steps: int, period: int) -> int:
    """`steps` rounded up to whole rollout periods: the loop runs, evaluates and saves only between them."""
    return max(1, math.ceil(steps / period)) * period


def rounding_note(config: ml_collections.ConfigDict) -> str | None:
    """One line naming every step count the loop rounds up to whole rollout periods; None if none is."""
    period = config.rollout.period
    rounded = [f"{key} {value} -> {_whole_periods(value, period)}" for key, value in (
        ("train.total_steps", config.train.total_steps), ("train.eval_every", config.train.eval_every),
        ("checkpoint.every", config.checkpoint.every)) if _whole_periods(value, period) != value]
    if not rounded:
        return None
    return f"Rounded up to whole rollout periods (rollout.period={period}): {', '.join(rounded)}."


def _loop(config, rt: SeedRuntime, files: RunFiles, method, agent, data: OfflineData, info: DatasetInfo,
          progress: bool, start: float) -> dict[str, Any]:
    """Restore or start, then rollout periods: update step, hook, evaluation, checkpoint."""
    period = config.rollout.period
    chunks = math.ceil(config.train.total_steps / period)
    eval_chunks = max(1, math.ceil(config.train.eval_every / period))
    ckpt_chunks = max(1, math.ceil(config.checkpoint.every / period))
    state, prog = _restore_or_start(config, rt, files, method, agent, data, progress, start)
    guard = _Guard(state, rt, files)
    if not prog.resumed:
        guard.save(0, state, prog)  # the initial fit is the slow part of a start: never do it twice
    update_step, step_data = rt.compile(method.build_update_step(agent), data)
    hook, diagnose = method.make_hook(agent, rt), method.make_diagnostics(agent)
    select = method.make_select_action(agent)
    single = getattr(method, "make_single_sample_action", None)
    single = single(agent) if single is not None and config.eval.one_sample_too else None
    if prog.resumed and hook is not None and hook.due(prog.start_step, prog.last_hook):
        state = _run_hook(hook, state, step_data, prog.start_step, files, prog)  # a finished run extended
    interrupted, timer = None, _Timer()
    bar = tqdm(total=chunks * period, initial=min(prog.start_step, chunks * period), unit="it",
               disable=not (progress and rt.is_main), desc=config.method.upper(), dynamic_ncols=True)
    try:
        with _sigterm_flag() as flag:
            for chunk in range(prog.start_step // period, chunks):
                state, metrics = update_step(state, step_data)
                step = rt.step_of(state)
                error = _accumulate(jax.device_get(metrics), prog, rt, step, files.last_good())
                error, signal_name = rt.first_of_any([error, flag["signal"]])  # every process stops together
                if error:
                    raise TrainingError(error)
                timer.add(period)
                bar.update(period)
                if hook is not None and hook.due(step, prog.last_hook):
                    state = _run_hook(hook, state, step_data, step, files, prog)
                last = chunk == chunks - 1
                if (chunk + 1) % eval_chunks == 0 or last:
                    guard(state, step)
                    rows = _evaluate(config, rt, info, state, step_data, step, select, diagnose, prog, timer, single)
                    rows = files.write_evaluation(step, rows, (D4RL_COLUMN, *(diagnose.columns if diagnose else ()),
                                                               *(ONE_SAMPLE_COLUMNS if single else ())))
                    bar.set_postfix(score=f"{float(np.mean([r['normalized_score'] for r in rows])):.1f}")
                if (chunk + 1) % ckpt_chunks == 0 or last or signal_name:
                    guard.save(step, state, prog)
                if signal_name:
                    interrupted = signal_name
                    break
    finally:
        bar.close()
    steps_done = rt.step_of(state)
    if interrupted:
        return {"interrupted": interrupted, "steps": steps_done, "checkpoint_dir": files.checkpoint_dir()}
    summary = results.summary(info, rt.all_seeds, steps_done, rt.gathered(prog.last_eval),
                              rt.gathered(prog.fit_epochs), prog.start_step if prog.resumed else None,
                              jax.process_count(), prog.wall())
    files.finish(summary)
    return summary


def _restore_or_start(config, rt: SeedRuntime, files: RunFiles, method, agent, data: OfflineData, progress: bool,
                      start: float) -> tuple[Any, Progress]:
    """The newest checkpoint's state and progress; else the first model fit of every seed and a fresh state."""
    transitions = data.transitions()
    new_model = lambda k: init_model_state(k[0], transitions, config.model) if method.NEEDS_MODEL else None
    fit_ckpt = first_fit_checkpoint(config, rt, files.workdir, transitions) if method.NEEDS_MODEL else None
    # the last check that can refuse: nothing changed before it
    target = jax.eval_shape(lambda: rt.stack([method.init_state(agent, k[2], new_model(k)) for k in rt.all_keys],
                                             place=False))
    restored = files.restore(target)
    files.begin(None if restored is None else restored[0])
    if restored is not None:
        step, state, extra = restored
        return rt.place(state), Progress.from_extra(step, extra, rt.local, started=start)
    models, fit_epochs, rows = [None] * len(rt.seeds), [None] * len(rt.seeds), []
    if method.NEEDS_MODEL:  # one plain-MLE fit per seed, as each would run alone; several seeds in one program
        fitted, infos = fit_seeds(distributed.stack_seeds([new_model(k) for k in rt.keys]),
                                  jnp.stack([k[1] for k in rt.keys]), transitions, None, config.model,
                                  progress=progress and rt.is_main, dtype=config.compute.model_dtype,
                                  batching=config.model.seed_batching,
                                  checkpoint=fit_ckpt)
        models = [distributed.unstack_seed(fitted, i) for i in range(len(rt.seeds))]
        fit_epochs = [info.get("epochs") for info in infos]
        rows = [fit_row(0, info, {"seed": seed} if rt.stacked else None) for seed, info in zip(rt.seeds, infos)]
    files.write_fits(rows)
    state = rt.stack([method.init_state(agent, k[2], m) for k, m in zip(rt.keys, models)])
    return state, Progress.fresh(len(rt.seeds), fit_epochs, started=start)


def first_fit_checkpoint(config, rt: SeedRuntime, workdir: str, transitions) -> FitCheckpoint | None:
    """Where the first model fit saves its progress (<workdir>/model_fit_checkpoint) and resumes
    from: its own newest save, else config.model.first_fit_from's (another run's finished first
    fit of the same data, seeds and model settings). None in a multi-process job, where every
    process fits its own seeds: there a fit that is interrupted starts again."""
    if jax.process_count() > 1:
        if config.model.first_fit_from:
            raise configuration.ConfigError("config.model.first_fit_from works in a one-process run only")
        return None
    source = config.model.first_fit_from
    if source and not checkpoint.list_steps(source, checkpoint.FIT_DIR):
        raise configuration.ConfigError(
            f"config.model.first_fit_from={source!r} holds no saved model fit "
            f"({os.path.join(source, checkpoint.FIT_DIR)} is missing or empty): name the workdir of a run "
            "whose first fit lasted longer than checkpoint.fit_every_seconds, or leave it empty to fit here")
    model = {k: v for k, v in configuration.to_dict(config)["model"].items() if k != "first_fit_from"}
    identity = {"dataset": config.dataset.id, "transitions": int(transitions.observations.shape[0]),
                "seeds": list(rt.seeds), "model": model, "model_dtype": config.compute.model_dtype,
                "matmul_precision": config.compute.matmul_precision}
    own: list[checkpoint.Checkpoints] = []

    def mine() -> checkpoint.Checkpoints:  # made on the first save: a short fit leaves no folder
        if not own:
            own.append(checkpoint.Checkpoints(workdir, keep=1, subdir=checkpoint.FIT_DIR))
        return own[0]

    def where() -> str | None:  # this run's own saved fit first, else the one it starts from
        if checkpoint.list_steps(workdir, checkpoint.FIT_DIR):
            return workdir
        return source or None

    def meta():
        run = where()
        if run is None:
            return None
        extra = checkpoint.read_extra(run, subdir=checkpoint.FIT_DIR)
        if extra is None:
            raise checkpoint.CheckpointError(
                f"the saved model fit in {os.path.join(run, checkpoint.FIT_DIR)} is unreadable: remove that "
                "folder to fit again")
        state = "finished" if not any(extra.get("active", [True])) else f"at epoch {extra.get('epoch')}"
        print(f"[model fit] found a saved fit ({state}) in {os.path.join(run, checkpoint.FIT_DIR)}",
              flush=True)
        return extra

    def load(target):
        run = where()
        with checkpoint.Checkpoints(run, keep=1, subdir=checkpoint.FIT_DIR) as saved:
            return saved.restore(saved.steps()[-1], target)[0]

    def save(epoch, carry, meta):
        mine().save(epoch, carry, meta)
        last = [f"{float(np.mean(h[-1])):.4g}" if h else "-" for h in meta["holdout_history"]]
        print(f"[model fit] epoch {epoch}: {sum(meta['active'])} of {len(meta['active'])} seeds still fitting, "
              f"mean holdout loss {' '.join(last)}; saved to {mine().directory}", flush=True)

    return FitCheckpoint(meta, load, save, float(config.checkpoint.fit_every_seconds), identity)


def _accumulate(metrics: dict, prog: Progress, rt: SeedRuntime, step: int, last_good: str) -> str | None:
    """Add each seed's update metrics to its running means; the error message of a non-finite one, else None."""
    try:
        for i in range(len(rt.seeds)):
            seed_metrics = {k: rt.per_seed(v)[i] for k, v in metrics.items()}
            _check_finite(seed_metrics, step, last_good)
            prog.accs[i].add(seed_metrics)
    except TrainingError as e:
        return str(e)
    return None


def _run_hook(hook: methods.Hook, state: Any, data: OfflineData, step: int, files: RunFiles, prog: Progress) -> Any:
    state, rows = hook.run(state, data, step)
    files.write_fits(rows)
    prog.last_hook = step
    return state


ONE_SAMPLE_COLUMNS = ("one_sample_return_mean", "one_sample_normalized_score", f"one_sample_{D4RL_COLUMN}")


def _evaluate(config, rt: SeedRuntime, info: DatasetInfo, state: Any, data: OfflineData, step: int, select,
              diagnose: methods.Diagnostics | None, prog: Progress, timer: _Timer, single=None) -> list[dict]:
    """Each local seed's evaluation row: scores, the update metrics' means, speed, diagnostics, and
    with `single` the same episodes acted by the actor's own sample (ONE_SAMPLE_COLUMNS)."""
    rate = timer.rate()
    limit = None if config.eval.max_episode_steps < 0 else config.eval.max_episode_steps
    rows = []
    for i, seed in enumerate(rt.seeds):
        seed_state, (key, diag_key) = rt.seed_view(state, i), rt.eval_keys(i, step)
        episodes = episode_seeds(seed, step, config.eval.episodes)
        res = evaluate(_act_fn(select, key, seed_state), info.env_id, config.eval.episodes, seed=episodes,
                       max_episode_steps=limit, record=diagnose.record if diagnose is not None else 0)
        scored = results.evaluation_scores(res.return_mean, res.return_std, info)
        d4rl = scored.pop(D4RL_COLUMN)
        prog.last_eval[i] = {**scored, D4RL_COLUMN: d4rl}
        diag = {} if diagnose is None else diagnose.fn(seed_state, data, diag_key, res.transitions)
        if single is not None:
            # The evaluation's own key and episode seeds: with N = 1 both rules act identically.
            one = evaluate(_act_fn(single, key, seed_state), info.env_id, config.eval.episodes,
                           seed=episodes, max_episode_steps=limit)
            s1 = results.evaluation_scores(one.return_mean, one.return_std, info)
            diag.update(zip(ONE_SAMPLE_COLUMNS, (s1["return_mean"], s1["normalized_score"], s1[D4RL_COLUMN])))
        rows.append({"seed": seed, **scored, **prog.accs[i].means(), "iters_per_sec": rate,
                     "wall_seconds": prog.wall(), D4RL_COLUMN: d4rl, **diag})
    return rows


def _act_fn(select, key: jax.Array, seed_state: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The evaluation's policy: a fresh key per call, folded from the evaluation's key."""
    calls = itertools.count()

    def act_fn(obs: np.ndarray) -> np.ndarray:
        return np.asarray(select(seed_state, jax.random.fold_in(key, next(calls)), jnp.asarray(obs, jnp.float32)))

    return act_fn


class _Timer:
    """Policy iterations per second since the last evaluation."""

    def __init__(self) -> None:
        self.start, self.steps = time.time(), 0

    def add(self, steps: int) -> None:
        self.steps += steps

    def rate(self) -> float:
        rate = self.steps / max(time.time() - self.start, 1e-9)
        self.start, self.steps = time.time(), 0
        return rate


class _Guard:
    """The divergence guard: before every evaluation and checkpoint, so no checkpoint holds a NaN."""

    def __init__(self, state: Any, rt: SeedRuntime, files: RunFiles):
        self.nonfinite, self.rt, self.files = make_nonfinite_check(state), rt, files

    def __call__(self, state: Any, step: int) -> None:
        bad = self.rt.gathered(self.nonfinite(state)) if self.rt.multi else self.nonfinite(state)
        if bad:
            shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
            raise TrainingError(f"non-finite values in {shown} at step {step}: the run diverged; "
                                f"{self.files.last_good()}; lower the learning rates or check the dataset")

    def save(self, step: int, state: Any, prog: Progress) -> None:
        self(state, step)
        self.files.save(step, state, prog)


def _check_finite(metrics: dict[str, float], step: int, last_good: str) -> None:
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        raise TrainingError(f"non-finite {', '.join(sorted(bad))} at step {step}: the run diverged; {last_good}; "
                            "lower the learning rates or check the dataset")


def make_nonfinite_check(state: Any) -> Callable[[Any], list[str]]:
    """A cheap divergence guard: one jitted all-finite reduction per float leaf of the state.

    Returns a function giving the names of the leaves holding a NaN or inf (empty when all are finite).
    """
    paths, _ = zip(*jax.tree_util.tree_flatten_with_path(state)[0])
    names = [checkpoint.leaf_name(p) for p in paths]

    @jax.jit
    def finite(s: Any) -> jax.Array:
        return jnp.stack([jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.array(True)
                          for x in jax.tree.leaves(s)])

    def check(s: Any) -> list[str]:
        ok = np.asarray(finite(s))
        return [n for n, good in zip(names, ok) if not good]

    return check


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
