#pragma once
// Causal multi-head attention core (no projections).
// qkv is (B, T, 3C) with C = H·D (q, k, v blocks, head h at offset h·D), out is (B, T, C).
//
// `saved` is what the forward keeps for the backward: attention_saved_floats(B, T, H, D)
// floats, in a layout only the same backend's backward reads. Each backend keeps what its
// kernels want: the CPU keeps the softmax (B, H, T, T) — at the model's sequence lengths
// recomputing it would cost a fifth more attention work; the CUDA backend keeps the row
// log-sum-exp (B, H, T) and recomputes the probabilities tile by tile (flash-style: no T×T
// matrix in memory). The backward also gets the forward's `out`, which the flash backward
// needs (Σ_d dO·O per row) and the CPU's ignores.

#include <cstddef>

namespace duet::cpu {

void attention_forward(float* out, float* saved, const float* qkv, int B, int T, int H, int D);
// dqkv = ∂loss/∂qkv (written, all three blocks). Attention has no weights, so this is all of
// its backward.
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* saved, int B, int T, int H, int D);
// Floats of `saved` for these shapes: B·H·T·T (the softmax).
size_t attention_saved_floats(int B, int T, int H, int D);

// The products' register block: the one sized for the ISA of the clone the loader picked
// (kAttentionBlockAuto), or one of the others, for tests: each is the same sums in the same order, so all
// give the same bits on one machine, and a test can check that on a machine that would only
// ever run one of them. 0: SSE-sized (6 rows × 8 columns), 1: AVX2 (6 × 16), 2: AVX-512 (8 × 32).
constexpr int kAttentionBlockAuto = -1;
void set_attention_block_for_testing(int block);
// The block the next call will use (0, 1 or 2).
int attention_block();

}  // namespace duet::cpu
