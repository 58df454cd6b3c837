#!/usr/bin/env bash
# Chaos benchmark: one supervised run of the default job (8 ranks, PP 4 x DP 2) on 4 logical
# nodes of 2 ranks, through N seeded faults (kill, hang, kill mid-save, damaged newest
# checkpoint, node loss), one per attempt, each triggered on an event of the run. A lost node
# comes back once the next attempt has started without it (its line removed from
# excluded-nodes), so the layout shrinks and grows back. A full disk (a save fails with ENOSPC,
# training goes on) shares its attempt with the fault after it. Prints time to recover per
# fault kind (median, p95), steps lost per fault, and the effective training time (duet report).
# Run: bench/chaos.sh [faults=20] [seed=1] [extra duet args...]
set -euo pipefail
cd "$(dirname "$0")/.."
faults=${1:-20}; seed=${2:-1}; shift $(( $# > 2 ? 2 : $# ))
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
every=2
read -r plan steps < <(python3 - "$faults" "$seed" "$every" <<'PY'
import random, sys
n, seed, every = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
kinds = ["kill", "stop", "killsave", "corrupt", "nodestop", "diskfull"]
plan, resume, attempt, after_node_loss = [], 0, 1, False
for i in range(n):
    k = kinds[i] if i < len(kinds) else rng.choice(kinds)
    if i == n - 1 and k == "diskfull": k = "kill"  # a full disk shares its attempt with a fault after it
    rank = rng.randrange(4 if after_node_loss else 8)  # after a node loss the attempt runs DP 1: ranks 0-3
    if k == "diskfull":
        # The save of resume + every fails; training goes on, and the attempt's other fault
        # comes after the next save, which commits.
        plan.append(f"{attempt}:diskfull:{rank}:{resume + every}")
        resume += every  # as a base for the next fault's steps (resume + 2 * every is committed)
        continue
    if k == "killsave": step, nxt = resume + 2 * every, resume + every
    elif k == "corrupt": step, nxt = resume + 2 * every + 1, resume + every
    else:
        step = resume + every + 1 + rng.randrange(2)
        nxt = (step - 1) // every * every
    plan.append(f"{attempt}:{k}:{rank}:{step}")
    resume, attempt, after_node_loss = nxt, attempt + 1, k == "nodestop"
print(",".join(plan), resume + 2 * every)
PY
)
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) CPUs; $faults faults, seed $seed, $steps steps"
echo "plan: $plan"
events="$out/chaos/events.jsonl"
t0=$(date +%s.%N)
build/apps/duet launch --train.steps "$steps" --train.log_every 1000 --train.eval_batches 1 --checkpoint.every $every \
  --checkpoint.async false --fault.backoff_s 0 --fault.max_restarts 5 --fault.hang_timeout_s 8 --fault.host_timeout_s 2 \
  --fault.node_window_s 0 --launch.ranks_per_node 2 --runtime.fail_plan "$plan" \
  --run.dir "$out" --run.name chaos "$@" > "$out/chaos.log" 2>&1 &
pid=$!
# A lost node comes back once an attempt has started without it.
seen=0
while kill -0 $pid 2>/dev/null; do
  n=$(grep -c '"kind": "node-excluded"' "$events" 2>/dev/null || true)
  if [ "${n:-0}" -gt "$seen" ]; then
    a=$(grep '"kind": "node-excluded"' "$events" | tail -1 | sed 's/.*"attempt": \([0-9]*\).*/\1/')
    while kill -0 $pid 2>/dev/null && ! grep -q "\"kind\": \"launched\", \"attempt\": $((a + 1))," "$events"; do sleep 0.05; done
    : > "$out/chaos/excluded-nodes"
    seen=$n
  fi
  sleep 0.1
done
wait $pid || { echo "the run failed:"; tail -30 "$out/chaos.log"; exit 1; }
t1=$(date +%s.%N)
build/apps/duet report --run "$out/chaos" > "$out/report.log" 2>&1 || { tail "$out/report.log"; exit 1; }
python3 - "$out" "$every" "$t0" "$t1" "$plan" <<'PY'
import json, sys, statistics
out, every, t0, t1, plan = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
kind_of = {int(p.split(":")[0]): p.split(":")[1] for p in plan.split(",") if ":diskfull:" not in p}  # attempt -> fault
ev = [json.loads(l) for l in open(f"{out}/chaos/events.jsonl")]
rec = [e for e in ev if e["kind"] == "recovered"]
by = {}
for e in rec: by.setdefault(kind_of.get(e["attempt"] - 1, e["cause"]), []).append(e)
def pct(v, p):
    v = sorted(v); k = (len(v) - 1) * p / 100; lo = int(k); hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)
print(f"\n{len(rec)} recoveries; wall time {t1 - t0:.1f} s")
print(f"{'fault':<12}{'n':>3}{'recover p50':>13}{'p95':>7}{'steps lost max':>16}")
for k, v in sorted(by.items()):
    t = [e["total_s"] for e in v]; lost = [e["recomputed_steps"] for e in v]
    print(f"{k:<12}{len(v):>3}{statistics.median(t):>12.2f}s{pct(t, 95):>6.2f}s{max(lost):>16g}")
full = plan.count(":diskfull:")
not_saved = sum(1 for l in open(f"{out}/chaos.log") if l.startswith("checkpoint: step") and "NOT saved" in l)
print(f"{'diskfull':<12}{full:>3}   no restart: the save failed ({not_saved} reported NOT saved), training went on; the next save committed")
allt = [e["total_s"] for e in rec]; lost = [e["recomputed_steps"] for e in rec]
print(f"{'all':<12}{len(rec):>3}{statistics.median(allt):>12.2f}s{pct(allt, 95):>6.2f}s{max(lost):>16g}"
      f"   (checkpoint.every = {every}; a damaged newest checkpoint costs one interval more)")
print("layouts:", sorted({e.get("layout", "") for e in ev if e["kind"] == "launched"}))
# Throughput per layout: each attempt's metrics lines follow its run header (pp, dp, ep).
tps, dp = {}, None
for line in open(f"{out}/chaos/metrics.jsonl"):
    m = json.loads(line)
    if m.get("event") == "run": dp = m.get("dp")
    elif "tokens_per_s" in m and m.get("step", 0) > 1: tps.setdefault(dp, []).append(m["tokens_per_s"])
if 1 in tps and 2 in tps:
    r = statistics.median(tps[1]) / statistics.median(tps[2])
    print(f"throughput: DP 2 on 4 nodes {statistics.median(tps[2]):.0f} tok/s, DP 1 on the nodes left "
          f"{statistics.median(tps[1]):.0f} tok/s: ratio {r:.2f} (target >= 0.9 x 3/4 = 0.68: 3 of 4 nodes left)")
PY
grep -E 'effective training time|productive steps|recovery \(|recomputed steps|wall time \|' "$out/report.log" | head -8
