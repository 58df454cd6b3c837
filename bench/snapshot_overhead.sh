#!/usr/bin/env bash
# What per-step in-memory snapshots cost: the same job alternately with checkpoint.memory on
# and off, on the same machine in the same minutes. For each run the median step time (steps
# 3.. : the first two allocate and warm up), then the median over runs and its spread, and
# whether the losses of the two are bit-identical (snapshots must not change training).
#
#   bench/snapshot_overhead.sh [runs=5] [duet args...]
# Snapshots go to the default folder (/dev/shm: shared memory, as in production).
# Default job: `duet launch --parallel.pp 2` (one rank per core on a 2-core machine), 30 steps.
# The default 8-rank job:  bench/snapshot_overhead.sh 5 launch --train.steps 30
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}; shift $(( $# > 0 ? 1 : 0 ))
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(launch --parallel.pp 2 --train.steps 30)
duet=$(realpath build/apps/duet)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "job: duet ${args[*]}; $runs runs each, alternating"
run() {  # mode index
  local dir="$out/$1-$2"
  mkdir -p "$dir"
  "$duet" "${args[@]}" --train.eval_batches 1 --checkpoint.memory "$1" \
    --run.dir "$dir/runs" --run.name r > "$dir/log" 2>&1 || { echo "run $1 $2 failed:"; tail -5 "$dir/log"; exit 1; }
  python3 -c "
import json,sys,statistics
rows=[json.loads(l) for l in open(sys.argv[1]) if '\"step\"' in l]
m=lambda k: statistics.median(r.get(k, 0) for r in rows[2:])
print(m('step_time_s'), m('snapshot_wait_s'), m('snapshot_s'), m('snapshot_cpu_s'))" \
    "$dir/runs/r/metrics.jsonl"
}
declare -A times=([on]="" [off]="") waits=([on]="") snaps=([on]="") cpus=([on]="")
for i in $(seq 1 "$runs"); do
  for mode in off on; do
    read -r t w sn c < <(run "$mode" "$i")
    times[$mode]+="$t "
    [ "$mode" = on ] && waits[on]+="$w " snaps[on]+="$sn " cpus[on]+="$c "
    echo "run $i $mode: median step $t s (snapshot: training waited $w s; thread $sn s wall, $c s CPU)"
  done
done
python3 - "${times[off]}" "${times[on]}" "${waits[on]}" "$out" "$runs" "${snaps[on]}" "${cpus[on]}" <<'PY'
import json, statistics, sys
off = [float(x) for x in sys.argv[1].split()]; on = [float(x) for x in sys.argv[2].split()]
wait = [float(x) for x in sys.argv[3].split()]
out, runs = sys.argv[4], int(sys.argv[5])
mo, mn = statistics.median(off), statistics.median(on)
print(f"off: median {mo:.4f} s/step (runs {min(off):.4f}-{max(off):.4f})")
print(f"on:  median {mn:.4f} s/step (runs {min(on):.4f}-{max(on):.4f}); training waited {statistics.median(wait):.4f} s/step for the snapshot")
print(f"overhead: {100 * (mn / mo - 1):+.1f}% (on / off = {mn / mo:.3f})")
snap = [float(x) for x in sys.argv[6].split()]; cpu = [float(x) for x in sys.argv[7].split()]
print(f"snapshot thread per step: {statistics.median(snap):.4f} s wall, {statistics.median(cpu):.4f} s CPU "
      f"(runs {min(cpu):.4f}-{max(cpu):.4f}) = {100 * statistics.median(cpu) / mo:.1f}% of the step without snapshots")
pairs = [on[i] / off[i] for i in range(runs)]
print(f"per pair on/off: " + " ".join(f"{p:.3f}" for p in pairs))
keys = ("loss", "grad_norm", "val_loss")
def losses(mode, i):
    return [{k: r.get(k) for k in keys} for r in map(json.loads, open(f"{out}/{mode}-{i}/runs/r/metrics.jsonl")) if "step" in r]
same = True
for i in range(1, runs + 1):
    for a, b in zip(losses("off", i), losses("on", i)):
        if a != b:
            print(f"pair {i}: off {a} != on {b}")
            same = False
            break
print("losses, gradient norms, validation: " + ("bit-identical" if same else "DIFFERENT"))
sys.exit(0 if same else 1)
PY
