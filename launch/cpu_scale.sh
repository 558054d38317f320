#!/usr/bin/env bash
# CPU-scale learning benchmark (issue #7): AMPL vs NW (miw.schedule=none) vs BC vs TD3+BC on ampl-jax's own
# hopper and walker medium datasets, 3 vmapped seeds per run, 20k iterations each (configs/cpu_scale.py),
# plus AMPL with a w-weighted refit every 4 epochs (2k iterations) instead of every 20.
# Resumable: run it again after an interruption. Usage: bash launch/cpu_scale.sh [ROOT]
set -euo pipefail
root="${1:-runs/cpu_scale}"
for task in hopper walker; do
  python -m launch.sweep --config="configs/cpu_scale.py:${task}" --seeds=0 \
    --grid_file=launch/cpu_scale_grid.json --root="${root}"
done
python -m ampl_jax.report "${root}" --last_k=3
