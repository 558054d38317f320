#!/usr/bin/env bash
# Ten times the budget (issue #29): configs/benchmark.py's `-long` protocol (200k iterations, the
# paper's phases at their absolute lengths, 3 vmapped seeds) for AMPL, NW (miw.schedule=none) and
# TD3+BC, hopper medium-expert first, then hopper medium-replay. One run at a time: a run that must
# finish gets the CPU alone (a second job beside it made it 7x slower).
#   bash launch/long.sh                      # resumable: run the same line again
#   CELLS=hopper-medium_replay-long bash launch/long.sh
#   COMMIT=1 bash launch/long.sh             # mirror + git-commit every run as it lands
# Runs live in RUNS (default ~/ampl-runs/long), outside the checkout, so that their checkpoints
# survive a fresh checkout of the repository; their small results (config.json, metrics.csv,
# model_fits.jsonl, summary.json, learning_curve.png, command.sh) are mirrored into
# benchmarks/long/grid, where the reports are written (`launch/mirror_runs.sh` does it by hand
# during a run).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-${HOME}/ampl-runs/long}"
mirror="${MIRROR:-benchmarks/long/grid}"
cells="${CELLS:-hopper-medium_expert-long hopper-medium_replay-long}"
variants="${VARIANTS:-method=ampl method=ampl;miw.schedule=none method=td3bc}"
for cell in ${cells}; do
  folder=$(python -c "from launch.sweep import config_dataset_id as c, dataset_folder as f; \
print(f(c('configs/benchmark.py:${cell}')))")
  ampl="${runs}/${folder}/method=ampl/seed0"
  for variant in ${variants}; do
    extra=()
    # NW's first fit is AMPL's (one plain-MLE fit of the same data, seeds and settings): start
    # from AMPL's saved first fit instead of fitting again for hours (model.first_fit_from).
    if [ "${variant}" = "method=ampl;miw.schedule=none" ] && [ -d "${ampl}/model_fit_checkpoint" ]; then
      extra=(-- "--config.model.first_fit_from=${ampl}")
    fi
    python -m launch.sweep --config="configs/benchmark.py:${cell}" --seeds=0 --grid="${variant}" \
      --root="${runs}" "${extra[@]}" || echo "warning: ${cell} ${variant} failed (see its stderr.log)" >&2
    bash launch/mirror_runs.sh "${runs}" "${mirror}"
    if [ -n "${COMMIT:-}" ]; then
      bash launch/commit_runs.sh "${mirror}" || echo "warning: committing finished runs failed" >&2
    fi
  done
done
python -m ampl_jax.report "${mirror}" --last_k=3
python -m ampl_jax.report "${mirror}" --last_k=3 --metric=one_sample_normalized_score --out="${mirror}/one_sample"
