"""How an estimator's w on the data rows is scored against the truth w* on the same rows.

Why several numbers: when pi leaves the data a few rows hold most of E_D[w*], and Pearson then
follows those rows alone; Pearson with both clipped at their 99th percentile and Spearman (ranks)
say whether the rest is ordered right. E_D[w] is the estimator's own normalisation (truth: the
occupancy's mass), and the refit only sees w / E_D[w]: its error against w* / E_D[w*].
"""

from __future__ import annotations

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as Spearman's correlation needs."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return (sums / counts)[inv]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation; NaN when either side is constant (w = 1 has no correlation)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties by average rank, as scipy's)."""
    return pearson(_ranks(np.asarray(a)), _ranks(np.asarray(b)))


def compare(w: np.ndarray, w_true: np.ndarray) -> dict[str, float]:
    """An estimator's w on the data rows against the truth w* on the same rows."""
    w, w_true = np.asarray(w, np.float64), np.asarray(w_true, np.float64)
    return {
        "pearson": pearson(w, w_true),
        # both clipped at their own 99th percentile (a no-op for a w without such a tail)
        "pearson_clip99": pearson(np.minimum(w, np.quantile(w, 0.99)), np.minimum(w_true, np.quantile(w_true, 0.99))),
        "spearman": spearman(w, w_true),
        "pearson_log": pearson(np.log(np.maximum(w, 1e-12)), np.log(w_true)),
        "mean_w": float(np.mean(w)),
        "std_w": float(np.std(w)),
        "mae_normalised": float(np.mean(np.abs(w / np.mean(w) - w_true / np.mean(w_true)))),
    }


def distribution(w_true: np.ndarray) -> dict[str, float]:
    """w*'s spread: mean, std, quantiles, and the share of E_D[w*] its top 1 % of rows hold."""
    q = np.quantile(w_true, [0.01, 0.5, 0.99])
    top = np.sort(w_true)[-max(1, len(w_true) // 100):]
    return {"mean": float(w_true.mean()), "std": float(w_true.std()), "q01": float(q[0]), "median": float(q[1]),
            "q99": float(q[2]), "max": float(w_true.max()), "top1pct_share": float(top.sum() / w_true.sum())}
