#!/usr/bin/env bash
# Train the 1M-step SAC behaviour policies (issue: D4RL-strength data), resumably, in the background.
#
#   bash launch/behaviour.sh Hopper-v5 Walker2d-v5      # one lane: the envs one after another
#   AMPL_SAC_ROOT=/data/sac bash launch/behaviour.sh HalfCheetah-v5
#
# Each env's run lives in $AMPL_SAC_ROOT/<env>-s<seed> (default ~/.cache/ampl_jax/sac); running the
# same line again resumes every run from its newest checkpoint (a finished run just re-ships its
# snapshots). Every checkpoint is also exported to assets/sac-state/<env>-s<seed> (actions,
# learner state, eval actors: a few MB, meant to be committed), from which the same line rebuilds
# the run on a fresh machine whose run folder is gone (ampl_jax/datagen/mirror.py). On finishing, the run writes the expert/medium snapshots into the package
# (medium.json names the mirror the medium-replay buffer is regenerated from) and its curve into benchmarks/sac/. XLA is kept to one thread per run so that two
# lanes share a 2-core machine without contention; runs are niced so interactive work comes first.
set -euo pipefail
# `nice` alone does not keep a background job out of interactive work's way on Linux: with
# autogroup scheduling every session gets an equal share whatever its processes' nice values.
# So the job runs in a session of its own whose group is niced too (the caller's is untouched).
if [ -z "${AMPL_SAC_SESSION:-}" ] && command -v setsid >/dev/null 2>&1; then
  AMPL_SAC_SESSION=1 exec setsid --wait bash "$0" "$@"
fi
echo 19 > /proc/self/autogroup 2>/dev/null || true
cd "$(dirname "$0")/.."
SEED=${SEED:-0}
STEPS=${STEPS:-1000000}
export XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
mkdir -p benchmarks/sac
for env in "$@"; do
  nice -n 19 python -m ampl_jax.datagen.train_sac --env="$env" --steps="$STEPS" --seed="$SEED" \
    --eval_every=10000 --checkpoint_every=50000 --curve_out="benchmarks/sac/$env-s$SEED.json" \
    --mirror="assets/sac-state/$env-s$SEED" \
    --verbosity=-1
done
