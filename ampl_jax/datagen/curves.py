"""SAC training curves (benchmarks/sac/<env>-s<seed>.json) as a figure and a summary table.

The README's behaviour-policy section is read off these: the best periodic evaluation against the
data issue's goal and D4RL's expert return, and the wall time per 100k environment steps.

    python -m ampl_jax.datagen.curves benchmarks/sac/*-s0.json --png=benchmarks/sac/curves.png
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ampl_jax.cli import markdown_table, run_cli
from ampl_jax.data.scores import env_family, reference_scores

# issue #12's goal for the expert (best periodic evaluation, stochastic policy, 10 episodes)
GOAL = {"hopper": 3000.0, "walker2d": 4000.0, "halfcheetah": 10000.0}


def load_curve(path: str) -> dict[str, Any]:
    with open(path) as f:
        curve = json.load(f)
    # a curve kept aside (e.g. benchmarks/sac/attempt1/) is labelled by its folder
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    curve.setdefault("label", "" if folder == "sac" else folder)
    if not curve.get("evaluations"):
        raise ValueError(f"{path}: no evaluations in this curve file; is it a train_sac --curve_out file?")
    return curve


def summarize(curve: dict[str, Any]) -> dict[str, Any]:
    """Best evaluation, goal, and wall seconds per 100k steps (least squares over the evaluations)."""
    nan = float("nan")
    ev = curve["evaluations"]
    best = max(ev, key=lambda e: e["mean"])
    best_det = max(ev, key=lambda e: e["det_mean"])
    steps = np.array([e["step"] for e in ev], float)
    wall = np.array([e["wall_s"] for e in ev], float)
    per_100k = float(np.polyfit(steps, wall, 1)[0] * 1e5) if len(ev) > 1 else nan
    family = env_family(curve["env_id"])
    return {
        "env_id": curve["env_id"],
        "seed": curve["seed"],
        "label": curve.get("label", ""),
        "steps_done": int(steps[-1]),
        "steps": int(curve["steps"]),
        "best_step": int(best["step"]),
        "best_mean": float(best["mean"]),
        "best_std": float(best["std"]),
        "best_det_step": int(best_det["step"]),
        "best_det_mean": float(best_det["det_mean"]),
        "goal": GOAL.get(family, nan),
        "d4rl_expert": (reference_scores(curve["env_id"]) or (nan, nan))[1],
        "wall_s": float(wall[-1]),
        "wall_s_per_100k": per_100k,
        "cpu": curve.get("cpu", "unknown"),
    }


def to_markdown(rows: list[dict[str, Any]]) -> str:
    header = ["env", "steps", "best (stochastic, 10 ep.)", "best deterministic", "goal", "D4RL expert",
              "wall", "s per 100k"]
    cells = [[
        f"{r['env_id']} (seed {r['seed']}{', ' + r['label'] if r['label'] else ''})",
        f"{r['steps_done']:,} of {r['steps']:,}",
        f"{r['best_mean']:,.0f} ± {r['best_std']:,.0f} at {r['best_step'] // 1000}k",
        f"{r['best_det_mean']:,.0f} at {r['best_det_step'] // 1000}k",
        f"{r['goal']:,.0f}",
        f"{r['d4rl_expert']:,.0f}",
        f"{r['wall_s'] / 3600:.1f} h",
        f"{r['wall_s_per_100k']:,.0f}",
    ] for r in rows]
    return markdown_table(header, cells)


def plot(curves: Sequence[dict[str, Any]], path: str) -> None:
    """One panel per env: stochastic mean +- std, deterministic mean, the goal and D4RL's expert."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, curve in zip(axes[0], curves):
        ev = curve["evaluations"]
        s = np.array([e["step"] for e in ev]) / 1e3
        m = np.array([e["mean"] for e in ev])
        sd = np.array([e["std"] for e in ev])
        ax.plot(s, m, label="stochastic (10 ep.)")
        ax.fill_between(s, m - sd, m + sd, alpha=0.25)
        ax.plot(s, [e["det_mean"] for e in ev], lw=0.8, label="deterministic (5 ep.)")
        r = summarize(curve)
        ax.axhline(r["goal"], ls="--", c="gray", lw=0.8, label="goal")
        ax.axhline(r["d4rl_expert"], ls=":", c="k", lw=0.8, label="D4RL expert (v2)")
        label = f" ({curve['label']})" if curve.get("label") else ""
        ax.set_title(f"{curve['env_id']} seed {curve['seed']}{label}")
        ax.set_xlabel("environment steps (k)")
        ax.set_ylabel("return")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)


def main(argv: list[str]) -> None:
    from absl import flags

    paths = argv[1:]
    f = flags.FLAGS

    def compute() -> list[dict[str, Any]]:
        if not paths:
            raise ValueError("give one or more curve files, e.g. benchmarks/sac/Hopper-v5-s0.json")
        curves = [load_curve(p) for p in paths]
        if f.png:
            plot(curves, f.png)
        return [summarize(c) for c in curves]

    run_cli(compute, to_markdown, f.out_file)


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("png", "", "Write the curves figure here.")
    flags.DEFINE_string("out_file", "", "Also write the summary rows as JSON here.")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
