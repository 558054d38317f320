#!/usr/bin/env bash
# D4RL-sized datasets of the five families for the shipped SAC policies, and their table
# (issue: D4RL-strength data): random, medium and expert 1M transitions, medium-expert 2M (half
# each), medium-replay the whole replay buffer up to the medium snapshot. Ids are
# ampl/<env>/<family>-v<N> (N = ampl_jax.config.defaults.LOCAL_DATA_VERSION[env], the snapshots' version), the
# ones the configs' offline fallbacks and the benchmark read. Resumable: datasets already in the
# local Minari store are kept. Then `python -m ampl_jax.data.describe` writes the behaviour
# returns (raw, dataset scale, D4RL scale) to benchmarks/datasets/table.{md,json}.
#   bash launch/datasets.sh                      # all three envs
#   ENVS="Hopper-v5 Walker2d-v5" bash launch/datasets.sh
set -euo pipefail
cd "$(dirname "$0")/.."
envs="${ENVS:-Hopper-v5 Walker2d-v5 HalfCheetah-v5}"
store="${MINARI_DATASETS_PATH:-$HOME/.minari/datasets}"
ids=()
for env in ${envs}; do
  fam=$(python -c "from ampl_jax.data.scores import env_family; print(env_family('${env}'))")
  for family in random medium expert medium-replay medium-expert; do
    case "${family}" in medium-expert | medium-replay) steps=2000000 ;; *) steps=1000000 ;; esac
    id=$(python -c "from ampl_jax.config.defaults import local_dataset_id; print(local_dataset_id('${fam}', '${family}'))")
    ids+=("${id}")
    if [ -d "${store}/${id}/data" ]; then echo "have ${id}"; continue; fi
    t0=${SECONDS}
    python -m ampl_jax.datagen.make_dataset --env="${env}" --policy="${family}" --steps="${steps}" \
      --seed=0 --dataset-id="${id}" --noprogress
    echo "made ${id} in $((SECONDS - t0)) s"
  done
done
mkdir -p benchmarks/datasets
python -m ampl_jax.data.describe "${ids[@]}" --out_file=benchmarks/datasets/table.json | tee benchmarks/datasets/table.md
