#!/usr/bin/env bash
# Ten times the budget (issue #29): 200k iterations with the paper's phases at their absolute
# lengths for AMPL, NW (miw.schedule=none) and TD3+BC, hopper medium-expert first, then hopper
# medium-replay. The default protocol is configs/benchmark.py's `-sitting` one: one seed per run,
# so that each run finishes inside a 3-hour sitting of 2 CPU cores (the machine is new each
# sitting: a run that does not finish in one is lost). Order: seed 0 of AMPL, NW and TD3+BC, then
# seed 1, then seed 2, one run at a time (a run that must finish gets the CPU alone).
#   bash launch/long.sh                      # resumable: run the same line again
#   SEEDS="1" VARIANTS="method=ampl" bash launch/long.sh
#   CELLS=hopper-medium_expert-long SEEDS=0 bash launch/long.sh   # 3 vmapped seeds, uncapped fit
#   COMMIT=1 bash launch/long.sh             # mirror + git-commit every run as it lands
# Runs live in RUNS (default ~/ampl-runs/long), outside the checkout; their small results
# (config.json, metrics.csv, model_fits.jsonl, summary.json, learning_curve.png, command.sh) are
# mirrored into MIRROR (default benchmarks/long/<protocol>), where the reports are written
# (`launch/mirror_runs.sh` does it by hand during a run). Finished runs (a summary.json in the
# mirror) are skipped, so a fresh machine continues with the first unfinished run.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-${HOME}/ampl-runs/long}"
cells="${CELLS:-hopper-medium_expert-sitting hopper-medium_replay-sitting}"
seeds="${SEEDS:-0 1 2}"
variants="${VARIANTS:-method=ampl method=ampl;miw.schedule=none method=td3bc}"
for cell in ${cells}; do
  protocol="${cell##*-}"
  mirror="${MIRROR:-benchmarks/long/${protocol}}"
  folder=$(python -c "from launch.sweep import config_dataset_id as c, dataset_folder as f; \
print(f(c('configs/benchmark.py:${cell}')))")
  for seed in ${seeds}; do
    ampl="${runs}/${folder}/method=ampl/seed${seed}"
    for variant in ${variants}; do
      tag="${variant//;/+}"
      if [ -e "${mirror}/${folder}/${tag}/seed${seed}/summary.json" ]; then
        echo "skip: ${cell} ${variant} seed ${seed} finished (${mirror}/${folder}/${tag}/seed${seed})"
        continue
      fi
      extra=()
      # NW's first fit is AMPL's (one plain-MLE fit of the same data, seed and settings): start
      # from AMPL's saved first fit instead of fitting again (model.first_fit_from).
      if [ "${variant}" = "method=ampl;miw.schedule=none" ] && [ -d "${ampl}/model_fit_checkpoint" ]; then
        extra=(-- "--config.model.first_fit_from=${ampl}")
      fi
      start=$(date +%s)
      python -m launch.sweep --config="configs/benchmark.py:${cell}" --seeds="${seed}" --grid="${variant}" \
        --root="${runs}" "${extra[@]}" || echo "warning: ${cell} ${variant} seed ${seed} failed (see its stderr.log)" >&2
      echo "${cell} ${variant} seed ${seed}: $(( $(date +%s) - start )) s on $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
      bash launch/mirror_runs.sh "${runs}" "${mirror}"
      if [ -n "${COMMIT:-}" ]; then
        bash launch/commit_runs.sh "${mirror}" || echo "warning: committing finished runs failed" >&2
      fi
    done
  done
  python -m ampl_jax.report "${mirror}" --last_k=3 || true
  python -m ampl_jax.report "${mirror}" --last_k=3 --metric=one_sample_normalized_score --out="${mirror}/one_sample" || true
done
