"""The ratio classifier: d_pi / d_D from a probabilistic classifier between pi's occupancy samples and
the dataset rows, independent of AMPL's estimators (so it can check them).

A small ReLU MLP (`networks.MLP`, optax AdamW, weighted logistic loss, standardised inputs, early
stopping on a held-out split by episode / block) separates pi's weighted (s, a) from the data's.
Each class's weights are normalised to the same total, so the Bayes classifier's odds
p / (1 - p) are d_pi / d_D with both normalised (the prior correction n_D / n_pi of an unweighted
classifier is 1 here); times the occupancy's mass this is the ratio TD-DICE's fixed point defines.
`cross_fit_ratio` gives every data row a ratio from a classifier that never trained on it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ampl_jax import networks


def _net(hidden: tuple[int, ...]) -> networks.MLP:
    """The classifier's logit: ReLU layers with nn.Dense's default initialisation, one output."""
    return networks.MLP(hidden, 1, None, weight_init="flax")


class RatioModel(NamedTuple):
    """log w(x) = logit(x) + log_correction, x standardised by (mean, std) first."""

    params: dict
    mean: np.ndarray
    std: np.ndarray
    hidden: tuple[int, ...]
    log_correction: float  # log(mass): the ratio of the masked occupancy

    def log_ratio(self, x: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        z = (np.asarray(x, np.float32) - self.mean) / self.std
        out = [np.asarray(_logit_fn(self.hidden)(self.params, jnp.asarray(z[i:i + chunk])))
               for i in range(0, len(z), chunk)]
        return np.concatenate(out).astype(np.float64) + self.log_correction

    def ratio(self, x: np.ndarray) -> np.ndarray:
        return np.exp(self.log_ratio(x))


@functools.lru_cache(maxsize=None)
def _logit_fn(hidden: tuple[int, ...]) -> Callable:
    """The jitted logit of a classifier with these hidden sizes (one compiled function per size)."""
    net = _net(hidden)
    return jax.jit(lambda p, z: net.apply(p, z)[..., 0])


@functools.lru_cache(maxsize=None)
def _epoch_fn(hidden: tuple[int, ...], lr: float, weight_decay: float, batch_size: int, steps: int,
              epochs: int) -> tuple[Callable, Callable]:
    """(jitted epoch(params, opt, key, x, y, cdf) -> (params, opt), optimiser init), cached by settings.

    AdamW with a cosine decay of the rate over `epochs` epochs of `steps` steps; minibatches drawn
    in proportion to the weights (by their cdf). The data are arguments, not closed-over constants
    (XLA would constant-fold them at compile time)."""
    net = _net(hidden)
    tx = optax.adamw(optax.cosine_decay_schedule(lr, epochs * steps), weight_decay=weight_decay)

    @jax.jit
    def epoch(params, opt, key, x, y, cdf):
        def step(carry, k):
            params, opt = carry
            idx = jnp.minimum(jnp.searchsorted(cdf, jax.random.uniform(k, (batch_size,))), x.shape[0] - 1)

            def loss_fn(p):
                return jnp.mean(optax.sigmoid_binary_cross_entropy(net.apply(p, x[idx])[..., 0], y[idx]))

            grads = jax.grad(loss_fn)(params)
            updates, opt = tx.update(grads, opt, params)
            return (optax.apply_updates(params, updates), opt), None

        return jax.lax.scan(step, (params, opt), jax.random.split(key, steps))[0]

    return epoch, tx.init


def _split_groups(groups: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean holdout mask: a random `fraction` of the distinct groups (episodes, row blocks)."""
    uniq = np.unique(groups)
    n_hold = max(1, int(round(fraction * len(uniq))))
    if n_hold >= len(uniq):
        raise ValueError(f"a holdout of {fraction} leaves no training group ({len(uniq)} groups)")
    held = rng.choice(uniq, n_hold, replace=False)
    return np.isin(groups, held)


