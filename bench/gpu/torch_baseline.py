#!/usr/bin/env python3
"""The model of bench_gpu_train written in plain PyTorch: the baseline a user would otherwise
pick. A benchmark comparison only; duet does not use PyTorch.

Same shapes and arithmetic as duet's model (model/stage.cpp): pre-norm blocks of RMSNorm,
fused QKV, interleaved-pair RoPE on q and k, causal attention, output projection; the first
layer's FFN a dense SwiGLU, the others MoE — sigmoid router scores, top-k by score + bias,
gates the chosen scores normalised to sum 1, one shared SwiGLU expert; final RMSNorm, LM head,
cross-entropy. FP32 master weights and AdamW, BF16 autocast (so GEMMs and attention in BF16
with FP32 accumulation, as duet's cuda-bf16 table), F.scaled_dot_product_attention (flash
kernels on the GPU), the MoE as a user writes it: sort tokens by expert, one SwiGLU per expert,
index_add back.

  torch_baseline.py [--device cuda|cpu] [--shape h200|small] [--mode eager|compile|both]
                    [--steps 5] [--warmup 2] [--json OUT]

Prints one JSON object per mode: tokens/s and step time (median of --steps), the loss, and
for `compile` whether it compiled; --json also writes them to OUT as a list.
"""
import argparse
import json
import math
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F

SHAPES = {
    # vocab, d_model, layers, heads, d_ff, experts, d_expert, top_k, batch, seq, micro
    "h200": dict(vocab=32768, d=2048, layers=16, heads=16, d_ff=5632, experts=16, d_expert=1408, top_k=2,
                 batch=1, seq=2048, micro=4),
    "small": dict(vocab=256, d=128, layers=2, heads=4, d_ff=384, experts=4, d_expert=128, top_k=2,
                  batch=1, seq=128, micro=2),
}


class RMSNorm(torch.nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight).to(x.dtype)


def swiglu(x, w13, w2):
    a, b = F.linear(x, w13).chunk(2, dim=-1)
    return F.linear(F.silu(a) * b, w2)


