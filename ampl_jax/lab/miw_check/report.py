"""The check's JSON fields and its Markdown tables.

JSON (--out), top level (`FIELDS`): command, options, cpu_model, cpu_count, jax_version, dataset
{id, env, transitions, episodes, init_states}, ampl_run {dir, final_normalized_score,
final_return_mean} (null without an ampl:STEP policy: no run is trained), gamma,
behaviour_action_mse (a fresh action of the behaviour snapshot against the logged one: the floor
of any policy's action MSE), policies (sorted by action MSE to the data), timing {stage: {wall_s,
cpu_s}}, total_wall_s, total_cpu_s, table (the Markdown below).

Each policy (`POLICY_FIELDS`): spec, label, kind ("ampl" | "snapshot"), action_mse, diagnostics
(AMPL's evaluation diagnostics of that state), truth {rollouts, classifier, w_true, self_agreement},
estimators {name: `correlation.compare` fields (`SCORE_FIELDS`), plus steps and miw_metrics for the
estimators run}; "w = 1" and "initial_w" (every estimator's starting w) are the references, and an
AMPL actor also has "ampl_run_own_w" (the run's own interleaved TD-DICE w at that checkpoint).
"""

from __future__ import annotations

import math
from typing import Any

CEILING = "truth: 2nd fit"  # one classifier fit of w* against the other: what noise allows
FIELDS = ("command", "options", "cpu_model", "cpu_count", "jax_version", "dataset", "ampl_run", "gamma",
          "behaviour_action_mse", "policies", "timing", "total_wall_s", "total_cpu_s", "table")
POLICY_FIELDS = ("spec", "label", "kind", "action_mse", "diagnostics", "truth", "estimators")
TRUTH_FIELDS = ("rollouts", "classifier", "w_true", "self_agreement")
SCORE_FIELDS = ("pearson", "pearson_clip99", "spearman", "pearson_log", "mean_w", "std_w", "mae_normalised")


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def truth_table(result: dict[str, Any]) -> str:
    """Per policy: its rollouts, the classifier's held-out quality and w*'s spread."""
    lines = ["| policy | action MSE | episodes, mean length, fell | mass = E[w*] | classifier held-out log-loss / "
             "acc. / ECE | E_D[w*] / mass | w* median, q99, max | top 1 % rows' share of E_D[w*] |",
             "|---|---:|---|---:|---|---:|---|---:|"]
    for p in result["policies"]:
        r, c, s = p["truth"]["rollouts"], p["truth"]["classifier"], p["truth"]["w_true"]
        lines.append(f"| {p['label']} | {_f(p['action_mse'])} | {r['episodes']}, {r['mean_length']:.0f}, "
                     f"{100 * r['fell_fraction']:.0f} % | {_f(r['mass'])} | {_f(c['holdout_log_loss'])} / "
                     f"{_f(c['holdout_accuracy'])} / {_f(c['holdout_ece'])} | {_f(c['mean_ratio_on_data'], 2)} "
                     f"| {_f(s['median'], 2)}, {_f(s['q99'], 2)}, {s['max']:.3g} | {_f(s['top1pct_share'], 2)} |")
    if result.get("behaviour_action_mse") is not None:
        lines.append(f"| (the behaviour snapshot's own action MSE) | {_f(result['behaviour_action_mse'])} "
                     "| | | | | | |")
    return "\n".join(lines)


def score_table(result: dict[str, Any]) -> str:
    """Per policy: the truth's self-agreement (the ceiling), then each estimator against w*."""
    lines = ["| policy (action MSE) | estimator | Pearson | Pearson, both clipped at q99 | Spearman | E_D[w] | "
             "MAE of w/E[w] |", "|---|---|---:|---:|---:|---:|---:|"]
    for p in result["policies"]:
        rows = {CEILING: p["truth"]["self_agreement"], **p["estimators"]}
        for name, e in rows.items():
            lines.append(f"| {p['label']} ({_f(p['action_mse'])}) | {name} | {_f(e['pearson'])} | "
                         f"{_f(e['pearson_clip99'])} | {_f(e['spearman'])} | {_f(e['mean_w'])} | "
                         f"{_f(e['mae_normalised'])} |")
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """Both tables, as the command prints them and the JSON's `table` holds them."""
    return truth_table(result) + "\n\n" + score_table(result)
