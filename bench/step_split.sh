#!/usr/bin/env bash
# Where a run's step goes, from its report (report.json's breakdown_s): compute, waiting for a
# core, exposed communication, bubble, gradient sync + optimizer — as shares of the step, per
# run and as median (min–max) over runs — plus the step time and the replay's prediction.
#   bench/step_split.sh [runs] [duet launch args...]
# Default: the default job (8 ranks: PP 4 DualPipe x DP 2, EP 2, 300 steps), as scripts/run.sh
# runs it. A PP-2 run: bench/step_split.sh 3 --parallel.pp 2
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}; shift $(( $# > 0 ? 1 : 0 ))
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq "$runs"); do
  build/apps/duet launch "$@" --train.log_every 1000 --run.dir "$out" --run.name "r$r" >/dev/null
  cp "$out/r$r/report.json" "$out/report-$r.json"
  rm -rf "${out:?}/r$r"
done
python3 - "$out" "$runs" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
reps = [json.load(open(f"{out}/report-{r}.json")) for r in range(1, runs + 1)]
parts = list(reps[0]["breakdown_s"].keys())
def cell(vals, fmt):
    return (fmt % statistics.median(vals)) + " (" + (fmt % min(vals)) + "–" + (fmt % max(vals)) + ")"
rows = {"step time s": [r["step_time_s"] for r in reps],
        "predicted / measured": [r["predicted_over_measured"] for r in reps]}
for p in parts:
    rows[p + " share"] = [r["breakdown_s"][p] / sum(r["breakdown_s"].values()) for r in reps]
for p in parts:
    rows[p + " s"] = [r["breakdown_s"][p] for r in reps]
for name, vals in rows.items():
    print("%-40s %s   per run: %s" % (name, cell(vals, "%.3f"), " ".join("%.3f" % v for v in vals)))
PY
