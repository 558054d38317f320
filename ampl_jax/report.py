"""Result tables over seeds: `python -m ampl_jax.report RUNS_DIR [--last_k=5] [--out=DIR]`.

A run folder is any folder below RUNS_DIR holding metrics.csv and config.json (what
`ampl_jax.main` writes). Runs are grouped by dataset id and variant. A variant is named by its
method (config.method) and the config keys that set it apart from the other runs of the same
method and dataset (seed, num_seeds and dataset.id aside), e.g. `bc`, `ampl`,
`ampl: train.model_retrain_epochs=4`, `ampl: rollout.horizon=3+miw.schedule=phased`: a key is
shown where the run's value differs from the one most of that method's configs share (see
`assign_variants`). A metrics.csv with a `seed` column (several seeds trained in one folder)
counts as one run per seed.

Per dataset and variant the report gives, for the chosen metric (normalized_score by default):
- final: each seed's last evaluation, then mean and std over seeds;
- last-k avg: the mean of each seed's last k evaluations (all of them if it has fewer), then mean
  and std over seeds — less noisy than a single evaluation;
- the number of seeds and the steps reached (a range when seeds stopped at different steps).
With the default metric the tables show both score scales: "score (dataset scale)" (normalized_score,
relative to the dataset's own ref_min_score / ref_max_score) and "score (D4RL v2 scale)"
(d4rl_normalized_score, relative to D4RL's v2 random / expert returns; approximate, the envs are v5).
Runs logged before that column existed get it from their return_mean and the env family.
`--metric=one_sample_normalized_score` tabulates AMPL's one-sample evaluation (eval.one_sample_too:
the actor's own sample, no best-of-N choice by the critic) on both scales the same way; BC, TD3+BC
and MOPO, whose only rule is their policy's own action, show their one score there.
Std is the sample standard deviation over seeds (ddof=1); with a single seed it is undefined and
reported as nan ("n/a" in the markdown). Non-finite scores (e.g. nan for datasets without
reference returns) propagate into the means: use --metric=return_mean for those.

Writes OUT/report.md, OUT/report.csv and OUT/curves_<dataset>.png (mean over seeds, shaded +-std
or min-max, one line per variant); the markdown is also printed.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from absl import app, flags

from ampl_jax.metrics import D4RL_COLUMN, axis_label

FLAGS = flags.FLAGS

ALWAYS_IGNORED = ("seed", "num_seeds", "dataset.id")
DATASET_SCALE = "normalized_score"
ONE_SAMPLE = "one_sample_normalized_score"
ONE_SAMPLE_PREFIX = "one_sample_"
# A dataset-scale metric and the column of the same evaluations on D4RL's v2 scale.
SECOND_SCALE = {DATASET_SCALE: D4RL_COLUMN, ONE_SAMPLE: ONE_SAMPLE_PREFIX + D4RL_COLUMN}
# Table headings of the score columns; any other metric is shown by its column name.
SCALE_LABELS = {DATASET_SCALE: "score (dataset scale)", D4RL_COLUMN: "score (D4RL v2 scale)",
                ONE_SAMPLE: "one-sample score (dataset scale)",
                ONE_SAMPLE_PREFIX + D4RL_COLUMN: "one-sample score (D4RL v2 scale)"}
# Methods whose evaluation has no best-of-N choice by a critic: their one evaluation is their
# policy's own action, so it stands in their one_sample_* columns (which they do not log).
SINGLE_RULE_METHODS = ("bc", "td3bc", "mopo")
ONE_SAMPLE_NOTE = (
    "one-sample score: AMPL's implicit policy acting by one sampled action, with no best-of-N choice "
    "by the critic (the eval.one_sample_too columns: same episodes as the paper's rule); BC, TD3+BC "
    "and MOPO have one evaluation rule, their policy's own action, and show that score in both tables."
)
SCALES_NOTE = (
    "score (dataset scale): normalized_score, 0 = the dataset's ref_min_score (uniform random policy), "
    "100 = its ref_max_score (for datasets made by make_dataset: the shipped expert). score (D4RL v2 "
    "scale): d4rl_normalized_score, 0 and 100 = D4RL's random and expert returns of the v2 envs; the "
    "envs here are v5, whose returns differ slightly from v2, so it is an approximate comparison with "
    "published D4RL scores (nan where D4RL has no reference for the env)."
)
SKIP_DIRS = {"tensorboard", "checkpoints"}


class ReportError(ValueError):
    """Nothing to report, or unreadable runs; the CLI prints it as one line."""


@dataclasses.dataclass
class SeedCurve:
    """One seed's evaluations of the metric."""

    path: str
    dataset: str
    seed: Any
    config: dict[str, Any]  # flattened, dotted keys
    steps: np.ndarray
    values: np.ndarray
    variant: str = "base"


