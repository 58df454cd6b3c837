#!/usr/bin/env bash
# How close the simulator's replay (per-op costs measured in the run) comes to the measured
# step time, per layout: runs each layout N times and prints predicted / measured.
#   bench/report_accuracy.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
layouts=("--parallel.pp 2 --parallel.schedule dualpipe" "--parallel.pp 2 --parallel.schedule 1f1b"
         "--parallel.pp 2 --parallel.schedule zb1p" "--parallel.pp 2 --parallel.schedule dualpipev")
for layout in "${layouts[@]}"; do
  ratios=()
  for r in $(seq "$runs"); do
    # shellcheck disable=SC2086
    build/apps/duet launch $layout --train.steps 20 --train.eval_batches 1 --train.log_every 100 \
      --run.dir "$out" --run.name "r$r" >/dev/null
    ratios+=("$(python3 -c "import json;print(round(json.load(open('$out/r$r/report.json'))['predicted_over_measured'],3))")")
    rm -rf "${out:?}/r$r"
  done
  printf '%-48s predicted/measured: %s\n' "$layout" "${ratios[*]}"
done
