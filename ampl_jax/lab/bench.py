"""Benchmarks of the package: `python -m ampl_jax.lab.bench --suite=model,rollout --out=FILE.json`.

SUITES maps a name to a function(quick: bool) -> dict of results; add a suite by adding an entry.
Every figure is a median over several timed windows after a warm-up, compile time reported apart.
The `peer` entries are the authors' PyTorch code, measured on 2026-11-23 on another 2-core AMD
EPYC machine (`bench_model.PEERS`), so every ratio to them mixes days and machines (one such
ratio read 3.4x where a single sitting gave 2.45x); `--authors_its=X` gives the authors' policy iterations/s measured beside this run (their
code, no MIW, paper sizes, h = 5 as here), and the table's ratio then uses it.
`--suite=precision` compares float32 with bfloat16 matmul inputs (the `compute` config section);
the JSON's env records the CPU model and its bfloat16 flags (amx_bf16, avx512_bf16).
`--suite=fits` times a model refit of 1 and 3 seeds: a loop of `fit` against `fit_seeds`.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from typing import Any, Callable

import jax
from absl import app, flags

from ampl_jax.config import precision  # noqa: E402  (cpu_info: importable without this module's flags)
from ampl_jax.lab.bench_agent import MATMUL_SHAPES, suite_miw, suite_precision, suite_seeds, suite_update
from ampl_jax.lab.bench_model import PEERS, PEERS_SOURCE, suite_fits, suite_model, suite_rollout

FLAGS = flags.FLAGS



SUITES: dict[str, Callable[[bool], dict[str, Any]]] = {
    "seeds": suite_seeds,
    "model": suite_model,
    "rollout": suite_rollout,
    "update": suite_update,
    "miw": suite_miw,
    "precision": suite_precision,
    "fits": suite_fits,
}


def environment() -> dict[str, Any]:
    dev = jax.devices()[0]
    return {
        **precision.cpu_info(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "machine": platform.processor() or platform.machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def authors_reference(results: dict[str, Any], authors_its: float | None) -> dict[str, Any]:
    """Where the authors' figures come from, into results["authors"]; with `authors_its` (their
    policy iterations/s measured beside this run) the update suite's ratio is taken to it."""
    ref: dict[str, Any] = {"source": PEERS_SOURCE, "figures": dict(PEERS), "side_by_side": None}
    u = results.get("update")
    if authors_its:
        ref["side_by_side"] = {"policy_iters_per_s": float(authors_its),
                               "source": "--authors_its: the authors' code measured beside this run"}
        if u:
            u["authors_iters_per_s_side_by_side"] = float(authors_its)
            u["ratio_no_miw_vs_authors_side_by_side"] = u["fused_no_miw"]["iters_per_s"] / float(authors_its)
    results["authors"] = ref
    return ref


