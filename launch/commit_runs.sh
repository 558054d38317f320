#!/usr/bin/env bash
# Commit the finished runs under ROOT (run folders holding summary.json) that git does not yet
# have as they are, one commit, nothing else: other staged or modified files are left alone.
# Long sweeps call it after every run (`COMMIT=1 bash launch/benchmark.sh`), so results outlive
# the machine as they land. Lanes may call it at once: a lock file serialises them.
#   bash launch/commit_runs.sh [ROOT]
set -euo pipefail
root="${1:-benchmarks/benchmark/grid}"
[ -d "${root}" ] || exit 0
exec 9> "${root}/.commit_lock"
flock 9
runs=()
for summary in "${root}"/*/*/seed*/summary.json; do
  [ -e "${summary}" ] || continue
  run=$(dirname "${summary}")
  # untracked or changed files in the run folder (ignored ones, e.g. checkpoints, never show)
  [ -n "$(git status --porcelain -- "${run}")" ] && runs+=("${run}")
done
[ "${#runs[@]}" -eq 0 ] && exit 0
git add -- "${runs[@]}"
names=$(printf '%s ' "${runs[@]#"${root}"/}")
git commit -q -m "Benchmark runs finished: ${names% }" -- "${runs[@]}"
echo "committed ${#runs[@]} run(s): ${names% }"
