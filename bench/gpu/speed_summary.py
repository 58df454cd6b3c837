#!/usr/bin/env python3
"""speed_summary.py BENCH_JSON [TORCH_JSON...]: the speed lines of scripts/gpu-check.sh's summary.

BENCH_JSON is bench_gpu_train's --benchmark_out (repetitions with aggregates), each TORCH_JSON
a torch_baseline.py --json (a list of results, one per mode). Prints duet's tokens/s and model FLOP/s as a fraction of the cuBLAS
BF16 GEMM rate measured in the same run (target >= 0.40), the largest non-GEMM op's share of a
step (target <= 15%; attention apart: on the BF16 table its products are cuBLAS GEMMs with FP32
softmax kernels between them, so its share is printed on its own), and duet / PyTorch
tokens/s per PyTorch mode.
"""
import json
import os
import sys


def main(bench_path, *torch_paths):
    bench = json.load(open(bench_path))
    runs = bench.get("benchmarks", [])
    med = {b["run_name"]: b for b in runs if b.get("aggregate_name") == "median"}
    gemm = next((b for n, b in med.items() if n.startswith("BM_Gemm/")), None)
    train = next((b for n, b in med.items() if n.startswith("BM_Train/")), None)
    if not (gemm and train):
        print("speed: no median results in %s" % bench_path)
        return 1
    label = {b["run_name"]: b["label"] for b in runs if b.get("label")}
    of = train.get("of_gemm", 0.0)
    where = "/".join(train["run_name"].split("/")[1:3])  # cuda/h200, or cpu/small in a rehearsal
    print("duet " + where + ": %.0f tokens/s, step %.0f ms, %.1f model TFLOP/s = %.2f of the GEMM rate "
          "(cuBLAS BF16 on a GPU; %.1f TFLOP/s on %s) -- target >= 0.40: %s" %
          (train["tok_per_s"], train["step_ms"], train["model_TFLOPs"], of, gemm["TFLOPs"],
           label.get(gemm["run_name"], "?"), "met" if of >= 0.40 else "MISSED"))
    pcts = sorted(((k[4:], v) for k, v in train.items() if k.startswith("pct_")), key=lambda kv: -kv[1])
    # The benchmark tells GEMMs from the rest (kernels::is_gemm_op): other_pct_<op> for each op
    # that is neither a GEMM nor attention; the largest median names the op (not the label,
    # which the aggregates keep only when every repetition named the same op).
    others = [(k[len("other_pct_"):], v) for k, v in train.items() if k.startswith("other_pct_")]
    worst_name, worst = max(others, key=lambda kv: kv[1]) if others else ("none", None)
    print("  GEMM ops %.1f%% of a step, attention (GEMMs + softmax) %.1f%%; largest other op %s %s -- "
          "target <= 15%%: %s" % (train.get("gemm_pct", 0.0), train.get("attn_pct", 0.0), worst_name,
                                  "?" if worst is None else "%.1f%%" % worst,
                                  "unknown" if worst is None else "met" if worst <= 15 else "MISSED"))
    print("  per op: " + ", ".join("%s %.1f%%" % kv for kv in pcts[:10]))
    for torch_path in torch_paths:
        if not os.path.exists(torch_path):
            continue
        for r in json.load(open(torch_path)):
            if "error" in r:
                print("  PyTorch %s: %s" % (r["mode"], r["error"][:200]))
            else:
                print("  PyTorch %s (%s): %.0f tokens/s, %.1f model TFLOP/s; duet / PyTorch = %.2f" %
                      (r["mode"], r["torch"], r["tok_per_s"], r["model_TFLOPs"], train["tok_per_s"] / r["tok_per_s"]))
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