def markdown(results: dict[str, Any]) -> str:
    """A small table of the headline figures with ratios to the authors' code."""
    side = (results.get("authors") or {}).get("side_by_side")
    lines = [f"Authors' figures: {PEERS_SOURCE}" + ("; the policy iterations/s: measured beside this run "
                                                     "(--authors_its)." if side else
                                                     ". Pass --authors_its=X (their policy it/s measured beside "
                                                     "this run) for a ratio from one sitting."), "",
             "| figure | ours (this run) | authors' code | ratio |", "|---|---|---|---|"]
    m = results.get("model")
    if m:
        lines.append(f"| ensemble minibatch steps/s (7 x 4x200, batch 128) | {m['steps_per_s']:.1f} "
                     f"| {m['peer_steps_per_s']} (2026-11-23) | {m['ratio_vs_peer']:.2f}x (days apart) |")
        lines.append(f"| ensemble epoch ({m['epoch_steps']} steps) s / compile s | {m['epoch_s']:.2f} / "
                     f"{m['compile_s']:.2f} | 14.3 / - (2026-11-23) | |")
    r = results.get("rollout")
    if r:
        for mode in ("iid", "balanced"):
            x = r[mode]
            lo, hi = x["speedup_vs_peer"]
            lines.append(f"| rollout transitions/s ({mode} elites, {r['starts']} x h={r['horizon']}) "
                         f"| {x['transitions_per_s']:.0f} | | |")
            lines.append(f"| s per 32k-transition rollout ({mode} elites) | {x['rollout_32k_s']:.3f} "
                         f"| 1.2-1.6 (2026-11-23) | {lo:.1f}-{hi:.1f}x faster (days apart) |")
    u = results.get("update")
    if u:
        lines.append(f"| fused update_step it/s, MIW interleaved (h=5) | {u['fused_interleaved']['iters_per_s']:.1f} | | |")
        if "ratio_no_miw_vs_authors_side_by_side" in u:
            lines.append(f"| fused update_step it/s, no MIW in the step (h=5) | {u['fused_no_miw']['iters_per_s']:.1f} "
                         f"| {u['authors_iters_per_s_side_by_side']:g} (side by side, --authors_its) "
                         f"| {u['ratio_no_miw_vs_authors_side_by_side']:.2f}x |")
        else:
            lines.append(f"| fused update_step it/s, no MIW in the step (h=5) | {u['fused_no_miw']['iters_per_s']:.1f} "
                         f"| {u['peer_iters_per_s_no_miw_h3']} (h=3; 2026-11-23, another machine) "
                         f"| {u['ratio_no_miw_vs_peer']:.2f}x (another day and machine) |")
        lines.append(f"| same math, one jitted call per iteration, MIW interleaved | "
                     f"{u['unfused_interleaved']['iters_per_s']:.1f} | | fused {u['fused_speedup_vs_unfused']:.2f}x |")
        lines.append(f"| MIW (TD-DICE) steps/s, batch 1024 + 2048 mu0 | {u['miw_steps_per_s']:.1f} "
                     f"| {u['peer_miw_steps_per_s']} (2026-11-23) | {u['ratio_miw_vs_peer']:.2f}x (days apart) |")
        lines.append(f"| compile s: fused interleaved / no MIW / unfused | {u['fused_interleaved']['compile_s']:.1f} / "
                     f"{u['fused_no_miw']['compile_s']:.1f} / {u['unfused_interleaved']['compile_s']:.1f} | | |")
        lines.append(f"| peak RSS MB (whole bench process) | {u['peak_rss_mb']:.0f} | about 1000 (2026-11-23) | |")
    sd = results.get("seeds")
    if sd:
        for k, v in sd.items():
            if k.startswith("seeds_"):
                lines.append(f"| {k.split('_')[1]} vmapped seeds: s per update_step (ratio to 1 seed), seed-it/s "
                             f"| {v['call_s']:.2f} ({v['ratio_to_1']:.2f}x), {v['seed_iters_per_s']:.1f} | | |")
    pr = results.get("precision")
    if pr:
        env = results.get("env", {})
        lines += ["", f"compute dtype on {env.get('cpu_model', '?')} (bf16 flags: {env.get('cpu_bf16_flags', '?')})", "",
                  "| figure | float32 | bfloat16 | bfloat16 speed / float32 |", "|---|---|---|---|"]
        for name in ("fused_interleaved", "fused_no_miw", "miw", "model_epoch", "rollout", *(m[0] for m in MATMUL_SHAPES)):
            if name in pr:
                x = pr[name]
                lines.append(f"| {name} ({x['unit']}) | {x['float32']['per_s']:.1f} | {x['bfloat16']['per_s']:.1f} "
                             f"| {x['bf16_speed_ratio']:.2f}x |")
    ft = results.get("fits")
    if ft:
        lines += ["", f"model refit ({ft['members']} x {ft['hidden']}, {ft['epochs']} epochs of {ft['epoch_steps']} "
                  f"steps): seconds (speed-up vs the loop of fit)", "", "| seeds | loop of fit | fit_seeds |",
                  "|---|---|---|"]
        for group in ("seeds_1", "seeds_3"):
            g = ft[group]
            cells = ", ".join(f"{v}: {x['refit_s']:.2f} ({x['speedup_vs_loop']:.2f}x), CPU s {x['cpu_s']:.1f}"
                              for v, x in g.items() if v != "loop")
            lines.append(f"| {group.split('_')[1]} | {g['loop']['refit_s']:.2f}, CPU s {g['loop']['cpu_s']:.1f} | {cells} |")
    for name, res in results.items():  # suites added later print their scalar figures
        if name not in ("model", "rollout", "update", "seeds", "precision", "fits", "env") and isinstance(res, dict):
            for k, v in res.items():
                if isinstance(v, (int, float)):
                    lines.append(f"| {name}.{k} | {v:.4g} | | |")
    return "\n".join(lines)


def main(argv) -> None:
    del argv
    names = [s.strip() for s in FLAGS.suite.split(",") if s.strip()]
    unknown = [s for s in names if s not in SUITES]
    if unknown:
        raise app.UsageError(f"unknown suites {unknown}; known: {sorted(SUITES)}")
    if FLAGS.authors_its is not None and FLAGS.authors_its <= 0:
        raise app.UsageError("--authors_its must be a positive iterations/s figure")
    results: dict[str, Any] = {"env": environment(), "quick": FLAGS.quick}
    for name in names:
        print(f"running suite {name} ...", flush=True)
        results[name] = SUITES[name](FLAGS.quick)
    authors_reference(results, FLAGS.authors_its)
    print(markdown(results))
    print(json.dumps(results["env"]))
    if FLAGS.out:
        os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
        with open(FLAGS.out, "w") as f:
            json.dump(results, f, indent=2, default=float)
        print(f"wrote {FLAGS.out}")


def _define_flags() -> None:
    """Only when run as a program: importing this module defines no flags (no clashes)."""
    flags.DEFINE_string("suite", "model,rollout", "comma-separated suites to run")
    flags.DEFINE_string("out", "bench_results/bench.json", "JSON output path ('' = none)")
    flags.DEFINE_bool("quick", False, "tiny smoke version (seconds)")
    flags.DEFINE_float("authors_its", None, "the authors' code's policy iterations/s (no MIW, paper sizes, h = 5), "
                       "measured beside this run: the update suite's ratio is then taken to it instead of to "
                       "the 2026-11-23 figure of another machine")


def cli() -> None:
    """The console script (pyproject.toml), as `python -m ampl_jax.lab.bench`."""
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    cli()
