#!/usr/bin/env bash
# How close the simulator's replay (per-op costs measured in the run) comes to the measured
# step time, per layout: runs each layout N times and prints predicted / measured, twice:
#   split     the report as it is: op costs net of waiting for a core, and ranks that share
#             cores queued on them (report/measured.h)
#   unsplit   the same run's traces with the core-wait figures removed and one core per rank
#             assumed (duet report --cores 0): the replay as it was before the split
#   bench/report_accuracy.sh [runs] [layout args...]
# Default layouts: PP 2 with each schedule (2 ranks, one per core on a 2-core machine) and
# the default job (8 ranks: PP 4 DualPipe x DP 2, EP 2).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; shift $(( $# > 0 ? 1 : 0 ))
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
layouts=("--parallel.pp 2 --parallel.schedule dualpipe" "--parallel.pp 2 --parallel.schedule 1f1b"
         "--parallel.pp 2 --parallel.schedule zb1p" "--parallel.pp 2 --parallel.schedule dualpipev" "")
[ $# -eq 0 ] || layouts=("$*")
ratio() { python3 -c "import json;print(round(json.load(open('$1/report.json'))['predicted_over_measured'],3))"; }
for layout in "${layouts[@]}"; do
  split=(); unsplit=()
  for r in $(seq "$runs"); do
    # shellcheck disable=SC2086
    build/apps/duet launch $layout --train.steps 20 --train.eval_batches 1 --train.log_every 100 \
      --run.dir "$out" --run.name "r$r" >/dev/null
    split+=("$(ratio "$out/r$r")")
    sed -i 's/,"core_wait_us":[-0-9.e]*//' "$out/r$r"/trace/*.json
    build/apps/duet report --run "$out/r$r" --cores 0 --out "$out/r$r/unsplit" >/dev/null
    unsplit+=("$(ratio "$out/r$r/unsplit")")
    rm -rf "${out:?}/r$r"
  done
  printf '%-48s predicted/measured: split %s | unsplit %s\n' "${layout:-(default job)}" "${split[*]}" "${unsplit[*]}"
done