@dataclasses.dataclass
class GroupStats:
    """One row of the table: a dataset and variant over its seeds."""

    dataset: str
    variant: str
    seeds: list[Any]
    final_mean: float
    final_std: float
    last_k_mean: float
    last_k_std: float
    last_k: int
    steps_min: int
    steps_max: int


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}, keeping the config's key order."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def find_runs(runs_dir: str) -> list[str]:
    """Every folder below `runs_dir` (itself included) with metrics.csv and config.json, sorted."""
    found = []
    for root, dirs, files in os.walk(runs_dir):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        if "metrics.csv" in files and "config.json" in files:
            found.append(root)
    return sorted(found)


def _float(text: str | None) -> float | None:
    if text in (None, ""):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def load_run(path: str, metric: str = "normalized_score") -> list[SeedCurve]:
    """The seed curves of one run folder (several when metrics.csv has a `seed` column)."""
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    summary: dict[str, Any] = {}
    if os.path.exists(os.path.join(path, "summary.json")):
        with open(os.path.join(path, "summary.json")) as f:
            summary = json.load(f)
    with open(os.path.join(path, "metrics.csv"), newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    flat = flatten(config)
    if (metric.startswith(ONE_SAMPLE_PREFIX) and metric not in columns
            and flat.get("method") in SINGLE_RULE_METHODS):
        metric = metric[len(ONE_SAMPLE_PREFIX):]  # their only rule is their policy's own action
    # A run logged before the D4RL column existed: derive it from the return and the env family.
    derive = metric == D4RL_COLUMN and metric not in columns and "return_mean" in columns
    if (metric not in columns and not derive) or "step" not in columns:
        raise ReportError(f"{path}/metrics.csv has no {metric!r} or 'step' column (columns: {columns})")
    # The data actually trained on (summary.json), e.g. the local fallback of an official id that
    # was not in the store; the config's id for a run that has not finished.
    dataset = str(summary.get("dataset_id") or flat.get("dataset.id") or "unknown")
    if derive:
        from ampl_jax.data.scores import d4rl_normalized_score  # imports jax: only when needed

        env = str(summary.get("env_id") or dataset)
    by_seed: dict[Any, list[tuple[int, float]]] = {}
    for r in rows:
        value, step = _float(r.get("return_mean" if derive else metric)), _float(r.get("step"))
        if derive and value is not None:
            value = d4rl_normalized_score(value, env)
        if value is None or step is None:
            continue  # rows without an evaluation
        if "seed" in columns:
            seed = _float(r.get("seed"))
            seed = int(seed) if seed is not None and seed.is_integer() else r.get("seed")
        else:
            seed = flat.get("seed", summary.get("seed"))
        by_seed.setdefault(seed, []).append((int(step), value))
    curves = []
    for seed, pairs in by_seed.items():
        pairs.sort()
        curves.append(SeedCurve(path, dataset, seed, flat, np.array([p[0] for p in pairs], np.int64),
                                np.array([p[1] for p in pairs], np.float64)))
    return curves


def _label_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "(" + ",".join(_label_value(x) for x in v) + ")"
    return str(v)


def _sort_value(v: Any) -> tuple:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, _label_value(v))


def _method(curve: SeedCurve) -> str:
    """The run's config.method; runs written before the key existed were all AMPL."""
    return str(curve.config.get("method", "ampl"))


def _reference_values(configs: Sequence[dict[str, str]], keys: Sequence[str]) -> dict[str, str]:
    """Per key, the value most of the distinct configs share (a strict plurality); no entry on a tie."""
    ref = {}
    for k in keys:
        counts: dict[str, int] = {}
        for c in configs:
            counts[c[k]] = counts.get(c[k], 0) + 1
        ranked = sorted(counts.values(), reverse=True)
        if len(ranked) == 1 or ranked[0] > ranked[1]:
            ref[k] = next(v for v, n in counts.items() if n == ranked[0])
    return ref


