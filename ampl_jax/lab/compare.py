"""Variants side by side on many logged quantities: `python -m ampl_jax.lab.compare RUNS_DIR [...]`.

`ampl_jax.report` ranks variants on one metric; a parity or diagnosis question needs the same
variants compared on everything the runs log (score, Q, w, the discriminator, the model's error on
the policy's rollouts, the model fits). Runs are found and named exactly as the report does
(dataset, then method plus the config keys that differ). Per variant and quantity the table gives
the mean over seeds of each seed's last-k average, +- the sample std over seeds; the model-fit
rows read `model_fits.jsonl` (mean holdout loss of the elites, epochs run) at every fit step.

    python -m ampl_jax.lab.compare runs/diagnose --last_k=3 --out_file=runs/diagnose/compare.md
    python -m ampl_jax.lab.compare runs/a/seed0 runs/b/seed0     # several folders: their runs together
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import numpy as np
from absl import app, flags

from ampl_jax import report

FLAGS = flags.FLAGS
DEFAULT_COLUMNS = [
    "normalized_score", "d4rl_normalized_score", "return_mean", "q_mean", "target_mean", "critic_loss",
    "miw_w_mean", "miw_residual", "disc_loss", "diag_disc_acc", "diag_action_mse", "diag_q_policy",
    "diag_q_data", "diag_model_err_data", "diag_model_err_policy", "real_fraction",
]


def _define_flags() -> None:
    """Only when run as a program: absl flags are global, and other modules define theirs."""
    flags.DEFINE_integer("last_k", 5, "Evaluations per seed averaged for the 'last-k avg' figures.")
    flags.DEFINE_list("columns", DEFAULT_COLUMNS, "metrics.csv columns to compare (missing ones are left out).")
    flags.DEFINE_string("out_file", "", "Also write the markdown to this file.")


def _pm(values: Sequence[float]) -> str:
    if not values:
        return ""
    mean, std = float(np.mean(values)), report.sample_std(values)
    digits = 1 if abs(mean) >= 10 else 3
    return f"{mean:.{digits}f} ± {'n/a' if math.isnan(std) else f'{std:.{digits}f}'}"


def column_table(paths: Sequence[str], column: str, last_k: int) -> dict[tuple[str, str], list[float]]:
    """(dataset, variant) -> each seed's last-k average of `column` (runs lacking it are left out)."""
    curves = []
    for p in paths:
        try:
            curves.extend(report.load_run(p, column))
        except report.ReportError:
            continue
    if not curves:
        return {}
    report.assign_variants(curves)  # sets each curve's variant
    out: dict[tuple[str, str], list[float]] = {}
    for c in curves:
        if c.values.size:
            out.setdefault((c.dataset, c.variant), []).append(float(np.mean(c.values[-last_k:])))
    return out


def model_fit_rows(paths: Sequence[str], names: dict[str, tuple[str, str]]) -> dict[str, dict[tuple[str, str], list[float]]]:
    """'model fit at step S: elite holdout loss' / 'epochs' -> (dataset, variant) -> per-seed values."""
    rows: dict[str, dict[tuple[str, str], list[float]]] = {}
    for p in paths:
        f = os.path.join(p, "model_fits.jsonl")
        if p not in names or not os.path.exists(f):
            continue
        with open(f) as fh:
            for line in fh:
                fit = json.loads(line)
                losses = np.asarray(fit["holdout_losses"], np.float64)
                elite = float(losses[np.asarray(fit["elites"], int)].mean())
                for label, value in ((f"model fit at {fit['step']}: elite holdout loss", elite),
                                     (f"model fit at {fit['step']}: epochs", float(fit["epochs"]))):
                    rows.setdefault(label, {}).setdefault(names[p], []).append(value)
    return dict(sorted(rows.items(), key=lambda kv: (int(kv[0].split()[3].rstrip(":")), kv[0])))


def compare(runs_dirs: str | Sequence[str], columns: Sequence[str], last_k: int = 3) -> str:
    """The markdown table (one block per dataset) over the runs below every folder of `runs_dirs`."""
    runs_dirs = [runs_dirs] if isinstance(runs_dirs, str) else list(runs_dirs)
    paths = sorted({p for d in runs_dirs for p in report.find_runs(d)})
    if not paths:
        raise report.ReportError(f"no run folders (metrics.csv + config.json) below {', '.join(map(repr, runs_dirs))}")
    tables = {c: column_table(paths, c, last_k) for c in columns}
    tables = {c: t for c, t in tables.items() if t}
    if not tables:
        raise report.ReportError(f"none of the columns {list(columns)} is in the runs below {', '.join(runs_dirs)}")
    # Name each run folder by the variant the first column gave it (the same for every column).
    curves = [c for p in paths for c in report.load_run(p, next(iter(tables)))]
    order = report.assign_variants(curves)
    names = {c.path: (c.dataset, c.variant) for c in curves}
    tables.update(model_fit_rows(paths, names))
    keys = sorted({k for t in tables.values() for k in t})
    lines = []
    for dataset in sorted({d for d, _ in keys}):
        variants = [v for v in order if (dataset, v) in keys]
        lines += [f"### {dataset} (last {last_k} evaluations per seed; mean ± std over seeds)", "",
                  "| quantity | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
        for name, t in tables.items():
            cells = [_pm(t.get((dataset, v), [])) for v in variants]
            if any(cells):
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise app.UsageError("usage: python -m ampl_jax.lab.compare RUNS_DIR [RUNS_DIR ...] [--last_k=5] [--columns=a,b] "
                             "[--out_file=FILE]")
    try:
        text = compare(argv[1:], FLAGS.columns, FLAGS.last_k)
    except report.ReportError as e:
        raise SystemExit(f"error: {e}") from None
    print(text)
    if FLAGS.out_file:
        with open(FLAGS.out_file, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
