#!/usr/bin/env bash
# Overlap you can measure on one machine: every message gets runtime.comm_delay_us of added
# latency (applied off the compute thread by the progress thread with overlap on; waited on
# at once with overlap off). Reports, per mode, the median step time without and with the
# delay and the growth as a fraction of the communication time added per rank per step.
#
#   bench/overlap.sh [delay_us] [runs] [layout args...]
# Default layout: 2 ranks, PP 2 DualPipe (one rank per core).
set -euo pipefail
cd "$(dirname "$0")/.."
delay=${1:-2000}; runs=${2:-3}; shift $(( $# > 2 ? 2 : $# ))
layout=("$@")
[ ${#layout[@]} -gt 0 ] || layout=(--parallel.pp 2 --parallel.schedule dualpipe)
duet=build/apps/duet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# median step time over steps 3.. of one run; and the added comm per step
step_time() { python3 -c "
import json,sys,statistics
rows=[json.loads(l) for l in open(sys.argv[1])][2:]
print(statistics.median(r['step_time_s'] for r in rows), statistics.median(r.get('comm_delay_added_s',0) for r in rows))" "$1"; }
run() {  # overlap delay run-index
  local name="o$1-d$2-r$3"
  $duet launch "${layout[@]}" --runtime.overlap "$1" --runtime.comm_delay_us "$2" --train.steps 10 \
    --train.eval_batches 1 --train.log_every 100 --runtime.trace false --run.dir "$out" --run.name "$name" >/dev/null
  step_time "$out/$name/metrics.jsonl"
}
printf '%-8s %12s %12s %12s %12s  %s\n' overlap base_s delayed_s added_s growth/added runs
for ov in true false; do
  base=(); slow=(); added=()
  for r in $(seq "$runs"); do
    read -r b _ < <(run "$ov" 0 "$r"); base+=("$b")
    read -r s a < <(run "$ov" "$delay" "$r"); slow+=("$s"); added+=("$a")
  done
  mb=$(printf '%s\n' "${base[@]}" | median); ms=$(printf '%s\n' "${slow[@]}" | median)
  ma=$(printf '%s\n' "${added[@]}" | median)
  printf '%-8s %12.4f %12.4f %12.4f %12.2f  base [%s] delayed [%s]\n' "$ov" "$mb" "$ms" "$ma" \
    "$(python3 -c "print(($ms-$mb)/$ma)")" "${base[*]}" "${slow[*]}"
done
