#!/usr/bin/env bash
# Learning benchmark (issues #14 and #15): hopper and walker2d x medium-replay and medium-expert
# (plus medium with CELLS=...), methods AMPL, NW (miw.schedule=none), AMPL with the td_dice_multi
# MIW estimator, BC, TD3+BC and MOPO (launch/benchmark_grid.json), 3 vmapped seeds per run,
# configs/benchmark.py's protocol. Resumable: run the same line again. Then the report.
#   bash launch/benchmark.sh [ROOT]
#   CELLS="hopper-medium walker-medium" bash launch/benchmark.sh runs/benchmark
set -euo pipefail
root="${1:-runs/benchmark}"
cells="${CELLS:-hopper-medium_replay walker-medium_replay hopper-medium_expert walker-medium_expert}"
for cell in ${cells}; do
  python -m launch.sweep --config="configs/benchmark.py:${cell}" --seeds=0 \
    --grid_file=launch/benchmark_grid.json --root="${root}"
done
python -m ampl_jax.report "${root}" --last_k=3
