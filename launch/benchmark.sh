#!/usr/bin/env bash
# Learning benchmark (issues #14 and #15): hopper and walker2d x medium-replay and medium-expert
# (plus medium with CELLS=...), methods AMPL, NW (miw.schedule=none), AMPL with the td_dice_multi
# MIW estimator, BC, TD3+BC and MOPO (launch/benchmark_grid.json, run in its order), 3 vmapped seeds per run,
# configs/benchmark.py's protocol. Resumable: run the same line again. Then the reports: the paper's
# evaluation rule in ROOT/report.md, the actor's own sample in ROOT/one_sample/report.md.
#   bash launch/benchmark.sh [ROOT]
#   CELLS="hopper-medium walker-medium" bash launch/benchmark.sh runs/benchmark
#   LANES=2 bash launch/benchmark.sh                  # one lane per core (2-core machine)
#   GRID=my_grid.json bash launch/benchmark.sh        # another list of variants (same format)
#   COMMIT=1 LANES=2 bash launch/benchmark.sh         # git-commit each finished run as it lands
# Lanes share the grid: each run is claimed by the launcher that runs it (launch/sweep.py::claim),
# the others skip it as busy and take the next; each lane keeps XLA to one thread, and the reports
# are written once, when every lane is done. Extra lanes log to ${TMPDIR:-/tmp}/benchmark-lane<i>.log.
set -euo pipefail
root="${1:-benchmarks/benchmark/grid}"
cells="${CELLS:-hopper-medium_replay walker-medium_replay hopper-medium_expert walker-medium_expert}"
# Method by method, every cell each (launch/benchmark_grid.json's order: the quick baselines first),
# so the table fills evenly and a sitting's work is a set of finished runs.
variants=$(python -c "import json; [print(';'.join(f'{k}={v}' for k, v in e.items())) \
  for e in json.load(open('${GRID:-launch/benchmark_grid.json}'))]")
lane() {
  for variant in ${variants}; do
    for cell in ${cells}; do
      python -m launch.sweep --config="configs/benchmark.py:${cell}" --seeds=0 \
        --grid="${variant}" --root="${root}"
      if [ -n "${COMMIT:-}" ]; then
        bash launch/commit_runs.sh "${root}" || echo "warning: committing finished runs failed" >&2
      fi
    done
  done
}
status=0
lanes="${LANES:-1}"
if [ "${lanes}" -gt 1 ]; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
  pids=()
  for i in $(seq 2 "${lanes}"); do
    LANES=1 NO_REPORT=1 bash "$0" "$@" > "${TMPDIR:-/tmp}/benchmark-lane${i}.log" 2>&1 &
    pids+=($!)
    sleep 5  # let the lanes claim different runs from the start
  done
  lane || status=$?
  for pid in "${pids[@]}"; do wait "${pid}" || status=$?; done
else
  lane
fi
[ -n "${NO_REPORT:-}" ] && exit 0
# Both evaluation rules (configs/benchmark.py::protocol): the paper's best of N by min Q, and the
# actor's own sample (BC, TD3+BC and MOPO have one rule and show it in both).
python -m ampl_jax.report "${root}" --last_k=3
python -m ampl_jax.report "${root}" --last_k=3 --metric=one_sample_normalized_score --out="${root}/one_sample"
exit "${status}"
