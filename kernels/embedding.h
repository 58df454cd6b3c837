#pragma once
#include <cstdint>

// Token embedding. wte is (V, C), tokens (N), out (N, C).

namespace duet::cpu {

void embedding_forward(float* out, const int32_t* tokens, const float* wte, int N, int C);
// dwte[token] += dout[n] (a weight gradient: the embedding has no input gradient)
void embedding_backward_weight(float* dwte, const float* dout, const int32_t* tokens, int N, int C);

}  // namespace duet::cpu
