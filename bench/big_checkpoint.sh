#!/usr/bin/env bash
# Checkpoints of a large model in training: d_model 1024 with a 32k vocabulary (32 Mi-float
# embedding and head, each 32 ZeRO-1 buckets), PP 1 × DP 2 under mpirun. Saves at step 2,
# resumes bit-identically on the same layout and reshards onto one process (losses within
# 1e-4 of the uninterrupted run); prints the checkpoint's size, save and read times.
# Run: bench/big_checkpoint.sh [extra duet args...]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(--model.vocab 32768 --model.d_model 1024 --train.steps 3 --train.eval_batches 1 --train.log_every 1
      --checkpoint.async false --runtime.trace false --parallel.pp 1 --parallel.ep 1 --run.dir "$out" "$@")
dp2=(mpirun --oversubscribe -np 2 --allow-run-as-root build/apps/duet train "${args[@]}" --parallel.dp 2)
losses() { grep -o '"step":[0-9]*,"loss":[^,]*' "$1" | awk -F'[:,]' '{s[$2]=$4} END {for (k in s) print k, s[k]}' | sort -n; }
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) CPUs"
"${dp2[@]}" --run.name ref > "$out/ref.log" 2>&1
"${dp2[@]}" --run.name same --train.stop_at 2 > "$out/same1.log" 2>&1
"${dp2[@]}" --run.name same > "$out/same2.log" 2>&1
"${dp2[@]}" --run.name one --train.stop_at 2 > "$out/one1.log" 2>&1
build/apps/duet train "${args[@]}" --parallel.dp 1 --run.name one > "$out/one.log" 2>&1
grep -h 'parameters (' "$out/ref.log" | head -1
grep -h 'saved to .* in' "$out/same1.log" | head -1
du -sh "$out/same/checkpoints/step-000002" | awk '{print "checkpoint of step 2: " $1}'
grep -h 'resuming from' "$out/same2.log" "$out/one.log" || { tail -5 "$out/one.log"; exit 1; }
echo "losses (step loss): uninterrupted / resumed on DP 2 / resharded onto 1 process"
paste <(losses "$out/ref/metrics.jsonl") <(losses "$out/same/metrics.jsonl" | cut -d' ' -f2) \
      <(losses "$out/one/metrics.jsonl" | cut -d' ' -f2)
python3 - "$out" <<'PY'
import sys, re, json
out = sys.argv[1]
def losses(p):
    d = {}
    for line in open(p):
        m = re.search(r'"step":(\d+),"loss":([^,}]+)', line)
        if m: d[int(m[1])] = m[2]
    return d
ref, same, one = (losses(f"{out}/{n}/metrics.jsonl") for n in ("ref", "same", "one"))
print("resumed on the same layout: bit-identical" if same == ref else f"resumed DIFFERS: {same} vs {ref}")
worst = max(abs(float(one[s]) - float(ref[s])) / float(ref[s]) for s in one if s > 2)
print(f"resharded onto one process: worst relative difference after the resume {worst:.2e} (bound 1e-4)")
sys.exit(0 if same == ref and worst <= 1e-4 else 1)
PY