class Expert(torch.nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.w13 = torch.nn.Parameter(torch.randn(2 * f, d) * 0.02)
        self.w2 = torch.nn.Parameter(torch.randn(d, f) * 0.02)

    def forward(self, x):
        return swiglu(x, self.w13, self.w2)


class MoE(torch.nn.Module):
    def __init__(self, d, experts, d_expert, top_k):
        super().__init__()
        self.router = torch.nn.Parameter(torch.randn(experts, d) * 0.02)
        self.register_buffer("bias", torch.zeros(experts))
        self.shared = Expert(d, d_expert)
        self.experts = torch.nn.ModuleList(Expert(d, d_expert) for _ in range(experts))
        self.top_k = top_k

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        scores = torch.sigmoid(F.linear(x.float(), self.router))
        _, idx = torch.topk(scores + self.bias, self.top_k, dim=-1)
        chosen = scores.gather(-1, idx)
        gate = chosen / chosen.sum(-1, keepdim=True)
        out = self.shared(x)
        flat = idx.reshape(-1)
        order = torch.argsort(flat, stable=True)
        token = order // self.top_k
        counts = torch.bincount(flat, minlength=len(self.experts)).tolist()
        xs = x[token]
        gs = gate.reshape(-1)[order].unsqueeze(-1)
        ys = []
        start = 0
        for e, n in enumerate(counts):
            if n:
                ys.append(self.experts[e](xs[start:start + n]))
            start += n
        y = torch.cat(ys) * gs
        return out.index_add(0, token, y.to(out.dtype)).reshape(shape)


def rope_tables(T, D, theta, device):
    inv = theta ** (-torch.arange(0, D, 2, device=device, dtype=torch.float32) / D)
    ang = torch.arange(T, device=device, dtype=torch.float32)[:, None] * inv[None, :]
    return ang.cos(), ang.sin()


def rope(x, cos, sin):  # x: (B, H, T, D), pairs (2i, 2i + 1) rotated by angle t·θ^(−2i/D)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class Block(torch.nn.Module):
    def __init__(self, s, moe):
        super().__init__()
        d = s["d"]
        self.heads = s["heads"]
        self.attn_norm = RMSNorm(d)
        self.wqkv = torch.nn.Parameter(torch.randn(3 * d, d) * 0.02)
        self.wo = torch.nn.Parameter(torch.randn(d, d) * 0.02)
        self.ffn_norm = RMSNorm(d)
        self.ffn = MoE(d, s["experts"], s["d_expert"], s["top_k"]) if moe else Expert(d, s["d_ff"])

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        H = self.heads
        q, k, v = F.linear(self.attn_norm(x), self.wqkv).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(rope(q, cos, sin), rope(k, cos, sin), v, is_causal=True)
        x = x + F.linear(a.transpose(1, 2).reshape(B, T, C), self.wo)
        return x + self.ffn(self.ffn_norm(x))


class Model(torch.nn.Module):
    def __init__(self, s):
        super().__init__()
        self.embed = torch.nn.Embedding(s["vocab"], s["d"])
        self.blocks = torch.nn.ModuleList(Block(s, moe=l >= 1) for l in range(s["layers"]))
        self.norm = RMSNorm(s["d"])
        self.head = torch.nn.Parameter(torch.randn(s["vocab"], s["d"]) * 0.02)
        self.s = s

    def forward(self, tokens, targets, cos, sin):
        x = self.embed(tokens)
        for b in self.blocks:
            x = b(x, cos, sin)
        logits = F.linear(self.norm(x), self.head)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def flops_per_token(s):
    """model::train_flops_per_token: 6 × touched parameters + causal attention."""
    C = s["d"]
    p = s["vocab"] * C + C
    for l in range(s["layers"]):
        p += 4 * C * C + 2 * C
        p += 3 * C * s["d_ff"] if l < 1 else s["experts"] * C + 3 * C * s["d_expert"] * (1 + s["top_k"])
    return 6.0 * p + 6.0 * s["seq"] * C * s["layers"]


def run(mode, s, device, steps, warmup):
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device visible to PyTorch")
    torch.manual_seed(1)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.device(device):  # parameters made where they live (2.6 B of them at h200)
        model = Model(s)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=device == "cuda")
    gen = torch.Generator(device="cpu").manual_seed(1)
    tokens = torch.randint(0, s["vocab"], (s["batch"], s["seq"]), generator=gen).to(device)
    targets = torch.randint(0, s["vocab"], (s["batch"], s["seq"]), generator=gen).to(device)
    cos, sin = rope_tables(s["seq"], s["d"] // s["heads"], 10000.0, device)
    fwd = torch.compile(model) if mode == "compile" else model

    def step():
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(s["micro"]):
            with torch.autocast(device_type=device, dtype=torch.bfloat16):
                loss = fwd(tokens, targets, cos, sin)
            (loss / s["micro"]).backward()
            total += loss.detach()
        opt.step()
        return float(total) / s["micro"]  # a host read: the step is done

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    warm_s = time.perf_counter() - t0
    times, loss = [], 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    tokens_per_step = s["batch"] * s["seq"] * s["micro"]
    out = dict(mode=mode, device=device, tok_per_s=tokens_per_step / step_s, step_ms=step_s * 1e3,
               step_ms_min=min(times) * 1e3, step_ms_max=max(times) * 1e3,
               model_TFLOPs=flops_per_token(s) * tokens_per_step / step_s * 1e-12, loss=loss,
               warmup_s=warm_s, torch=torch.__version__)
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
        out["peak_mem_GiB"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    ap.add_argument("--shape", default=None, choices=sorted(SHAPES))
    ap.add_argument("--mode", default="both", choices=["eager", "compile", "both"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    s = SHAPES[a.shape or ("h200" if a.device == "cuda" else "small")]
    results = []
    for mode in (["eager", "compile"] if a.mode == "both" else [a.mode]):
        try:
            r = run(mode, s, a.device, a.steps, a.warmup)
        except Exception as e:  # torch.compile may not work on a bare machine: say so, go on
            traceback.print_exc()
            r = dict(mode=mode, device=a.device, error=f"{type(e).__name__}: {e}"[:500])
        print(json.dumps(r), flush=True)
        results.append(r)
        if a.json:  # after each mode: a later one cut short by a time limit keeps the earlier
            with open(a.json, "w") as f:
                json.dump(results, f, indent=1)
        if a.device == "cuda":
            torch.cuda.empty_cache()
    return 0 if any("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
