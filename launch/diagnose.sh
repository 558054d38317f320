#!/usr/bin/env bash
# Issue #14, item 1: which of the quantities the CPU budget cut makes AMPL collapse?
# Controlled runs on hopper medium, each from configs/cpu_scale.py (20k iterations, 3 vmapped
# seeds, diagnostics at every evaluation) with ONE thing changed (launch/diagnose_grid.json):
#   control | bf16 matmuls everywhere (issue #16's parity cell) | real data only (f = 1: no model
#   data) | GAN-only for all 20k iterations | BC and TD3+BC for reference | the ensemble fitted to
#   convergence (the paper's patience 10 of 1,000-minibatch epochs, first fit and refit) | the
#   paper's absolute schedule (40k GAN-only warm start, real data only to 45k) in a 60k run.
# Resumable (run again after an interruption); two runs at a time (PARALLEL=1 for one).
#   bash launch/diagnose.sh [ROOT] [TASK]
# Then every logged quantity side by side: python -m ampl_jax.lab.compare ROOT --last_k=3
set -euo pipefail
root="${1:-runs/diagnose}"
task="${2:-hopper}"
# Make the dataset once (if missing) before two runs could both start making it.
python -c "import sys; from configs.cpu_scale import get_config; from ampl_jax.datagen.source import load_data
load_data(get_config(sys.argv[1]), progress=False)" "${task}"
python -m launch.sweep --config="configs/cpu_scale.py:${task}" --seeds=0 \
  --parallel="${PARALLEL:-2}" --grid_file=launch/diagnose_grid.json --root="${root}"
python -m ampl_jax.report "${root}" --last_k=3
