#!/usr/bin/env bash
# Overlap you can measure on one machine. Every message (point-to-point sends, MoE dispatches
# and combines) gets runtime.comm_delay_us of network latency: it carries its send time and
# is usable that long after it (runtime/progress.h). The benchmark runs the same layout with
# and without the latency, alternating, for each overlap mode, and reports
#
#   growth / added = (median step with latency − median step without) / latency added
#
# where "added" is the most latency one rank's messages add up to in a step (messages ×
# delay, reported by the run). Overlap on should hide most of it; overlap off (every
# transfer waited on at once, weight passes in place) grows by about all of it.
#
#   bench/overlap.sh [delay_us] [runs] [steps] [layout args...]
# Default: 2000 µs, 5 runs of 12 steps, PP 2 × DP 2 with EP 2, DualPipe, 24 micro-batches
# per pipeline (4 ranks; on a 2-core machine two share each core).
set -euo pipefail
cd "$(dirname "$0")/.."
delay=${1:-2000}; runs=${2:-5}; steps=${3:-12}; shift $(( $# > 3 ? 3 : $# ))
layout=("$@")
[ ${#layout[@]} -gt 0 ] || layout=(--parallel.pp 2 --parallel.dp 2 --parallel.ep 2 --train.global_batch 48)
duet=build/apps/duet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Median step time over steps 3.. of one run (the first two allocate and warm up), and the
# latency it added per step.
step_time() { python3 -c "
import json,sys,statistics
rows=[json.loads(l) for l in open(sys.argv[1])][2:]
print(statistics.median(r['step_time_s'] for r in rows), statistics.median(r.get('comm_delay_added_s',0) for r in rows))" "$1"; }
run() {  # overlap delay run-index
  local name="o$1-d$2-r$3"
  $duet launch "${layout[@]}" --runtime.overlap "$1" --runtime.comm_delay_us "$2" --train.steps "$steps" \
    --train.eval_batches 1 --train.log_every 1000 --runtime.trace false --run.dir "$out" --run.name "$name" >/dev/null
  step_time "$out/$name/metrics.jsonl"
}
echo "layout: ${layout[*]}; latency ${delay} us per message; $runs runs of $steps steps per cell"
printf '%-8s %9s %9s %9s %13s  %s\n' overlap base_s delayed_s added_s growth/added "per run (base, delayed alternate)"
for ov in true false; do
  rows=()
  for r in $(seq "$runs"); do
    read -r b _ < <(run "$ov" 0 "$r")
    read -r s a < <(run "$ov" "$delay" "$r")
    rows+=("$b $s $a")
    echo "  $ov run $r: base $b delayed $s added $a" >&2
  done
  printf '%s\n' "${rows[@]}" | python3 -c "
import sys,statistics as st
r=[tuple(map(float,l.split())) for l in sys.stdin]
b=st.median(x[0] for x in r); s=st.median(x[1] for x in r); a=st.median(x[2] for x in r)
each=sorted((x[1]-x[0])/x[2] for x in r)
print('%-8s %9.4f %9.4f %9.4f %13.2f  %s' % ('$ov', b, s, a, (s-b)/a, ' '.join('%.2f' % e for e in each)))"
done
