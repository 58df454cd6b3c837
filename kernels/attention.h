#pragma once
// Causal multi-head attention core (no projections).
// qkv is (B, T, 3C) with C = H·D (q, k, v blocks, head h at offset h·D), out is (B, T, C),
// probs is (B, H, T, T): the softmax, kept for the backward (zero above the diagonal).

namespace duet::cpu {

void attention_forward(float* out, float* probs, const float* qkv, int B, int T, int H, int D);
// dqkv = ∂loss/∂qkv (written, all three blocks). Attention has no weights, so this is all of
// its backward.
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* probs, int B,
                        int T, int H, int D);

}  // namespace duet::cpu