def _weighted_stats(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """Weighted log-loss, accuracy and expected calibration error (10 bins) of sigmoid(logits)."""
    w = weights / weights.sum()
    p = np.exp(-np.logaddexp(0.0, -logits))  # sigmoid, without overflow
    loss = np.logaddexp(0.0, -logits) * labels + np.logaddexp(0.0, logits) * (1 - labels)
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(abs(np.sum(w[bins == b] * (p[bins == b] - labels[bins == b]))) for b in range(10))
    return {"log_loss": float(np.sum(w * loss)), "accuracy": float(np.sum(w * ((p > 0.5) == (labels > 0.5)))),
            "ece": float(ece)}


def _seeded_rng(key: jax.Array, salt: int) -> np.random.Generator:
    """A NumPy generator derived from a JAX key (the folds' and holdouts' random choices)."""
    return np.random.default_rng(int(jax.random.randint(jax.random.fold_in(key, salt), (), 0, 2**31 - 1)))


def _default_groups(groups: np.ndarray | None, n: int, block: int) -> np.ndarray:
    """Rows in groups of `block` consecutive ones unless given (1: every row its own group)."""
    return np.arange(n) // block if groups is None else np.asarray(groups)


def fit_ratio_classifier(key: jax.Array, x_pi: np.ndarray, w_pi: np.ndarray, x_d: np.ndarray, *,
                         groups_pi: np.ndarray | None = None, groups_d: np.ndarray | None = None,
                         hidden: Sequence[int] = (64, 64), lr: float = 3e-3, weight_decay: float = 1e-4,
                         batch_size: int = 256, max_epochs: int = 40, patience: int = 10, holdout: float = 0.2,
                         mass: float = 1.0, hold_pi: np.ndarray | None = None, hold_d: np.ndarray | None = None,
                         steps_per_epoch: int | None = None) -> tuple[RatioModel, dict[str, Any]]:
    """Fit p(pi | x) on weighted samples of pi (label 1) and unweighted data rows (label 0).

    Each class's training weights are scaled to the same total (so the odds are d_pi / d_D, both
    normalised; `mass` then scales the ratio to the masked occupancy's total). Held out: a random
    `holdout` of the groups of each class (episodes of pi, blocks of 1000 data rows: neighbouring
    samples are strongly correlated, so a split by sample would flatter the held-out loss), or the
    boolean masks `hold_pi` / `hold_d` (`cross_fit_ratio`). Early stopping on the held-out
    weighted log-loss, checked every epoch (len(train) / batch_size steps, or `steps_per_epoch`:
    one compiled epoch for folds of slightly different sizes); the best epoch's parameters are kept.
    Returns the model and a dict: held-out and training log-loss (ln 2 = 0.693 is chance),
    accuracy and ECE; epochs; the self-normalisation checks E_D,holdout[w / mass] and
    E_pi,holdout[mass / w] (both 1 for a perfect ratio).
    """
    rng = _seeded_rng(key, 7)
    x_pi, x_d = np.asarray(x_pi, np.float32), np.asarray(x_d, np.float32)
    groups_pi = _default_groups(groups_pi, len(x_pi), 1)
    groups_d = _default_groups(groups_d, len(x_d), 1000)
    hold_pi = _split_groups(groups_pi, holdout, rng) if hold_pi is None else np.asarray(hold_pi, bool)
    hold_d = _split_groups(groups_d, holdout, rng) if hold_d is None else np.asarray(hold_d, bool)
    mean, std = x_d.mean(0), x_d.std(0) + 1e-6
    z_pi, z_d = (x_pi - mean) / std, (x_d - mean) / std

    def assemble(mask_pi, mask_d):
        wp = np.asarray(w_pi, np.float64)[mask_pi]
        wd = np.ones(int(mask_d.sum()), np.float64)
        x = np.concatenate([z_pi[mask_pi], z_d[mask_d]])
        y = np.concatenate([np.ones(len(wp)), np.zeros(len(wd))]).astype(np.float32)
        w = np.concatenate([wp / wp.sum(), wd / wd.sum()])  # each class: total 1
        return x, y, w

    x_tr, y_tr, w_tr = assemble(~hold_pi, ~hold_d)
    x_ho, y_ho, w_ho = assemble(hold_pi, hold_d)
    hidden = tuple(int(h) for h in hidden)
    k_init, k_train = jax.random.split(key)
    params = _net(hidden).init(k_init, jnp.zeros((1, x_tr.shape[1]), jnp.float32))
    steps = steps_per_epoch or max(1, len(x_tr) // batch_size)
    epoch, init_opt = _epoch_fn(hidden, float(lr), float(weight_decay), int(batch_size), steps, int(max_epochs))
    opt = init_opt(params)
    x_tr_j, y_tr_j = jnp.asarray(x_tr), jnp.asarray(y_tr)
    cdf = jnp.asarray(np.cumsum(w_tr) / np.sum(w_tr), jnp.float32)

    logit = _logit_fn(hidden)
    best, best_loss, bad, history = params, np.inf, 0, []
    for e in range(max_epochs):
        params, opt = epoch(params, opt, jax.random.fold_in(k_train, e), x_tr_j, y_tr_j, cdf)
        ho_loss = _weighted_stats(np.asarray(logit(params, jnp.asarray(x_ho))), y_ho, w_ho)["log_loss"]
        history.append(ho_loss)
        if ho_loss < best_loss - 1e-4:
            best, best_loss, bad = params, ho_loss, 0
        else:
            bad += 1
            if bad >= patience:
                break
    model = RatioModel(jax.device_get(best), mean, std, hidden, float(np.log(mass)))
    lo_ho = np.asarray(logit(best, jnp.asarray(x_ho)), np.float64)
    lo_tr = np.asarray(logit(best, jnp.asarray(x_tr)), np.float64)
    ho, tr = _weighted_stats(lo_ho, y_ho, w_ho), _weighted_stats(lo_tr, y_tr, w_tr)
    odds_ho = np.exp(lo_ho)
    pi_ho, d_ho = y_ho > 0.5, y_ho < 0.5
    info = {
        "holdout_log_loss": ho["log_loss"], "holdout_accuracy": ho["accuracy"], "holdout_ece": ho["ece"],
        "train_log_loss": tr["log_loss"], "train_accuracy": tr["accuracy"],
        "chance_log_loss": float(np.log(2.0)),
        "epochs": len(history), "best_epoch": int(np.argmin(history)) + 1,
        # E_D[d_pi / d_D] = 1 and E_pi[d_D / d_pi] = 1 (normalised): a calibration check on held-out rows
        "holdout_mean_ratio_on_data": float(np.mean(odds_ho[d_ho])),
        "holdout_mean_inverse_ratio_on_pi": float(np.sum(w_ho[pi_ho] / odds_ho[pi_ho]) / np.sum(w_ho[pi_ho])),
        "n_pi": int(len(x_pi)), "n_data": int(len(x_d)),
        "n_pi_effective": float(np.sum(w_pi) ** 2 / np.sum(np.asarray(w_pi) ** 2)),
    }
    return model, info


def cross_fit_ratio(key: jax.Array, x_pi: np.ndarray, w_pi: np.ndarray, x_d: np.ndarray, *,
                    groups_pi: np.ndarray | None = None, groups_d: np.ndarray | None = None, folds: int = 2,
                    mass: float = 1.0, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """w* on every data row, each row's from a classifier that never trained on it (cross-fitting).

    The groups of each class (episodes of pi, blocks of 1000 data rows by default) are dealt into
    `folds` random folds; classifier k trains on the other folds, stops early on fold k and predicts
    fold k's data rows. (A classifier evaluated on its own training rows calls them "data" more
    confidently than it should, which biases w* down there.) Returns w* [n_d] and a dict: the
    folds' held-out metrics averaged (and per fold), E_D[w*] / mass (1 for a calibrated ratio).
    """
    rng = _seeded_rng(key, 11)
    groups_pi = _default_groups(groups_pi, len(x_pi), 1)
    groups_d = _default_groups(groups_d, len(x_d), 1000)

    def deal(groups):
        uniq = np.unique(groups)
        if len(uniq) < folds:
            raise ValueError(f"{len(uniq)} groups cannot fill {folds} folds")
        fold_of = dict(zip(rng.permutation(uniq), np.arange(len(uniq)) % folds))
        return np.array([fold_of[g] for g in groups])

    fold_pi, fold_d = deal(groups_pi), deal(groups_d)
    train_rows = (1.0 - 1.0 / folds) * (len(x_pi) + len(x_d))
    kwargs.setdefault("steps_per_epoch", max(1, int(train_rows) // kwargs.get("batch_size", 256)))
    w = np.empty(len(x_d), np.float64)
    infos = []
    for k in range(folds):
        model, info = fit_ratio_classifier(jax.random.fold_in(key, k), x_pi, w_pi, x_d, groups_pi=groups_pi,
                                           groups_d=groups_d, mass=mass, hold_pi=fold_pi == k, hold_d=fold_d == k,
                                           **kwargs)
        w[fold_d == k] = model.ratio(np.asarray(x_d)[fold_d == k])
        infos.append(info)
    keys = ("holdout_log_loss", "holdout_accuracy", "holdout_ece", "train_log_loss", "train_accuracy",
            "holdout_mean_ratio_on_data", "holdout_mean_inverse_ratio_on_pi")
    out = {k: float(np.mean([i[k] for i in infos])) for k in keys}
    out.update(chance_log_loss=float(np.log(2.0)), folds=folds, per_fold=infos,
               mean_ratio_on_data=float(np.mean(w) / mass), n_pi=int(len(x_pi)), n_data=int(len(x_d)),
               n_pi_effective=infos[0]["n_pi_effective"])
    return w, out
