#!/usr/bin/env bash
# Learning benchmark (issues #14 and #15): hopper and walker2d x medium-replay and medium-expert
# (plus medium with CELLS=...), methods AMPL, NW (miw.schedule=none), AMPL with the td_dice_multi
# MIW estimator, BC, TD3+BC and MOPO (launch/benchmark_grid.json, run in its order), 3 vmapped seeds per run,
# configs/benchmark.py's protocol. Resumable: run the same line again. Then the reports: the paper's
# evaluation rule in ROOT/report.md, the actor's own sample in ROOT/one_sample/report.md.
#   bash launch/benchmark.sh [ROOT]
#   CELLS="hopper-medium walker-medium" bash launch/benchmark.sh runs/benchmark
# Two lanes (one per core) share the grid: start the same line twice; each run is claimed by the
# launcher that runs it (launch/sweep.py::claim), the other skips it as busy and takes the next.
set -euo pipefail
root="${1:-benchmarks/benchmark/grid}"
cells="${CELLS:-hopper-medium_replay walker-medium_replay hopper-medium_expert walker-medium_expert}"
# Method by method, every cell each (launch/benchmark_grid.json's order: the quick baselines first),
# so the table fills evenly and a sitting's work is a set of finished runs.
variants=$(python -c "import json; [print(';'.join(f'{k}={v}' for k, v in e.items())) \
  for e in json.load(open('launch/benchmark_grid.json'))]")
for variant in ${variants}; do
  for cell in ${cells}; do
    python -m launch.sweep --config="configs/benchmark.py:${cell}" --seeds=0 \
      --grid="${variant}" --root="${root}"
  done
done
# Both evaluation rules (configs/benchmark.py::protocol): the paper's best of N by min Q, and the
# actor's own sample (BC, TD3+BC and MOPO have one rule and show it in both).
python -m ampl_jax.report "${root}" --last_k=3
python -m ampl_jax.report "${root}" --last_k=3 --metric=one_sample_normalized_score --out="${root}/one_sample"
