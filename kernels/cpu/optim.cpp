#include "kernels/optim.h"
#include "kernels/cpu/isa_clones.h"
#include "kernels/profile.h"

#include <cmath>

namespace duet::cpu {

DUET_ISA_CLONES void adamw_update(float* params, const float* grads, float* m, float* v, long n, const AdamWParams& p) {
  DUET_PROFILE("adamw");
  const float c1 = 1.0f / (1.0f - std::pow(p.beta1, (float)p.step));
  const float c2 = 1.0f / (1.0f - std::pow(p.beta2, (float)p.step));
  for (long i = 0; i < n; ++i) {
    const float g = grads[i];
    m[i] = p.beta1 * m[i] + (1.0f - p.beta1) * g;
    v[i] = p.beta2 * v[i] + (1.0f - p.beta2) * g * g;
    const float mhat = m[i] * c1, vhat = v[i] * c2;
    params[i] -= p.lr * (mhat / (std::sqrt(vhat) + p.eps) + p.weight_decay * params[i]);
  }
}

double sum_squares(const float* g, long n) {
  DUET_PROFILE("adamw");
  double s = 0.0;
  for (long i = 0; i < n; ++i) s += (double)g[i] * g[i];
  return s;
}

void scale(float* x, long n, float s) {
  DUET_PROFILE("adamw");
  for (long i = 0; i < n; ++i) x[i] *= s;
}

}  // namespace duet::cpu
