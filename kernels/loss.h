#pragma once
#include <cstdint>

// Softmax cross-entropy over a vocabulary. logits is (N, V), targets (N).

namespace duet::cpu {

// Returns Σ_n loss_n (natural log) and overwrites logits with the softmax probabilities,
// which is all the backward needs.
double cross_entropy_forward(float* logits_to_probs, const int32_t* targets, int N, int V);
// dlogits = (probs − onehot(target)) · scale, in place over the probabilities.
void cross_entropy_backward(float* probs_to_dlogits, const int32_t* targets, int N, int V,
                            float scale);

}  // namespace duet::cpu
