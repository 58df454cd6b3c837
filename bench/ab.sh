#!/usr/bin/env bash
# Two duet binaries on the same job, alternating, on the same machine in the same minutes:
# the check that a refactor changed neither speed nor results. For each binary, the median
# step time (steps 3.. of each run; the first two allocate and warm up) of every run, the
# median over runs, and whether the losses of the two are bit-identical.
#
#   bench/ab.sh BASE_DUET NEW_DUET [runs] [duet args...]
# Default job: `duet launch` (the 8-rank DualPipe default), 3 runs each. One process:
#   bench/ab.sh old/duet build/apps/duet 5 train --train.steps 60
set -euo pipefail
base=$(realpath "$1"); new=$(realpath "$2"); runs=${3:-3}; shift $(( $# > 3 ? 3 : $# ))
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(launch)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run() {  # label binary index
  local dir="$out/$1-$3"
  mkdir -p "$dir"
  (cd "$dir" && "$2" "${args[@]}" --run.dir "$dir/runs" --run.name ab > "$dir/log" 2>&1) ||
    { echo "ab: $1 run $3 failed:"; tail -5 "$dir/log"; exit 1; }
  python3 -c "
import json,sys,statistics
rows=[json.loads(l) for l in open(sys.argv[1])]
print(statistics.median(r['step_time_s'] for r in rows[2:]))" "$dir/runs/ab/metrics.jsonl"
}
declare -A times=([base]="" [new]="")
for i in $(seq 1 "$runs"); do
  for who in base new; do
    bin=$base; [ "$who" = new ] && bin=$new
    t=$(run "$who" "$bin" "$i")
    times[$who]+="$t "
    echo "run $i $who: median step $t s"
  done
done
python3 - "${times[base]}" "${times[new]}" "$out" "$runs" <<'PY'
import json, statistics, sys
base = [float(x) for x in sys.argv[1].split()]; new = [float(x) for x in sys.argv[2].split()]
out, runs = sys.argv[3], int(sys.argv[4])
mb, mn = statistics.median(base), statistics.median(new)
print(f"base: median {mb:.4f} s/step (runs {min(base):.4f}-{max(base):.4f})")
print(f"new:  median {mn:.4f} s/step (runs {min(new):.4f}-{max(new):.4f})")
print(f"new / base: {mn / mb:.3f}")
keys = ("loss", "grad_norm", "expert_imbalance", "val_loss")
def losses(who, i):
    return [{k: r.get(k) for k in keys} for r in map(json.loads, open(f"{out}/{who}-{i}/runs/ab/metrics.jsonl"))]
same = all(losses("base", i) == losses("new", i) for i in range(1, runs + 1))
print("losses, gradient norms, imbalance, validation: " + ("bit-identical" if same else "DIFFERENT"))
sys.exit(0 if same else 1)
PY