def assign_variants(curves: Sequence[SeedCurve], ignore: Iterable[str] = ()) -> list[str]:
    """Label every curve by its method and the keys that set it apart from the same method's other runs.

    Within a dataset, runs are grouped by config.method; only keys that differ among the runs of
    that method name a variant, so another method's settings never leak into the label (BC's row
    reads "bc", not "method=bc+miw.schedule=..."). Of those keys, a label shows the ones whose value
    differs from the value most of the method's distinct configs share (all of them on a tie):
    "ampl", "ampl: miw.schedule=none", "ampl: train.model_retrain_epochs=4". Distinct configs always
    get distinct labels. Returns the labels in order: datasets alphabetically, methods
    alphabetically, each method's reference variant first, then by the values (numbers numerically).
    """
    ignored = set(ALWAYS_IGNORED) | {"method"} | set(ignore)
    missing = "<missing>"
    order: list[tuple] = []
    for dataset in sorted({c.dataset for c in curves}):
        for method in sorted({_method(c) for c in curves if c.dataset == dataset}):
            group = [c for c in curves if c.dataset == dataset and _method(c) == method]
            keys: list[str] = []
            for c in group:
                keys += [k for k in c.config if k not in keys and k not in ignored]
            encoded = [{k: json.dumps(c.config.get(k, missing), sort_keys=True) for k in keys} for c in group]
            differing = [k for k in keys if len({e[k] for e in encoded}) > 1]
            distinct = list({tuple(e[k] for k in differing): {k: e[k] for k in differing} for e in encoded}.values())
            ref = _reference_values(distinct, differing)
            for c, e in zip(group, encoded):
                shown = [k for k in differing if ref.get(k) != e[k]]
                parts = "+".join(f"{k}={_label_value(c.config.get(k, missing))}" for k in shown)
                c.variant = f"{method}: {parts}" if parts else method
                order.append((dataset, method, bool(shown),
                              tuple(_sort_value(c.config.get(k, missing)) for k in differing), c.variant))
    labels: list[str] = []
    for *_, label in sorted(order):
        if label not in labels:
            labels.append(label)
    return labels


def sample_std(values: Sequence[float]) -> float:
    """Sample std (ddof=1); nan for fewer than two values."""
    a = np.asarray(values, np.float64)
    return float(a.std(ddof=1)) if a.size >= 2 else math.nan


def group_stats(curves: Sequence[SeedCurve], last_k: int = 5, warn: bool = True) -> list[GroupStats]:
    """One GroupStats per (dataset, variant), in `assign_variants` order (call it first)."""
    if last_k < 1:
        raise ReportError(f"--last_k must be >= 1, got {last_k}")
    groups: dict[tuple[str, str], list[SeedCurve]] = {}
    for c in curves:
        if c.values.size:
            groups.setdefault((c.dataset, c.variant), []).append(c)
    stats = []
    for (dataset, variant), members in groups.items():
        seeds = [c.seed for c in members]
        dup = sorted({str(s) for s in seeds if seeds.count(s) > 1})
        if dup and warn:
            print(f"warning: {dataset} {variant}: seed(s) {', '.join(dup)} appear more than once "
                  f"(each counted): {sorted({c.path for c in members})}", file=sys.stderr)
        finals = [float(c.values[-1]) for c in members]
        lasts = [float(np.mean(c.values[-last_k:])) for c in members]
        reached = [int(c.steps[-1]) for c in members]
        stats.append(GroupStats(dataset, variant, seeds, float(np.mean(finals)), sample_std(finals),
                                float(np.mean(lasts)), sample_std(lasts), last_k, min(reached), max(reached)))
    return stats


def _pm(mean: float, std: float) -> str:
    return f"{mean:.1f} ± {'n/a' if math.isnan(std) else f'{std:.1f}'}"


def _key(s: GroupStats) -> tuple[str, str]:
    return s.dataset, s.variant


