// Rotary position embedding on the GPU: one thread per rotated pair. The table is computed
// in double, as on the CPU, so both backends rotate by the same float angles.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace duet::cuda {

namespace {

__global__ void rope_table_kernel(float* cos_sin, int T, int D, float theta) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  const int half = D / 2;
  if (i >= (long)T * half) return;
  const int t = (int)(i / half), p = (int)(i % half);
  const double freq = pow((double)theta, -2.0 * p / D);
  const double ang = t * freq;
  cos_sin[i * 2 + 0] = (float)cos(ang);
  cos_sin[i * 2 + 1] = (float)sin(ang);
}

// Pairs of q and k: (b, t, part, h, i) flattened.
__global__ void rope_rotate_kernel(float* qkv, const float* cos_sin, int B, int T, int H, int D, float sign) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  const int half = D / 2;
  const long total = (long)B * T * 2 * H * half;
  if (i >= total) return;
  const int p = (int)(i % half);
  long r = i / half;
  const int h = (int)(r % H);
  r /= H;
  const int part = (int)(r % 2);
  r /= 2;
  const int t = (int)(r % T);
  const long b = r / T;
  const int C = H * D;
  float* x = qkv + (b * T + t) * 3 * C + part * C + h * D;
  const float c = cos_sin[(size_t)t * D + 2 * p], s = sign * cos_sin[(size_t)t * D + 2 * p + 1];
  const float x0 = x[2 * p], x1 = x[2 * p + 1];
  x[2 * p] = x0 * c - x1 * s;
  x[2 * p + 1] = x0 * s + x1 * c;
}

void rotate(float* qkv, const float* cos_sin, int B, int T, int H, int D, float sign) {
  const long total = (long)B * T * 2 * H * (D / 2);
  if (total <= 0) return;
  rope_rotate_kernel<<<blocks_for(total), kThreads>>>(qkv, cos_sin, B, T, H, D, sign);
  DUET_CUDA_LAUNCHED();
}

}  // namespace

void rope_table(float* cos_sin, int T, int D, float theta) {
  const long total = (long)T * (D / 2);
  if (total <= 0) return;
  rope_table_kernel<<<blocks_for(total), kThreads>>>(cos_sin, T, D, theta);
  DUET_CUDA_LAUNCHED();
}

void rope_forward(float* qkv, const float* cos_sin, int B, int T, int H, int D) { rotate(qkv, cos_sin, B, T, H, D, 1.0f); }
void rope_backward(float* dqkv, const float* cos_sin, int B, int T, int H, int D) {
  rotate(dqkv, cos_sin, B, T, H, D, -1.0f);
}

}  // namespace duet::cuda
