#!/usr/bin/env bash
# Issue #14, item 1: which of the quantities the CPU budget cut makes AMPL collapse?
# Controlled runs on hopper medium, each from configs/cpu_scale.py (20k iterations, 3 vmapped
# seeds, diagnostics at every evaluation) with ONE thing changed (launch/diagnose_grid.json):
#   control | real data only (f = 1: no model data) | GAN-only for all 20k iterations |
#   BC and TD3+BC for reference | the ensemble fitted to convergence (the paper's patience 10 of
#   1,000-minibatch epochs, first fit and refit) | the paper's absolute schedule (40k GAN-only
#   warm start, real data only to 45k) in a 60k run | bf16 matmuls (issue #16's parity cell).
# Resumable (run again after an interruption); cheapest and most telling cells first.
#   bash launch/diagnose.sh [ROOT] [TASK]
set -euo pipefail
root="${1:-runs/diagnose}"
task="${2:-hopper}"
python -m launch.sweep --config="configs/cpu_scale.py:${task}" --seeds=0 \
  --grid_file=launch/diagnose_grid.json --root="${root}"
python -m ampl_jax.report "${root}" --last_k=3