def to_markdown(stats: Sequence[GroupStats], metric: str, last_k: int,
                d4rl: Sequence[GroupStats] | None = None) -> str:
    """The table; with `d4rl` (stats of the metric's D4RL-scale column) two more columns, the second scale."""
    second_label = SCALE_LABELS[SECOND_SCALE.get(metric, D4RL_COLUMN)]
    labels = [SCALE_LABELS.get(metric, metric)] + ([second_label] if d4rl is not None else [])
    head = "".join(f" final {x} | last-{last_k} avg {x} |" for x in labels)
    lines = [f"| dataset | variant | seeds | steps |{head}", "|---|---|---:|---:|" + "---:|---:|" * len(labels)]
    second = {_key(s): s for s in d4rl or ()}
    for s in stats:
        steps = str(s.steps_max) if s.steps_min == s.steps_max else f"{s.steps_min}-{s.steps_max}"
        cells = f"{_pm(s.final_mean, s.final_std)} | {_pm(s.last_k_mean, s.last_k_std)} |"
        if d4rl is not None:
            t = second.get(_key(s))
            cells += (" n/a | n/a |" if t is None
                      else f" {_pm(t.final_mean, t.final_std)} | {_pm(t.last_k_mean, t.last_k_std)} |")
        lines.append(f"| {s.dataset} | {s.variant} | {len(s.seeds)} | {steps} | {cells}")
    lines += ["", f"Mean ± sample std (ddof=1) over seeds; n/a with one seed. final: each seed's last "
                  f"evaluation. last-{last_k} avg: mean of each seed's last {last_k} evaluations (fewer if "
                  "it has fewer), then over seeds. steps: last evaluated step (min-max over seeds)."]
    if d4rl is not None:
        lines += ["", SCALES_NOTE]
    if metric.startswith(ONE_SAMPLE_PREFIX):
        lines += ["", ONE_SAMPLE_NOTE]
    return "\n".join(lines) + "\n"


# The d4rl_* columns (the same statistics on D4RL's v2 scale) come last, empty when not computed.
CSV_COLUMNS = ("dataset", "variant", "num_seeds", "seeds", "steps_min", "steps_max", "final_mean", "final_std",
               "last_k", "last_k_mean", "last_k_std", "metric",
               "d4rl_final_mean", "d4rl_final_std", "d4rl_last_k_mean", "d4rl_last_k_std")


def write_csv(path: str, stats: Sequence[GroupStats], metric: str, d4rl: Sequence[GroupStats] | None = None) -> None:
    """One row per dataset and variant; std columns are sample std over seeds (nan for one seed)."""
    second = {_key(s): s for s in d4rl or ()}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for s in stats:
            t = second.get(_key(s))
            w.writerow([s.dataset, s.variant, len(s.seeds), " ".join(map(str, s.seeds)), s.steps_min,
                        s.steps_max, repr(s.final_mean), repr(s.final_std), s.last_k, repr(s.last_k_mean),
                        repr(s.last_k_std), metric,
                        *(["", "", "", ""] if t is None else
                          [repr(t.final_mean), repr(t.final_std), repr(t.last_k_mean), repr(t.last_k_std)])])


def mean_curve(curves: Sequence[SeedCurve], band: str = "std") -> tuple[np.ndarray, ...]:
    """(steps, mean, low, high) over seeds at every step any seed evaluated.

    Each step averages the seeds that have it; the band is mean +- sample std (none with one
    seed) or the min-max over seeds.
    """
    steps = np.unique(np.concatenate([c.steps for c in curves]))
    mean, low, high = (np.full(steps.shape, np.nan) for _ in range(3))
    for i, s in enumerate(steps):
        vals = np.array([c.values[c.steps == s][-1] for c in curves if np.any(c.steps == s)])
        mean[i] = vals.mean()
        if band == "minmax":
            low[i], high[i] = vals.min(), vals.max()
        elif vals.size >= 2:
            sd = vals.std(ddof=1)
            low[i], high[i] = mean[i] - sd, mean[i] + sd
    return steps, mean, low, high


