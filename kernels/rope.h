#pragma once
// Rotary position embedding, applied in place to the q and k parts of a fused qkv buffer.
// qkv is (B, T, 3C) with C = H·D; q = [0, C), k = [C, 2C), head h at offset h·D.
// Pairs (2i, 2i+1) of each head rotate by angle t · theta^(−2i/D).
// cos_sin is a table (T, D/2, 2) from rope_table().

namespace duet::cpu {

void rope_table(float* cos_sin, int T, int D, float theta);
void rope_forward(float* qkv, const float* cos_sin, int B, int T, int H, int D);
// The rotation is orthogonal: the backward rotates the gradient by the opposite angle.
void rope_backward(float* dqkv, const float* cos_sin, int B, int T, int H, int D);

}  // namespace duet::cpu
