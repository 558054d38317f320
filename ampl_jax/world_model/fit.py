"""(Weighted) maximum-likelihood fitting of the ensemble with MBPO-style early stopping.

An epoch is `epoch_steps` Adam steps inside ONE jitted `lax.scan`, followed (still inside jit)
by the holdout evaluation and the per-member snapshot update. Only the stopping decision
is taken in Python, once per epoch. The jitted epoch is cached per static configuration, so
refits with the same shapes never recompile.

Snapshots follow the authors' rule (dynamic_models/model_trainer.py:78-88, 198-202, 227-234):
a member's holdout loss "improves" when it is more than `improvement_threshold` (1 %) below
the loss of that member's last snapshot (the first epoch of a fit always improves); an
improving epoch replaces the member's snapshot (its layers) and its reference loss; the fit
stops after `patience` epochs in which no member improved; every member is then restored from
its snapshot, which is its LAST improving epoch (not necessarily its lowest loss: a later epoch
that is lower by < 1 % is not kept). The shared log-std bounds are not part of a snapshot: like
the authors' (get_idv_model_state saves W and b only) they keep their values of the last epoch.
Elites are the `num_elites` members with the lowest snapshot losses.

`fit_seeds` fits S seeds' ensembles at once, each with its own split, weights and early
stopping, one device call per epoch for all of them (the epoch vmapped over a seed axis); `fit`
is its one-seed case.

A fit with the paper's early stopping on a 2M-transition dataset runs for hours (issue #29), so
`fit_seeds` can save its progress (`FitCheckpoint`) and resume it bit for bit: the split, the
standardisation and every epoch's key are functions of the seed's key, so the carry and the
host-side counters are all a fit holds between epochs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ampl_jax.checkpoint import CheckpointError
from ampl_jax.types import Transitions
from ampl_jax.world_model.ensemble import (  # noqa: F401  (ModelState, init re-exported)
    SHARED_KEYS,
    ModelState,
    ensemble_loss,
    init_model_state,
    make_optimizer,
    make_targets,
    ensemble_apply,
    tie_shared_bounds,
)


class _Static(NamedTuple):
    """Hashable hyper-parameters that shape the compiled epoch."""

    num_members: int
    batch_size: int
    epoch_steps: int
    learning_rate: float
    weight_decays: tuple[float, ...]
    head_weight_decay: float
    bound_coef: float
    improvement_threshold: float
    dtype: str = "float32"  # matmul inputs (compute.model_dtype)


class FitData(NamedTuple):
    """Standardised train/holdout split of one fit (device arrays, built once per fit)."""

    x: jax.Array  # [N_train, in]
    y: jax.Array  # [N_train, out]
    w: jax.Array  # [N_train]
    hx: jax.Array  # [N_hold, in]
    hy: jax.Array  # [N_hold, out]
    hw: jax.Array  # [N_hold]


class EpochCarry(NamedTuple):
    params: Any
    opt_state: Any
    best_params: Any  # per-member snapshot: the member's last epoch that improved by > threshold
    best_loss: jax.Array  # [M] lowest holdout loss seen (diagnostics only)
    ref_loss: jax.Array  # [M] holdout loss of the snapshot: the reference of the next improvement


class FitCheckpointError(CheckpointError):
    """A saved fit that cannot be continued here (another fit's, or of other seeds or data)."""


@dataclasses.dataclass
class FitCheckpoint:
    """Where `fit_seeds` saves its progress and resumes from.

    meta() -> the newest save's JSON record, or None when nothing is saved; load(target) -> its
    carry in the structure of `target` (called only once meta's identity matched);
    save(epoch, carry, meta): write one (the caller keeps the newest). `every_seconds`: the wall
    time between saves (0: after every epoch); the end of a fit that saved along the way is saved
    too, so a finished fit is read back instead of being run again. `identity`: what the fit
    is a function of (data, seeds, model config, dtypes); a saved fit with another is refused.
    """

    meta: Callable[[], dict | None]
    load: Callable[[Any], Any]
    save: Callable[[int, Any, dict], None]
    every_seconds: float
    identity: dict


def _jsonable(x: Any) -> Any:
    return np.asarray(x).tolist()


def static_from_config(cfg_model, dtype: Any = "float32") -> _Static:
    """The compiled epoch's settings: config.model's, and the matmul input dtype (compute.model_dtype)."""
    return _Static(
        num_members=int(cfg_model.num_members),
        batch_size=int(cfg_model.batch_size),
        epoch_steps=int(cfg_model.epoch_steps),
        learning_rate=float(cfg_model.learning_rate),
        weight_decays=tuple(float(d) for d in cfg_model.weight_decays),
        head_weight_decay=float(cfg_model.head_weight_decay),
        bound_coef=float(cfg_model.logstd_bound_coef),
        improvement_threshold=float(cfg_model.improvement_threshold),
        dtype=jnp.dtype(dtype).name,
    )


def holdout_losses(params, hx: jax.Array, hy: jax.Array, hw: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """Per-member w-weighted MSE of the mean prediction, standardised target space: [M].

    mean_n w_n * mean_dims (mu - y)^2, as the authors' holdout criterion (the l2 error that
    get_loss returns with return_l2_error, probabilistic_ensemble.py:89, which
    model_trainer.py:196 unpacks as the holdout losses); w is the dataset-normalised weight.
    """
    mean, _ = ensemble_apply(params, hx, dtype)
    err = jnp.mean(jnp.square(mean - hy[None]), axis=-1)  # [M, N_hold]
    return jnp.mean(hw * err, axis=-1)


def update_snapshots(params, hold: jax.Array, snap_params, snap_loss: jax.Array, threshold: float):
    """The authors' save_best: members whose holdout loss is > `threshold` (relative) below their
    snapshot's loss (inf: no snapshot yet) take a new snapshot of their layers.

    Returns (snapshot params, snapshot losses [M], improved [M] bool). The shared log-std bounds
    (SHARED_KEYS) are not snapshotted: they always carry `params`' current values.
    """
    rel_gain = (snap_loss - hold) / jnp.abs(snap_loss)
    improved = jnp.isinf(snap_loss) | (rel_gain > threshold)

    def pick(new, old):
        return jnp.where(improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)

    snap = {k: (params[k] if k in SHARED_KEYS else jax.tree.map(pick, params[k], snap_params[k])) for k in params}
    return snap, jnp.where(improved, hold, snap_loss), improved


def epoch_body(static: _Static):
    """The epoch, unjitted: (carry, key, FitData) -> (carry, improved [M], holdout [M], train loss [M])."""
    opt = make_optimizer(static.learning_rate)
    dtype = jnp.dtype(static.dtype)
    loss_fn = functools.partial(
        ensemble_loss,
        decays=static.weight_decays,
        head_decay=static.head_weight_decay,
        bound_coef=static.bound_coef,
        dtype=dtype,
    )

    def train_step(carry, key, d: FitData):
        params, opt_state = carry
        # independent minibatch indices per member
        idx = jax.random.randint(key, (static.num_members, static.batch_size), 0, d.x.shape[0])
        # the summed loss: each member gets its own gradient, the shared bounds the sum of all
        (_, losses), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, d.x[idx], d.y[idx], d.w[idx])
        grads = tie_shared_bounds(grads)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        return (params, opt_state), losses

    def epoch(c: EpochCarry, key: jax.Array, d: FitData):
        keys = jax.random.split(key, static.epoch_steps)
        (params, opt_state), losses = jax.lax.scan(
            lambda carry, k: train_step(carry, k, d), (c.params, c.opt_state), keys
        )
        hold = holdout_losses(params, d.hx, d.hy, d.hw, dtype)
        snap, ref_loss, improved = update_snapshots(params, hold, c.best_params, c.ref_loss,
                                                    static.improvement_threshold)
        carry = EpochCarry(params, opt_state, snap, jnp.minimum(c.best_loss, hold), ref_loss)
        return carry, improved, hold, jnp.mean(losses, axis=0)

    return epoch


@functools.lru_cache(maxsize=None)
def make_epoch_fn(static: _Static):
    """Jitted (carry, key, FitData) -> (carry, improved [M], holdout [M], train loss [M]): one seed."""
    return jax.jit(epoch_body(static))


SEED_BATCHING = ("vmap", "map")


@functools.lru_cache(maxsize=None)
def make_seeds_epoch_fn(static: _Static, batching: str = "vmap"):
    """The same epoch over a leading seed axis of every argument, with a per-seed mask, jitted:
    (carry [S, ...], key [S, 2], FitData [S, ...], active [S] bool) -> (carry, improved [S, M],
    holdout [S, M], train loss [S, M]). A seed whose `active` is False keeps its carry unchanged
    (a select, not a cond: under vmap both branches run anyway) and reports no improvement.

    batching "vmap": one batched program, the seeds computed together (fit_seeds' docstring on
    exactness); "map": lax.map, the seeds one after another inside the one program, each with
    the unbatched shapes, so bit-identical to the one-seed epoch.
    """
    if batching not in SEED_BATCHING:
        raise ValueError(f"fit_seeds: batching must be one of {SEED_BATCHING}, got {batching!r}")
    body = epoch_body(static)

    def masked(c: EpochCarry, key: jax.Array, d: FitData, active: jax.Array):
        new, improved, hold, train_loss = body(c, key, d)
        new = jax.tree.map(lambda n, o: jnp.where(active, n, o), new, c)
        return new, improved & active, hold, train_loss

    if batching == "map":
        return jax.jit(lambda c, k, d, a: jax.lax.map(lambda args: masked(*args), (c, k, d, a)))
    return jax.jit(jax.vmap(masked))


def prepare_fit_data(state: ModelState, key: jax.Array, data: Transitions,
                     weights: jax.Array | None, holdout_fraction: float,
                     max_holdout: int) -> FitData:
    """Standardise once and split train/holdout with a key-determined permutation."""
    n = int(data.observations.shape[0])
    n_hold = min(int(holdout_fraction * n), int(max_holdout))
    if n_hold < 1 or n - n_hold < 1:
        raise ValueError(f"fit: need at least one holdout and one train transition (N={n})")
    x = state.input_norm(
        jnp.concatenate([jnp.asarray(data.observations, jnp.float32),
                         jnp.asarray(data.actions, jnp.float32)], axis=-1))
    y = state.target_norm(make_targets(data))
    w = jnp.ones((n,), jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
    if w.shape != (n,):
        raise ValueError(f"fit: weights must have shape ({n},), got {w.shape}")
    perm = jax.random.permutation(key, n)
    hold, train = perm[:n_hold], perm[n_hold:]
    return FitData(x[train], y[train], w[train], x[hold], y[hold], w[hold])


def fit(state: ModelState, key: jax.Array, data: Transitions, weights: jax.Array | None, cfg_model, *,
        max_epochs: int | None = None, progress: bool = False,
        dtype: Any = "float32") -> tuple[ModelState, dict[str, Any]]:
    """Fit (or warm-start refit) the ensemble by w-weighted MLE with early stopping.

    weights: [N] per-transition w (None = plain MLE). Continues from `state`'s params AND Adam
    state; restores each member from its snapshot at the end (the authors' rule, module
    docstring); elites = the `num_elites` lowest snapshot holdout losses. `max_epochs` defaults
    to cfg.max_epochs for the first fit and cfg.refit_max_epochs afterwards. `dtype`: the
    matmul input dtype, config.compute.model_dtype ("float32" | "bfloat16").

    `fit_seeds` on a one-seed stack: the same unbatched program, so the same numbers.
    """
    one = lambda x: jnp.expand_dims(x, 0)
    states, infos = fit_seeds(jax.tree.map(one, state), one(jnp.asarray(key)), data,
                              None if weights is None else one(jnp.asarray(weights)), cfg_model,
                              max_epochs=max_epochs, progress=progress, dtype=dtype)
    return jax.tree.map(lambda x: x[0], states), infos[0]


def fit_seeds(states: ModelState, keys: jax.Array, data: Transitions, weights: jax.Array | None, cfg_model, *,
              max_epochs: int | None = None, progress: bool = False, dtype: Any = "float32",
              batching: str = "vmap", checkpoint: FitCheckpoint | None = None,
              ) -> tuple[ModelState, list[dict[str, Any]]]:
    """`fit` for S seeds at once: every epoch is ONE device call for all seeds.

    states: S ModelStates stacked on a leading seed axis (`distributed.stack_seeds`); keys
    [S, 2]; weights None (plain MLE for every seed) or [S, N]; `data` is shared. Each seed keeps
    its own train/holdout split (from its key), early-stopping count and snapshots; a seed that
    has stopped (patience or its max_epochs) is frozen by a select while the others continue,
    and the loop ends when every seed has stopped. `max_epochs` None: each seed's own default
    (cfg.max_epochs for its first fit, else cfg.refit_max_epochs).

    Returns the stacked fitted states and one info dict per seed, the keys of `fit`'s info;
    "seconds" is the wall time from the start until that seed's last epoch.

    `batching` (S > 1): "vmap" computes the seeds together in one batched program; seed s's
    result then equals `fit(states[s], keys[s], data, weights[s], ...)` up to float32 rounding,
    not bit for bit: XLA:CPU picks a reduction's strategy by its shape (the minibatch sums of the
    bias and log-std-bound gradients, e.g. a YNNPACK fusion for one shape, a split reduce-window
    for another), and the seed axis changes the shapes; the rounding then grows over training
    like any float32 perturbation. Epoch counts and elites agree unless a holdout gain sits
    within rounding of the 1 % threshold. "map" runs the seeds one after another inside the
    same single program (lax.map, unbatched shapes): bit-identical to `fit` per seed, one device
    call per epoch, but no parallelism across seeds. S == 1 runs the unbatched program: `fit`
    is this function on a one-seed stack.
    A stopped seed is masked, not skipped: under "vmap" its epoch is still computed, so the call
    lasts as long as its longest seed. Memory: every seed holds its own standardised, permuted
    copy of the data (S copies; 2S briefly while they are stacked).
    `checkpoint`: save the progress every `checkpoint.every_seconds` and start from the newest
    saved one; the result equals the uninterrupted fit's bit for bit ("seconds" counts the
    wall time of every attempt).
    """
    static = static_from_config(cfg_model, dtype)
    keys = jnp.asarray(keys)
    num_seeds, num_fits, limits = _checked_seeds(static, states, keys, data, weights, cfg_model, max_epochs, batching)
    patience, num_members = int(cfg_model.patience), static.num_members
    carry, d, run_epoch, stacked = _epoch_runner(static, states, keys, data, weights, cfg_model, limits, batching)
    log = _FitLog.fresh(limits)
    t0, saved_at, identity = time.perf_counter(), None, None
    if checkpoint is not None:
        identity = json.loads(json.dumps({**checkpoint.identity, "num_seeds": num_seeds, "limits": limits,
                                          "num_fits": num_fits.tolist(), "weighted": weights is not None}))
        meta = checkpoint.meta()
        if meta is not None:
            if meta.get("identity") != identity:
                raise FitCheckpointError(_identity_mismatch(meta.get("identity"), identity))
            carry, log = checkpoint.load(carry), _FitLog.from_meta(meta)
            t0, saved_at = t0 - float(meta["elapsed"]), time.perf_counter()
            if progress:
                print(f"[model fit] resumed at epoch {log.epoch} from a saved fit", flush=True)

    while log.active.any():
        carry, improved, hold, train_loss = run_epoch(carry, log.epoch, jnp.asarray(log.active))
        log.epoch += 1
        for s in np.flatnonzero(log.active):
            log.epochs[s] = log.epoch
            log.hold_hist[s].append(hold[s])
            log.train_hist[s].append(train_loss[s])
            log.since[s] = 0 if improved[s].any() else log.since[s] + 1
            if progress:
                tag = f" seed {s}" if num_seeds > 1 else ""
                print(f"[model fit]{tag} epoch {log.epoch} holdout {np.array2string(hold[s], precision=4)}"
                      f" train {float(train_loss[s].mean()):.4f} stale {log.since[s]}/{patience}")
            if log.since[s] >= patience or log.epoch >= limits[s]:
                log.active[s] = False
                log.seconds[s] = time.perf_counter() - t0
        if checkpoint is not None:  # every `every_seconds`, and the end of a fit that saved before
            due = time.perf_counter() - (t0 if saved_at is None else saved_at) >= checkpoint.every_seconds
            if (log.active.any() and due) or (not log.active.any() and saved_at is not None):
                checkpoint.save(log.epoch, carry, {"identity": identity, "elapsed": time.perf_counter() - t0,
                                                   **log.meta()})
                saved_at = time.perf_counter()

    carry = stacked(carry)
    best = carry.ref_loss  # [S, M] the snapshots' holdout losses
    elites = jnp.argsort(best, axis=-1)[:, : int(cfg_model.num_elites)].astype(jnp.int32)
    new_states = states.replace(
        params=carry.best_params,  # snapshots; the shared bounds of each seed's last epoch
        opt_state=carry.opt_state,
        elites=elites,
        holdout_losses=best,
        num_fits=states.num_fits + 1,
    )
    best_np, elites_np = np.asarray(best), np.asarray(elites)
    empty = np.zeros((0, num_members))
    infos = [{
        "epochs": log.epochs[s],
        "holdout_losses": best_np[s],
        "elites": elites_np[s],
        "holdout_history": np.stack(log.hold_hist[s]) if log.hold_hist[s] else empty,
        "train_loss_history": np.stack(log.train_hist[s]) if log.train_hist[s] else empty,
        "num_train": int(d.x.shape[-2]),
        "num_holdout": int(d.hx.shape[-2]),
        "seconds": log.seconds[s],
    } for s in range(num_seeds)]
    return new_states, infos


def _checked_seeds(static: _Static, states: ModelState, keys: jax.Array, data: Transitions, weights, cfg_model,
                   max_epochs: int | None, batching: str) -> tuple[int, np.ndarray, list[int]]:
    """fit_seeds' inputs checked: (number of seeds, each seed's fits so far, each seed's epoch limit)."""
    if batching not in SEED_BATCHING:
        raise ValueError(f"fit_seeds: batching must be one of {SEED_BATCHING}, got {batching!r}")
    if static.num_members != int(states.holdout_losses.shape[-1]):
        raise ValueError("fit: cfg.num_members differs from the state's ensemble size")
    if states.holdout_losses.ndim != 2 or keys.ndim < 1 or keys.shape[0] != states.holdout_losses.shape[0]:
        raise ValueError(f"fit_seeds: states need a leading seed axis and keys one key per seed; got "
                         f"holdout_losses {states.holdout_losses.shape}, keys {keys.shape}")
    num_seeds = int(keys.shape[0])
    n = int(data.observations.shape[0])
    if weights is not None and tuple(jnp.shape(weights)) != (num_seeds, n):
        raise ValueError(f"fit_seeds: weights must have shape ({num_seeds}, {n}), got {jnp.shape(weights)}")
    num_fits = np.asarray(states.num_fits).reshape(num_seeds)
    if max_epochs is None:
        limits = [int(cfg_model.max_epochs if f == 0 else cfg_model.refit_max_epochs) for f in num_fits]
    else:
        limits = [int(max_epochs)] * num_seeds
    return num_seeds, num_fits, limits


def _epoch_runner(static: _Static, states: ModelState, keys: jax.Array, data: Transitions, weights, cfg_model,
                  limits: list[int], batching: str):
    """(initial carry, fit data, run_epoch(carry, epoch, active), stacked(carry)) of `fit_seeds`.

    Per seed, as `fit` always did: split, standardise, permute; one seed runs the unbatched
    program (vmap changes XLA's reduction shapes: fit_seeds' docstring), several one program."""
    num_seeds, per_seed = len(limits), []
    inf = jnp.full((static.num_members,), jnp.inf, jnp.float32)
    for s in range(num_seeds):
        state = jax.tree.map(lambda x: x[s], states)
        k_split, k_train = jax.random.split(keys[s])
        d = prepare_fit_data(state, k_split, data, None if weights is None else weights[s],
                             float(cfg_model.holdout_fraction), int(cfg_model.max_holdout))
        carry = EpochCarry(state.params, state.opt_state, state.params, inf, inf)
        per_seed.append((carry, d, jax.random.split(k_train, max(limits[s], 1))))

    if num_seeds == 1:
        carry, d, epoch_keys = per_seed[0]
        epoch_fn = make_epoch_fn(static)

        def run_epoch(carry, epoch, active):
            carry, *out = epoch_fn(carry, epoch_keys[epoch], d)
            return carry, *(np.asarray(x)[None] for x in out)  # the one host sync per epoch

        return carry, d, run_epoch, lambda carry: jax.tree.map(lambda x: jnp.expand_dims(x, 0), carry)

    stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
    carry, d = stack([c for c, _, _ in per_seed]), stack([x for _, x, _ in per_seed])
    horizon = max(max(limits), 1)
    # [S, horizon] keys; a seed with fewer epochs repeats its last key (never used: it has stopped)
    epoch_keys = jnp.stack([k[np.minimum(np.arange(horizon), k.shape[0] - 1)] for _, _, k in per_seed])
    epoch_fn = make_seeds_epoch_fn(static, batching)

    def run_epoch(carry, epoch, active):
        carry, *out = epoch_fn(carry, epoch_keys[:, epoch], d, active)
        return carry, *(np.asarray(x) for x in out)  # the one host sync per epoch

    return carry, d, run_epoch, lambda carry: carry


@dataclasses.dataclass
class _FitLog:
    """What the host keeps of a fit between epochs: the stopping counters and the loss histories
    (saved with a FitCheckpoint as JSON: float32 values round-trip exactly through float64)."""

    epoch: int
    since: list[int]
    epochs: list[int]
    seconds: list[float]
    active: np.ndarray  # [S] bool: still fitting
    hold_hist: list[list[np.ndarray]]
    train_hist: list[list[np.ndarray]]

    @classmethod
    def fresh(cls, limits: list[int]) -> _FitLog:
        n = len(limits)
        return cls(0, [0] * n, [0] * n, [0.0] * n, np.asarray([lim > 0 for lim in limits]),
                   [[] for _ in range(n)], [[] for _ in range(n)])

    def meta(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "since": self.since, "epochs": self.epochs, "seconds": self.seconds,
                "active": self.active.tolist(),
                "holdout_history": [[_jsonable(h) for h in hs] for hs in self.hold_hist],
                "train_loss_history": [[_jsonable(h) for h in hs] for hs in self.train_hist]}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> _FitLog:
        hist = lambda key: [[np.asarray(h, np.float32) for h in hs] for hs in meta[key]]
        return cls(int(meta["epoch"]), list(meta["since"]), list(meta["epochs"]), list(meta["seconds"]),
                   np.asarray(meta["active"], bool), hist("holdout_history"), hist("train_loss_history"))


def _identity_mismatch(saved: Any, ours: dict) -> str:
    if not isinstance(saved, dict):
        return "the saved model fit has no identity record; remove it (or use --overwrite) to fit again"
    keys = sorted(set(saved) | set(ours), key=str)
    diffs = [f"{k}: saved {saved.get(k)!r}, here {ours.get(k)!r}" for k in keys if saved.get(k) != ours.get(k)]
    shown = "; ".join(d[:160] for d in diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
    return f"the saved model fit is of another fit ({shown}); remove it (or use --overwrite) to fit again"