def plot_dataset(path: str, dataset: str, curves: Sequence[SeedCurve], variants: Sequence[str],
                 metric: str, band: str = "std") -> None:
    """One PNG: a mean line and a shaded band per variant (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for variant in variants:
        members = [c for c in curves if c.variant == variant and c.values.size]
        if not members:
            continue
        steps, mean, low, high = mean_curve(members, band)
        (line,) = ax.plot(steps, mean, lw=1.5, label=f"{variant} (n={len(members)})")
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("step")
    ax.set_ylabel(axis_label(metric))
    ax.set_title(f"{dataset}: mean over seeds, band = {'±sample std' if band == 'std' else 'min-max'}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png")


def make_report(runs_dir: str, out: str = "", last_k: int = 5, metric: str = "normalized_score",
                band: str = "std", ignore_keys: Iterable[str] = ()) -> dict[str, Any]:
    """Find, group, tabulate and plot; returns {'stats', 'd4rl_stats', 'markdown', 'files'}.

    With metric normalized_score (or one_sample_normalized_score), d4rl_stats holds the same table on
    D4RL's v2 scale (else None).
    """
    if not os.path.isdir(runs_dir):
        raise ReportError(f"{runs_dir} is not a directory")
    paths = find_runs(runs_dir)
    if not paths:
        raise ReportError(f"no runs under {runs_dir} (a run folder holds metrics.csv and config.json)")
    curves = [c for p in paths for c in load_run(p, metric)]
    if not any(c.values.size for c in curves):
        raise ReportError(f"no evaluations of {metric!r} in the {len(paths)} run folder(s) under {runs_dir}")
    variants = assign_variants(curves, ignore_keys)
    stats = group_stats(curves, last_k)
    order = {v: i for i, v in enumerate(variants)}
    stats.sort(key=lambda s: (s.dataset, order[s.variant]))
    d4rl = _d4rl_stats(paths, curves, last_k, SECOND_SCALE[metric]) if metric in SECOND_SCALE else None
    out = out or runs_dir
    os.makedirs(out, exist_ok=True)
    markdown = to_markdown(stats, metric, last_k, d4rl)
    files = [os.path.join(out, "report.md"), os.path.join(out, "report.csv")]
    with open(files[0], "w") as f:
        f.write(markdown)
    write_csv(files[1], stats, metric, d4rl)
    for dataset in sorted({s.dataset for s in stats}):
        png = os.path.join(out, f"curves_{dataset.replace('/', '_')}.png")
        plot_dataset(png, dataset, [c for c in curves if c.dataset == dataset],
                     [v for v in variants if any(s.dataset == dataset and s.variant == v for s in stats)],
                     metric, band)
        files.append(png)
    return {"stats": stats, "d4rl_stats": d4rl, "markdown": markdown, "files": files}


def _d4rl_stats(paths: Sequence[str], curves: Sequence[SeedCurve], last_k: int,
                column: str = D4RL_COLUMN) -> list[GroupStats]:
    """The groups of `curves` (variants already assigned) scored on D4RL's v2 scale (`column`).

    A run whose metrics.csv has neither that column nor return_mean is left out (its cells: n/a).
    """
    variant = {(c.path, str(c.seed)): c.variant for c in curves}
    second = []
    for p in paths:
        try:
            second += load_run(p, column)
        except ReportError:
            continue
    second = [c for c in second if (c.path, str(c.seed)) in variant]  # only seeds of the main table
    for c in second:
        c.variant = variant[c.path, str(c.seed)]
    return group_stats(second, last_k, warn=False)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        print("error: usage: python -m ampl_jax.report RUNS_DIR [--last_k=5] [--out=DIR]", file=sys.stderr)
        sys.exit(1)
    try:
        result = make_report(argv[1], FLAGS.out, FLAGS.last_k, FLAGS.metric, FLAGS.band, FLAGS.ignore_keys)
    except (ReportError, OSError, json.JSONDecodeError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(1)
    print(result["markdown"], end="")
    print("wrote " + ", ".join(result["files"]))


def _define_flags() -> None:
    """Only when run as a program: importing this module defines no flags (no clashes)."""
    flags.DEFINE_integer("last_k", 5, "Evaluations per seed averaged for the 'last-k avg' column.")
    flags.DEFINE_string("out", "", "Output directory (default: RUNS_DIR).")
    flags.DEFINE_string("metric", "normalized_score", "metrics.csv column to tabulate and plot.")
    flags.DEFINE_enum("band", "std", ["std", "minmax"], "Shaded band of the curves: +-sample std or min-max over seeds.")
    flags.DEFINE_list("ignore_keys", [], "Config keys that do not make a variant (seed, num_seeds and dataset.id never do).")


def cli() -> None:
    """The console script (pyproject.toml), as `python -m ampl_jax.report`."""
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    cli()
