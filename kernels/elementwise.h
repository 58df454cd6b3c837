#pragma once
// Elementwise moves of the model's residual stream: what the layers did on the host before,
// now on the backend, so a device backend keeps them in stream order on its own memory (no
// synchronisation, no page migration of the activations to the host and back).

namespace duet::cpu {

void vec_copy(float* dst, const float* src, long n);  // dst = src (no overlap)
void vec_add(float* y, const float* x, long n);       // y += x
void vec_fill(float* x, long n, float value);         // x = value (whatever x held, NaN included)

}  // namespace duet::cpu
