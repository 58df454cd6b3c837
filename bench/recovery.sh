#!/usr/bin/env bash
# Time to recover: a rank SIGKILLed (and, separately, SIGSTOPped: a hang) in the default job
# under `duet launch`, N times each with a seeded choice of rank and step; the supervisor's
# 'recovered' records (events.jsonl) give fault -> next completed step and its parts. Prints
# median, p95 and max per part, and the hang detection time past its timeout.
# Run: bench/recovery.sh [kills=10] [hangs=3] [seed=1] [extra duet args...]
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-10}; hangs=${2:-3}; seed=${3:-1}; shift $(( $# > 3 ? 3 : $# ))
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
RANDOM=$seed
hang_timeout=5
args=(--train.steps 10 --train.log_every 100 --train.eval_batches 1 --checkpoint.every 4 --checkpoint.async false
      --fault.backoff_s 0 --runtime.trace false --run.dir "$out" "$@")
run() {  # name signal timeout
  local rank=$((RANDOM % 8)) step=$((5 + RANDOM % 3))
  build/apps/duet launch "${args[@]}" --run.name "$1" --runtime.fail_rank $rank --runtime.fail_step $step \
    --runtime.fail_signal "$2" --fault.hang_timeout_s "$3" > "$out/$1.log" 2>&1 ||
    { echo "run $1 failed:"; tail -20 "$out/$1.log"; exit 1; }
  echo "  $1: rank $rank at step $step: $(grep -o 'recovered from .*' "$out/$1.log")"
}
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) CPUs; ${kills} kills, ${hangs} hangs, seed ${seed}"
for i in $(seq "$kills"); do run "kill$i" 9 600; done
for i in $(seq "$hangs"); do run "hang$i" 19 "$hang_timeout"; done
python3 - "$out" "$kills" "$hangs" "$hang_timeout" <<'PY'
import json, sys, glob, statistics
out, kills, hangs, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
parts = ["detection_s", "teardown_s", "backoff_s", "launch_s", "mpi_init_s", "setup_s", "load_s", "first_step_s", "total_s"]
def records(prefix):
    recs = []
    for f in sorted(glob.glob(f"{out}/{prefix}*/events.jsonl")):
        for line in open(f):
            e = json.loads(line)
            if e["kind"] == "recovered": recs.append(e)
    return recs
def pct(v, p):
    v = sorted(v); k = (len(v) - 1) * p / 100; lo = int(k); hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)
for name, prefix, n in (("SIGKILL of a rank", "kill", kills), ("SIGSTOP of a rank (hang)", "hang", hangs)):
    recs = records(prefix)
    if not recs: continue
    print(f"\n{name}: {len(recs)} recoveries (of {n} faults); seconds")
    print(f"  {'part':<14}{'median':>8}{'p95':>8}{'max':>8}")
    for p in parts:
        v = [r[p] for r in recs]
        print(f"  {p[:-2]:<14}{statistics.median(v):8.2f}{pct(v, 95):8.2f}{max(v):8.2f}")
    steps = [r["recomputed_steps"] for r in recs]
    print(f"  steps recomputed: median {statistics.median(steps):g}, max {max(steps):g}")
    if prefix == "hang":
        d = [r["detection_s"] - timeout for r in recs]
        print(f"  hang detection past the {timeout:g} s timeout: median {statistics.median(d):.2f} s, max {max(d):.2f} s")
PY
