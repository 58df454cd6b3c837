#pragma once
// Finite-difference gradient checking for the kernels: each test writes the op's forward in
// double (the reference), projects its output on fixed random weights w to get a scalar
// loss L = Σ w·out, and compares the float kernel's backward (fed dout = w) with central
// differences of L in double. Error is the normalised ‖a − b‖ / ‖b‖.
#include <cmath>
#include <functional>
#include <random>
#include <vector>

namespace duet::test {

inline std::vector<float> random_vec(size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Numeric ∂L/∂x for L(x) = loss(x), central differences with step h, in double.
inline std::vector<double> numeric_grad(std::vector<double> x,
                                        const std::function<double(const std::vector<double>&)>& loss,
                                        double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double lp = loss(x);
    x[i] = keep - h;
    const double lm = loss(x);
    x[i] = keep;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

inline double rel_error(const std::vector<float>& analytic, const std::vector<double>& numeric) {
  double num = 0, den = 0;
  for (size_t i = 0; i < numeric.size(); ++i) {
    num += (analytic[i] - numeric[i]) * (analytic[i] - numeric[i]);
    den += numeric[i] * numeric[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace duet::test
