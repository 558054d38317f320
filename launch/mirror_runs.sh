#!/usr/bin/env bash
# Copy the small results of every run folder under SRC (config.json, metrics.csv,
# model_fits.jsonl, summary.json, learning_curve.png, command.sh) to the same place under DST,
# finished or not, so that a long run kept outside the checkout can be committed as it goes
# (launch/long.sh). Checkpoints, TensorBoard events and logs stay in SRC.
#   bash launch/mirror_runs.sh SRC DST
set -euo pipefail
src="${1:?usage: mirror_runs.sh SRC DST}"
dst="${2:?usage: mirror_runs.sh SRC DST}"
[ -d "${src}" ] || exit 0
for config in "${src}"/*/*/seed*/config.json; do
  [ -e "${config}" ] || continue
  run=$(dirname "${config}")
  out="${dst}/${run#"${src}"/}"
  mkdir -p "${out}"
  for f in config.json metrics.csv model_fits.jsonl summary.json learning_curve.png command.sh; do
    if [ -e "${run}/${f}" ]; then
      cp -p "${run}/${f}" "${out}/${f}.tmp"
      mv -f "${out}/${f}.tmp" "${out}/${f}"
    fi
  done
done
