// Every op of every backend against the CPU reference (after ggml's tests/test-backend-ops.cpp).
//
// To add a case: append {op, shape, tolerance} to kCases. `op` names a slot of
// kernels::Backend; `shape` is what that op's runner in kRunners unpacks (its comment says
// the order). To add an op: a slot in kernels/backend.h, a runner here — it makes the inputs
// from fixed seeds, calls the slot of the backend under test on that backend's memory and
// marks which buffers are outputs — and at least one case (EveryOpHasACase checks).
//
// What a case checks:
//  - cpu: the table, and its memory functions, against the duet::cpu functions called
//    directly (through a test-local table built here), bit for bit. Trivial by design —
//    BackendTable.CpuSlotsAreTheCpuFunctions checks each slot is the very function — and
//    what makes the model's results through the table the same as before it.
//  - any other backend: against the CPU reference with ggml's normalised error
//    nmse = mse(out, ref) / mse(ref, 0) < tolerance; integer outputs must be equal.
// An absent backend (built without CUDA, no device) and an op a backend does not implement
// yet skip visibly, with the reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/backend.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/loss.h"
#include "kernels/moe.h"
#include "kernels/norm.h"
#include "kernels/optim.h"
#include "kernels/rope.h"
#include "tests/cuda_emu/backend.h"
#include "tests/kernels/grad_check.h"

namespace {

using duet::kernels::Backend;
using Shape = std::vector<int>;

// One output of a run, widened to double (exact for float and int32).
struct Output {
  std::string name;
  std::vector<double> values;
  bool exact;  // integers: must match exactly on every backend
};

// The buffers of one op call in one backend's memory: inputs copied in, outputs read back.
class Run {
 public:
  explicit Run(const Backend& backend) : b(backend) {}
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;
  ~Run() {
    for (void* p : mem_) b.free(p);
  }

  const Backend& b;

  // A copy of `host` in the backend's memory.
  template <class T>
  T* in(const std::vector<T>& host) {
    const size_t bytes = host.size() * sizeof(T);
    void* p = b.alloc(bytes);
    mem_.push_back(p);
    b.copy_from_host(p, host.data(), bytes);
    return static_cast<T*>(p);
  }
  // Like in(); its content after the call is output `name` (`init` shows what a kernel that
  // writes only some elements, or adds instead of writing, would leave).
  template <class T>
  T* out(const char* name, const std::vector<T>& init) {
    T* p = in(init);
    const size_t n = init.size();
    read_.push_back([this, name, p, n] {
      std::vector<T> host(n);
      b.copy_to_host(host.data(), p, n * sizeof(T));
      return Output{name, {host.begin(), host.end()}, std::is_integral_v<T>};
    });
    return p;
  }
  // The op's return value.
  void result(const char* name, double v) { results_.push_back({name, {v}, false}); }

  std::vector<Output> outputs() {
    b.synchronize();
    std::vector<Output> all = results_;
    for (auto& r : read_) all.push_back(r());
    return all;
  }

 private:
  std::vector<void*> mem_;
  std::vector<std::function<Output()>> read_;
  std::vector<Output> results_;
};

// Inputs. Seeds are fixed, so every backend sees the same data.
std::vector<float> rnd(size_t n, unsigned seed, float scale = 1.0f) {
  return duet::test::random_vec(n, seed, scale);
}
std::vector<float> positive(size_t n, unsigned seed) {
  auto v = rnd(n, seed);
  for (auto& x : v) x = std::abs(x) + 0.01f;
  return v;
}
std::vector<int32_t> ids(size_t n, int bound, unsigned seed) {
  std::vector<int32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = (int32_t)((i * 7919u + seed * 104729u) % (unsigned)bound);
  return v;
}

// MoE routing inputs, made on the host with the CPU kernels: scores = σ(noise), top-K
// experts and gates, and the permutation plan.
struct Routing {
  std::vector<float> scores, bias, gate;
  std::vector<int32_t> expert, row_of, offsets;
  Routing(int N, int E, int K)
      : scores(rnd((size_t)N * E, 40)),
        bias(rnd(E, 41, 0.1f)),
        gate((size_t)N * K),
        expert((size_t)N * K),
        row_of((size_t)N * K),
        offsets(E + 1) {
    duet::cpu::sigmoid_forward(scores.data(), scores.data(), (long)scores.size());
    duet::cpu::moe_route(expert.data(), gate.data(), scores.data(), bias.data(), N, E, K);
    duet::cpu::moe_permute_plan(row_of.data(), offsets.data(), expert.data(), N, E, K);
  }
};

// A grouped linear op's shape: I, O, then the rows of each group (a MoE layer's experts).
struct Grouped {
  int I, O;
  long R = 0;
  std::vector<int> rows;
  explicit Grouped(const Shape& s) : I(s.at(0)), O(s.at(1)), rows(s.begin() + 2, s.end()) {
    if (rows.empty() || rows.size() > 4) throw std::logic_error("grouped case: 1 to 4 groups");
    for (int n : rows) R += n;
  }
  int groups() const { return (int)rows.size(); }
  // Each group's weight (O×I), its own seed.
  std::vector<const float*> weights(Run& r) const {
    std::vector<const float*> w;
    for (int k = 0; k < groups(); ++k) w.push_back(r.in(rnd((size_t)O * I, 20 + k)));
    return w;
  }
};

template <size_t n>
std::array<int, n> dims(const Shape& s) {
  if (s.size() != n) throw std::logic_error("case shape has the wrong number of dimensions");
  std::array<int, n> d;
  std::copy(s.begin(), s.end(), d.begin());
  return d;
}

using Runner = void (*)(Run&, const Shape&);

// One runner per op; the comment gives the shape's order. Buffers a kernel adds to start
// random, so that '+=' and '=' differ.
const std::map<std::string, Runner>& runners() {
  static const std::map<std::string, Runner> r = {
      {"gemm",  // M, N, K, trans_a, trans_b: C = 0.7·op(A)·op(B) + 0.3·C
       [](Run& r, const Shape& s) {
         const auto [M, N, K, ta, tb] = dims<5>(s);
         r.b.gemm(ta, tb, M, N, K, 0.7f, r.in(rnd((size_t)M * K, 1)), ta ? M : K,
                  r.in(rnd((size_t)K * N, 2)), tb ? K : N, 0.3f, r.out("C", rnd((size_t)M * N, 3)),
                  N);
       }},
      {"linear_forward",  // N, I, O, accumulate
       [](Run& r, const Shape& s) {
         const auto [N, I, O, acc] = dims<4>(s);
         r.b.linear_forward(r.out("out", rnd((size_t)N * O, 1)), r.in(rnd((size_t)N * I, 2)),
                            r.in(rnd((size_t)O * I, 3)), N, I, O, acc);
       }},
      {"linear_backward_input",  // N, I, O, accumulate
       [](Run& r, const Shape& s) {
         const auto [N, I, O, acc] = dims<4>(s);
         r.b.linear_backward_input(r.out("din", rnd((size_t)N * I, 1)), r.in(rnd((size_t)N * O, 2)),
                                   r.in(rnd((size_t)O * I, 3)), N, I, O, acc);
       }},
      {"linear_backward_weight",  // N, I, O
       [](Run& r, const Shape& s) {
         const auto [N, I, O] = dims<3>(s);
         r.b.linear_backward_weight(r.out("dw", rnd((size_t)O * I, 1)), r.in(rnd((size_t)N * O, 2)),
                                    r.in(rnd((size_t)N * I, 3)), N, I, O);
       }},
      {"grouped_linear_forward",  // I, O, then each group's rows (up to 4 groups, 0 allowed)
       [](Run& r, const Shape& s) {
         const auto g = Grouped(s);
         r.b.grouped_linear_forward(r.out("out", rnd((size_t)g.R * g.O, 1)), r.in(rnd((size_t)g.R * g.I, 2)),
                                    g.weights(r).data(), g.rows.data(), g.groups(), g.I, g.O);
       }},
      {"grouped_linear_backward_input",  // I, O, then each group's rows
       [](Run& r, const Shape& s) {
         const auto g = Grouped(s);
         r.b.grouped_linear_backward_input(r.out("din", rnd((size_t)g.R * g.I, 1)),
                                           r.in(rnd((size_t)g.R * g.O, 2)), g.weights(r).data(), g.rows.data(),
                                           g.groups(), g.I, g.O);
       }},
      {"grouped_linear_backward_weight",  // I, O, then each group's rows
       [](Run& r, const Shape& s) {
         const auto g = Grouped(s);
         static const char* names[] = {"dw0", "dw1", "dw2", "dw3"};
         std::vector<float*> dw;
         for (int k = 0; k < g.groups(); ++k) dw.push_back(r.out(names[k], rnd((size_t)g.O * g.I, 10 + k)));
         r.b.grouped_linear_backward_weight(dw.data(), r.in(rnd((size_t)g.R * g.O, 2)), r.in(rnd((size_t)g.R * g.I, 3)),
                                            g.rows.data(), g.groups(), g.I, g.O);
       }},
      {"rmsnorm_forward",  // N, C
       [](Run& r, const Shape& s) {
         const auto [N, C] = dims<2>(s);
         r.b.rmsnorm_forward(r.out("out", rnd((size_t)N * C, 1)), r.out("rstd", rnd(N, 2)),
                             r.in(rnd((size_t)N * C, 3)), r.in(rnd(C, 4)), N, C, 1e-5f);
       }},
      {"rmsnorm_backward_input",  // N, C
       [](Run& r, const Shape& s) {
         const auto [N, C] = dims<2>(s);
         const auto x = rnd((size_t)N * C, 3), w = rnd(C, 4);
         std::vector<float> y(x.size()), rstd(N);
         duet::cpu::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f);
         r.b.rmsnorm_backward_input(r.out("din", rnd((size_t)N * C, 1)),
                                    r.in(rnd((size_t)N * C, 2)), r.in(x), r.in(w), r.in(rstd), N,
                                    C);
       }},
      {"rmsnorm_backward_weight",  // N, C
       [](Run& r, const Shape& s) {
         const auto [N, C] = dims<2>(s);
         r.b.rmsnorm_backward_weight(r.out("dweight", rnd(C, 1)), r.in(rnd((size_t)N * C, 2)),
                                     r.in(rnd((size_t)N * C, 3)), r.in(positive(N, 4)), N, C);
       }},
      {"rope_table",  // T, D
       [](Run& r, const Shape& s) {
         const auto [T, D] = dims<2>(s);
         r.b.rope_table(r.out("cos_sin", rnd((size_t)T * D, 1)), T, D, 10000.0f);
       }},
      {"rope_forward",  // B, T, H, D
       [](Run& r, const Shape& s) {
         const auto [B, T, H, D] = dims<4>(s);
         std::vector<float> table((size_t)T * D);
         duet::cpu::rope_table(table.data(), T, D, 10000.0f);
         r.b.rope_forward(r.out("qkv", rnd((size_t)B * T * 3 * H * D, 1)), r.in(table), B, T, H, D);
       }},
      {"rope_backward",  // B, T, H, D
       [](Run& r, const Shape& s) {
         const auto [B, T, H, D] = dims<4>(s);
         std::vector<float> table((size_t)T * D);
         duet::cpu::rope_table(table.data(), T, D, 10000.0f);
         r.b.rope_backward(r.out("dqkv", rnd((size_t)B * T * 3 * H * D, 1)), r.in(table), B, T, H,
                           D);
       }},
      {"attention_forward",  // B, T, H, D
       [](Run& r, const Shape& s) {
         const auto [B, T, H, D] = dims<4>(s);
         // `saved` is the backend's own layout (kernels/attention.h): compared only through
         // the backward, which reads it.
         r.b.attention_forward(r.out("out", rnd((size_t)B * T * H * D, 1)),
                               r.in(rnd(r.b.attention_saved_floats(B, T, H, D), 2)),
                               r.in(rnd((size_t)B * T * 3 * H * D, 3)), B, T, H, D);
       }},
      {"attention_backward",  // B, T, H, D
       [](Run& r, const Shape& s) {
         const auto [B, T, H, D] = dims<4>(s);
         // The backend's own forward makes `out` and `saved`; its backward reads them.
         const auto qkv = rnd((size_t)B * T * 3 * H * D, 3);
         float* out = r.in(std::vector<float>((size_t)B * T * H * D));
         float* saved = r.in(std::vector<float>(r.b.attention_saved_floats(B, T, H, D)));
         const float* q = r.in(qkv);
         r.b.attention_forward(out, saved, q, B, T, H, D);
         r.b.attention_backward(r.out("dqkv", rnd(qkv.size(), 1)), r.in(rnd((size_t)B * T * H * D, 2)), q,
                                out, saved, B, T, H, D);
       }},
      {"swiglu_forward",  // N, F
       [](Run& r, const Shape& s) {
         const auto [N, F] = dims<2>(s);
         r.b.swiglu_forward(r.out("h", rnd((size_t)N * F, 1)), r.in(rnd((size_t)N * 2 * F, 2)), N,
                            F);
       }},
      {"swiglu_backward",  // N, F
       [](Run& r, const Shape& s) {
         const auto [N, F] = dims<2>(s);
         r.b.swiglu_backward(r.out("dab", rnd((size_t)N * 2 * F, 1)), r.in(rnd((size_t)N * F, 2)),
                             r.in(rnd((size_t)N * 2 * F, 3)), N, F);
       }},
      {"sigmoid_forward",  // n
       [](Run& r, const Shape& s) {
         const auto [n] = dims<1>(s);
         r.b.sigmoid_forward(r.out("out", rnd(n, 1)), r.in(rnd(n, 2, 4.0f)), n);
       }},
      {"embedding_forward",  // N, C, V
       [](Run& r, const Shape& s) {
         const auto [N, C, V] = dims<3>(s);
         r.b.embedding_forward(r.out("out", rnd((size_t)N * C, 1)), r.in(ids(N, V, 2)),
                               r.in(rnd((size_t)V * C, 3)), N, C);
       }},
      {"embedding_backward_weight",  // N, C, V (N > V: tokens repeat, their rows add up)
       [](Run& r, const Shape& s) {
         const auto [N, C, V] = dims<3>(s);
         r.b.embedding_backward_weight(r.out("dwte", rnd((size_t)V * C, 1)),
                                       r.in(rnd((size_t)N * C, 2)), r.in(ids(N, V, 3)), N, C);
       }},
      {"moe_route",  // N, E, K
       [](Run& r, const Shape& s) {
         const auto [N, E, K] = dims<3>(s);
         const Routing g(N, E, K);
         r.b.moe_route(r.out("expert", std::vector<int32_t>((size_t)N * K, -7)),
                       r.out("gate", rnd((size_t)N * K, 1)), r.in(g.scores), r.in(g.bias), N, E, K);
       }},
      {"moe_route_backward",  // N, E, K
       [](Run& r, const Shape& s) {
         const auto [N, E, K] = dims<3>(s);
         const Routing g(N, E, K);
         r.b.moe_route_backward(r.out("dlogits", rnd((size_t)N * E, 1)),
                                r.in(rnd((size_t)N * K, 2)), r.in(g.scores), r.in(g.expert),
                                r.in(g.gate), N, E, K);
       }},
      {"moe_permute_plan",  // N, E, K
       [](Run& r, const Shape& s) {
         const auto [N, E, K] = dims<3>(s);
         const Routing g(N, E, K);
         r.b.moe_permute_plan(r.out("row_of", std::vector<int32_t>((size_t)N * K, -7)),
                              r.out("offsets", std::vector<int32_t>(E + 1, -7)), r.in(g.expert), N,
                              E, K);
       }},
      {"moe_gather",  // N, E, K, C
       [](Run& r, const Shape& s) {
         const auto [N, E, K, C] = dims<4>(s);
         const Routing g(N, E, K);
         r.b.moe_gather(r.out("xp", rnd((size_t)N * K * C, 1)), r.in(rnd((size_t)N * C, 2)),
                        r.in(g.row_of), N, K, C);
       }},
      {"moe_gather_backward",  // N, E, K, C
       [](Run& r, const Shape& s) {
         const auto [N, E, K, C] = dims<4>(s);
         const Routing g(N, E, K);
         r.b.moe_gather_backward(r.out("dx", rnd((size_t)N * C, 1)),
                                 r.in(rnd((size_t)N * K * C, 2)), r.in(g.row_of), N, K, C);
       }},
      {"moe_combine",  // N, E, K, C
       [](Run& r, const Shape& s) {
         const auto [N, E, K, C] = dims<4>(s);
         const Routing g(N, E, K);
         r.b.moe_combine(r.out("out", rnd((size_t)N * C, 1)), r.in(rnd((size_t)N * K * C, 2)),
                         r.in(g.gate), r.in(g.row_of), N, K, C);
       }},
      {"moe_combine_backward",  // N, E, K, C
       [](Run& r, const Shape& s) {
         const auto [N, E, K, C] = dims<4>(s);
         const Routing g(N, E, K);
         r.b.moe_combine_backward(r.out("dyp", rnd((size_t)N * K * C, 1)),
                                  r.out("dgate", rnd((size_t)N * K, 2)),
                                  r.in(rnd((size_t)N * C, 3)), r.in(rnd((size_t)N * K * C, 4)),
                                  r.in(g.gate), r.in(g.row_of), N, K, C);
       }},
      {"cross_entropy_forward",  // N, V
       [](Run& r, const Shape& s) {
         const auto [N, V] = dims<2>(s);
         r.result("loss_sum", r.b.cross_entropy_forward(r.out("probs", rnd((size_t)N * V, 1, 3.0f)),
                                                        r.in(ids(N, V, 2)), N, V));
       }},
      {"cross_entropy_backward",  // N, V
       [](Run& r, const Shape& s) {
         const auto [N, V] = dims<2>(s);
         auto probs = rnd((size_t)N * V, 1, 3.0f);
         const auto targets = ids(N, V, 2);
         duet::cpu::cross_entropy_forward(probs.data(), targets.data(), N, V);
         r.b.cross_entropy_backward(r.out("dlogits", probs), r.in(targets), N, V, 0.1f);
       }},
      {"adamw_update",  // n, step
       [](Run& r, const Shape& s) {
         const auto [n, step] = dims<2>(s);
         const duet::kernels::AdamWParams p{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step};
         r.b.adamw_update(r.out("params", rnd(n, 1)), r.in(rnd(n, 2)), r.out("m", rnd(n, 3, 0.1f)),
                          r.out("v", positive(n, 4)), n, p);
       }},
      {"sum_squares",  // n
       [](Run& r, const Shape& s) {
         const auto [n] = dims<1>(s);
         r.result("sum", r.b.sum_squares(r.in(rnd(n, 1)), n));
       }},
      {"sum_squares_ranges",  // n, then each range's begin and end (up to 4 ranges)
       [](Run& r, const Shape& s) {
         const int n = s.at(0);
         const std::vector<int64_t> ranges(s.begin() + 1, s.end());
         const int count = (int)ranges.size() / 2;
         if (ranges.size() % 2 || count > 4) throw std::logic_error("sum_squares_ranges case: 1 to 4 pairs");
         std::vector<double> sums(count);
         r.b.sum_squares_ranges(r.in(rnd(n, 1)), ranges.data(), count, sums.data());
         static const char* names[] = {"sum0", "sum1", "sum2", "sum3"};
         for (int i = 0; i < count; ++i) r.result(names[i], sums[i]);
       }},
      {"scale",  // n
       [](Run& r, const Shape& s) {
         const auto [n] = dims<1>(s);
         r.b.scale(r.out("x", rnd(n, 1)), n, 0.37f);
       }},
      {"vec_copy",  // n
       [](Run& r, const Shape& s) {
         const auto [n] = dims<1>(s);
         r.b.vec_copy(r.out("dst", rnd(n, 1)), r.in(rnd(n, 2)), n);
       }},
      {"vec_add",  // n
       [](Run& r, const Shape& s) {
         const auto [n] = dims<1>(s);
         r.b.vec_add(r.out("y", rnd(n, 1)), r.in(rnd(n, 2)), n);
       }},
      {"vec_fill",  // n: over NaN, which a fill must not read
       [](Run& r, const Shape& s) {
         const auto [n] = dims<1>(s);
         r.b.vec_fill(r.out("x", std::vector<float>(n, std::numeric_limits<float>::quiet_NaN())), n, -0.25f);
       }},
  };
  return r;
}

struct Case {
  std::string op;
  Shape shape;
  double tolerance;  // nmse bound against the CPU (the CPU itself must match bit for bit)
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.op << " shape";
  for (int d : c.shape) *os << ' ' << d;
  *os << " tolerance " << c.tolerance;
}

// Odd sizes on purpose: they find tails that vector loops or thread blocks miss.
const std::vector<Case> kCases = {
    // op                        shape                tolerance
    {"gemm", {7, 5, 3, 0, 0}, 1e-10},
    {"gemm", {7, 5, 3, 1, 0}, 1e-10},
    {"gemm", {7, 5, 3, 0, 1}, 1e-10},
    {"gemm", {33, 65, 17, 1, 1}, 1e-10},
    {"linear_forward", {13, 24, 19, 0}, 1e-10},
    {"linear_forward", {13, 24, 19, 1}, 1e-10},
    {"linear_backward_input", {13, 24, 19, 0}, 1e-10},
    {"linear_backward_input", {13, 24, 19, 1}, 1e-10},
    {"linear_backward_weight", {13, 24, 19}, 1e-10},
    {"grouped_linear_forward", {24, 19, 5, 0, 13, 1}, 1e-10},  // an expert without rows
    {"grouped_linear_backward_input", {24, 19, 5, 0, 13, 1}, 1e-10},
    {"grouped_linear_backward_weight", {24, 19, 5, 0, 13, 1}, 1e-10},
    {"grouped_linear_forward", {17, 33, 7}, 1e-10},
    {"grouped_linear_backward_weight", {17, 33, 0, 9}, 1e-10},
    {"grouped_linear_backward_weight", {24, 19, 5, 13, 1}, 1e-10},
    {"grouped_linear_forward", {16, 8, 0, 0}, 1e-10},  // a rank whose experts got no rows
    {"grouped_linear_backward_input", {16, 8, 0, 0}, 1e-10},
    {"rmsnorm_forward", {37, 300}, 1e-10},
    {"rmsnorm_forward", {1, 4097}, 1e-10},
    {"rmsnorm_backward_input", {37, 300}, 1e-10},
    {"rmsnorm_backward_weight", {37, 300}, 1e-10},
    {"rope_table", {11, 16}, 1e-10},
    {"rope_forward", {2, 11, 3, 8}, 1e-10},
    {"rope_backward", {2, 11, 3, 8}, 1e-10},
    {"attention_forward", {2, 9, 3, 8}, 1e-10},
    {"attention_forward", {1, 70, 2, 16}, 1e-10},  // T > 64: more than one row tile
    {"attention_forward", {2, 128, 4, 32}, 1e-10},  // tiny's shape
    {"attention_forward", {1, 200, 2, 64}, 1e-10},  // CUDA: several 32-row tiles, a partial last
    {"attention_forward", {1, 47, 1, 128}, 1e-10},  // the widest head the CUDA kernels take
    {"attention_forward", {1, 300, 2, 16}, 1e-10},  // CUDA BF16: two blocks of query rows, a partial last
    {"attention_backward", {2, 9, 3, 8}, 1e-10},
    {"attention_backward", {1, 70, 2, 16}, 1e-10},
    {"attention_backward", {2, 128, 4, 32}, 1e-10},
    {"attention_backward", {1, 200, 2, 64}, 1e-10},
    {"attention_backward", {1, 47, 1, 128}, 1e-10},
    {"attention_backward", {1, 300, 2, 16}, 1e-10},
    {"swiglu_forward", {13, 21}, 1e-10},
    {"swiglu_backward", {13, 21}, 1e-10},
    {"sigmoid_forward", {1001}, 1e-10},
    {"embedding_forward", {23, 12, 9}, 1e-10},
    {"embedding_backward_weight", {23, 12, 9}, 1e-10},
    {"moe_route", {29, 8, 2}, 1e-10},
    {"moe_route_backward", {29, 8, 2}, 1e-10},
    {"moe_permute_plan", {29, 8, 2}, 1e-10},
    {"moe_gather", {29, 8, 2, 12}, 1e-10},
    {"moe_gather_backward", {29, 8, 2, 12}, 1e-10},
    {"moe_combine", {29, 8, 2, 12}, 1e-10},
    {"moe_combine_backward", {29, 8, 2, 12}, 1e-10},
    {"cross_entropy_forward", {17, 33}, 1e-10},
    {"cross_entropy_backward", {17, 33}, 1e-10},
    {"adamw_update", {1001, 1}, 1e-10},
    {"adamw_update", {1001, 7}, 1e-10},
    {"sum_squares", {1001}, 1e-10},
    {"sum_squares_ranges", {1001, 0, 1001, 5, 5, 17, 530, 900, 1001}, 1e-10},  // an empty range
    {"scale", {1001}, 1e-10},
    {"vec_copy", {1001}, 1e-10},
    {"vec_add", {1001}, 1e-10},
    {"vec_fill", {1001}, 1e-10},
};

// The duet::cpu functions in a table of the test's own making: the reference calls them
// directly, not through kernels/cpu/backend.cpp.
const Backend& direct_cpu() {
  static const Backend b = [] {
    Backend d{};
    d.name = "direct";
    d.alloc = [](size_t bytes) { return std::malloc(std::max<size_t>(bytes, 1)); };
    d.free = [](void* p) { std::free(p); };
    d.copy_to_host =
        d.copy_from_host = [](void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); };
    d.synchronize = [] {};
    d.attention_saved_floats = &duet::cpu::attention_saved_floats;
#define DIRECT_SLOT(op) d.op = &duet::cpu::op;
    DUET_BACKEND_OPS(DIRECT_SLOT)
#undef DIRECT_SLOT
    return d;
  }();
  return b;
}

// The backend named `name`, or nullptr and why it is absent.
const Backend* find_backend(const std::string& name, std::string& why) {
  if (name == "cpu") return &duet::kernels::cpu_backend();
  if (name == "cuda_emulated") return &duet::test::emulated_cuda_backend();
  if (name == "cuda_bf16_emulated") return &duet::test::emulated_cuda_bf16_backend();
  if (name == "cuda_bf16") {
    why = duet::kernels::cuda_backend_absent_reason();
    return duet::kernels::cuda_bf16_backend();
  }
  why = duet::kernels::cuda_backend_absent_reason();
  return duet::kernels::cuda_backend();
}

bool implements(const Backend& b, const std::string& op) {
  const auto missing = duet::kernels::missing_ops(b);
  return std::find(missing.begin(), missing.end(), op) == missing.end();
}

std::vector<Output> run_case(const Backend& b, const Case& c) {
  Run r(b);
  runners().at(c.op)(r, c.shape);
  return r.outputs();
}

double nmse(const std::vector<double>& out, const std::vector<double>& ref) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    err += (out[i] - ref[i]) * (out[i] - ref[i]), norm += ref[i] * ref[i];
  return err == 0 ? 0 : err / norm;  // 0/0 when both are all zeros
}

using Param = std::tuple<std::string, Case>;  // backend name, case

class EveryBackend : public testing::TestWithParam<Param> {};

TEST_P(EveryBackend, MatchesCpu) {
  const auto& [name, c] = GetParam();
  std::string why;
  const Backend* b = find_backend(name, why);
  if (!b) GTEST_SKIP() << name << " backend absent: " << why;
  if (!implements(*b, c.op))
    GTEST_SKIP() << b->name << " backend does not implement " << c.op << " yet";
  const auto got = run_case(*b, c), ref = run_case(direct_cpu(), c);
  ASSERT_EQ(got.size(), ref.size());
  const bool bitwise = b == &duet::kernels::cpu_backend();
  for (size_t i = 0; i < ref.size(); ++i) {
    const auto &o = got[i].values, &want = ref[i].values;
    ASSERT_EQ(o.size(), want.size()) << ref[i].name;
    if (bitwise || ref[i].exact)
      EXPECT_EQ(0, std::memcmp(o.data(), want.data(), o.size() * sizeof(double)))
          << c.op << ": output " << ref[i].name << " differs from the direct call";
    else
      EXPECT_LT(nmse(o, want), c.tolerance) << c.op << ": output " << ref[i].name;
  }
}

std::string case_name(const testing::TestParamInfo<Param>& info) {
  const auto& [backend, c] = info.param;
  std::string s = backend + "_" + c.op + "_";
  for (size_t i = 0; i < c.shape.size(); ++i) s += (i ? "x" : "") + std::to_string(c.shape[i]);
  return s;
}

INSTANTIATE_TEST_SUITE_P(BackendOps, EveryBackend,
                         testing::Combine(testing::Values("cpu", "cuda_emulated", "cuda"),
                                          testing::ValuesIn(kCases)),
                         case_name);

// model.precision: bf16 — the ops of the BF16 tables that run on tensor cores (the GEMM family
// and attention) against the FP32 reference. Inputs rounded to BF16 (8 significant bits) err by
// up to 2^-9 relative each; for these random inputs that is ~3e-6 nmse, and the bound is 1e-4.
// The error must also be above FP32's (1e-9): the inputs really were rounded. The other ops of
// those tables are the FP32 ones, checked above.
constexpr double kBf16Nmse = 1e-4;

std::vector<Case> bf16_cases() {
  std::vector<Case> out;
  for (const Case& c : kCases)
    if (c.op == "gemm" || c.op.find("linear_") != std::string::npos || c.op.rfind("attention_", 0) == 0)
      out.push_back(c);
  return out;
}

class Bf16Ops : public testing::TestWithParam<Param> {};

TEST_P(Bf16Ops, MatchFp32WithinBf16Rounding) {
  const auto& [name, c] = GetParam();
  std::string why;
  const Backend* b = find_backend(name, why);
  if (!b) GTEST_SKIP() << name << " backend absent: " << why;
  const auto got = run_case(*b, c), ref = run_case(direct_cpu(), c);
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    ASSERT_EQ(got[i].values.size(), ref[i].values.size()) << ref[i].name;
    if (ref[i].values.empty()) continue;  // experts without rows: nothing to compare
    const double e = nmse(got[i].values, ref[i].values);
    EXPECT_LT(e, kBf16Nmse) << c.op << ": output " << ref[i].name;
    // An expert without rows keeps its weight gradient exactly (nothing added, nothing to
    // round); any group with rows that were not added would differ by far more than 1e-4.
    if (e == 0.0 && c.op == "grouped_linear_backward_weight") continue;
    EXPECT_GT(e, 1e-9) << c.op << ": output " << ref[i].name << " is FP32-exact: were the inputs rounded?";
  }
}

INSTANTIATE_TEST_SUITE_P(BackendOpsBf16, Bf16Ops,
                         testing::Combine(testing::Values("cuda_bf16_emulated", "cuda_bf16"),
                                          testing::ValuesIn(bf16_cases())),
                         case_name);

TEST(BackendTable, CpuImplementsEveryOp) {
  const Backend& cpu = duet::kernels::cpu_backend();
  EXPECT_STREQ(cpu.name, "cpu");
  EXPECT_TRUE(cpu.alloc && cpu.free && cpu.copy_to_host && cpu.copy_from_host && cpu.synchronize);
  EXPECT_EQ(duet::kernels::missing_ops(cpu), std::vector<std::string>{});
  EXPECT_NO_THROW(duet::kernels::require_all_ops(cpu, "test"));
}

TEST(BackendTable, CpuSlotsAreTheCpuFunctions) {
  const Backend& cpu = duet::kernels::cpu_backend();
#define SAME_FUNCTION(op) EXPECT_TRUE(cpu.op == &duet::cpu::op) << #op;
  DUET_BACKEND_OPS(SAME_FUNCTION)
#undef SAME_FUNCTION
  EXPECT_TRUE(cpu.attention_saved_floats == &duet::cpu::attention_saved_floats);
}

TEST(BackendTable, EveryOpHasACase) {
#define HAS_CASE(slot)                                                                        \
  EXPECT_TRUE(runners().count(#slot)) << #slot << " has no runner";                           \
  EXPECT_TRUE(                                                                                \
      std::any_of(kCases.begin(), kCases.end(), [](const Case& c) { return c.op == #slot; })) \
      << #slot << " has no case";
  DUET_BACKEND_OPS(HAS_CASE)
#undef HAS_CASE
}

TEST(BackendTable, MissingOpsAreNamed) {
  Backend partial = duet::kernels::cpu_backend();
  partial.rope_forward = nullptr;
  partial.scale = nullptr;
  EXPECT_EQ(duet::kernels::missing_ops(partial),
            (std::vector<std::string>{"rope_forward", "scale"}));
  Backend no_size = duet::kernels::cpu_backend();
  no_size.attention_saved_floats = nullptr;
  EXPECT_EQ(duet::kernels::missing_ops(no_size), std::vector<std::string>{"attention_saved_floats"});
  try {
    duet::kernels::require_all_ops(partial, "Stage");
    FAIL() << "require_all_ops accepted a backend without rope_forward";
  } catch (const std::logic_error& e) {
    EXPECT_STREQ(e.what(), "Stage: the cpu backend does not implement rope_forward, scale");
  }
}

TEST(BackendTable, CpuMemoryIsAlignedAndCopies) {
  const Backend& cpu = duet::kernels::cpu_backend();
  const std::vector<float> host = rnd(37, 1);
  float* p = static_cast<float*>(cpu.alloc(host.size() * sizeof(float)));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  cpu.copy_from_host(p, host.data(), host.size() * sizeof(float));
  std::vector<float> back(host.size());
  cpu.copy_to_host(back.data(), p, back.size() * sizeof(float));
  cpu.free(p);
  EXPECT_EQ(back, host);
}

TEST(BackendTable, CudaBackendIsPresentOrSaysWhy) {
  std::string why;
  const Backend* cuda = find_backend("cuda", why);
  EXPECT_EQ(why.empty(), cuda != nullptr) << why;  // absent exactly when there is a reason
  if (!cuda) GTEST_SKIP() << "cuda backend absent: " << why;
  EXPECT_STREQ(cuda->name, "cuda");
  EXPECT_TRUE(cuda->alloc && cuda->free && cuda->copy_to_host && cuda->copy_from_host &&
              cuda->synchronize);
  // Managed memory: the host may address it directly (the parameter arena relies on it).
  float* p = static_cast<float*>(cuda->alloc(64 * sizeof(float)));
  p[3] = 2.5f;
  cuda->synchronize();
  EXPECT_EQ(p[3], 2.5f);
  cuda->free(p);
}

}  // namespace

namespace {

// The GPU issue's first part: the CUDA backend implements every op of the table.
TEST(BackendTable, CudaImplementsEveryOp) {
  std::string why;
  const Backend* cuda = find_backend("cuda", why);
  if (!cuda) GTEST_SKIP() << "cuda backend absent: " << why;
  EXPECT_EQ(duet::kernels::missing_ops(*cuda), std::vector<std::string>{});
}

// Ops whose results come back to the host (the loss, the gradient norm) give the same value
// every run on the GPU too: fixed-order sums, no atomics.
TEST(BackendTable, CudaReductionsAreDeterministic) {
  std::string why;
  const Backend* cuda = find_backend("cuda", why);
  if (!cuda) GTEST_SKIP() << "cuda backend absent: " << why;
  const long n = 1 << 20;
  std::vector<float> host(n);
  for (long i = 0; i < n; ++i) host[i] = std::sin(0.001 * i) * 3.0f;
  float* g = static_cast<float*>(cuda->alloc(n * sizeof(float)));
  cuda->copy_from_host(g, host.data(), n * sizeof(float));
  const double first = cuda->sum_squares(g, n);
  for (int run = 0; run < 5; ++run) EXPECT_EQ(cuda->sum_squares(g, n), first);
  double ref = 0;
  for (float x : host) ref += (double)x * x;
  EXPECT_NEAR(first, ref, 1e-9 * ref);
  cuda->free(g);
}

// A test of one backend, the parameter naming it (find_backend); skips visibly where it is absent.
class OnBackend : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string why;
    b = find_backend(GetParam(), why);
    if (!b) GTEST_SKIP() << GetParam() << " backend absent: " << why;
  }
  const Backend* b = nullptr;
};
std::string backend_name(const testing::TestParamInfo<std::string>& i) { return i.param; }

// The grouped linear ops are the linear ops run group by group over the runs of rows — bit for
// bit on the CPU and on the emulated CUDA code (FP32 and BF16; a GPU's cuBLAS may pick kernels
// by alignment, so there the op cases above bound it instead). Leading, inner and trailing
// experts without rows, and none with any.
class GroupedLinear : public OnBackend {};

TEST_P(GroupedLinear, IsTheLinearOpsGroupByGroupBitForBit) {
  const int I = 12, O = 20;
  for (const std::vector<int>& rows : {std::vector<int>{0, 5, 0, 7, 3, 0}, std::vector<int>{0, 0}}) {
    const int G = (int)rows.size();
    long R = 0;
    for (int n : rows) R += n;
    ::Run r(*b);
    const float* in = r.in(rnd(std::max(1L, R * I), 1));
    const float* dout = r.in(rnd(std::max(1L, R * O), 2));
    std::vector<const float*> w;
    for (int g = 0; g < G; ++g) w.push_back(r.in(rnd((size_t)O * I, 10 + g)));
    float* out = r.out("out grouped", rnd(std::max(1L, R * O), 3));
    float* out_ref = r.out("out by group", rnd(std::max(1L, R * O), 3));
    float* din = r.out("din grouped", rnd(std::max(1L, R * I), 4));
    float* din_ref = r.out("din by group", rnd(std::max(1L, R * I), 4));
    std::vector<float*> dw, dw_ref;
    for (int g = 0; g < G; ++g) {
      dw.push_back(r.out("dw grouped", rnd((size_t)O * I, 20 + g)));
      dw_ref.push_back(r.out("dw by group", rnd((size_t)O * I, 20 + g)));
    }
    b->grouped_linear_forward(out, in, w.data(), rows.data(), G, I, O);
    b->grouped_linear_backward_input(din, dout, w.data(), rows.data(), G, I, O);
    b->grouped_linear_backward_weight(dw.data(), dout, in, rows.data(), G, I, O);
    long r0 = 0;
    for (int g = 0; g < G; r0 += rows[g++]) {
      if (rows[g] == 0) continue;
      b->linear_forward(out_ref + r0 * O, in + r0 * I, w[g], rows[g], I, O, false);
      b->linear_backward_input(din_ref + r0 * I, dout + r0 * O, w[g], rows[g], I, O, false);
      b->linear_backward_weight(dw_ref[g], dout + r0 * O, in + r0 * I, rows[g], I, O);
    }
    const auto outs = r.outputs();  // pairs: grouped, by group
    for (size_t i = 0; i + 1 < outs.size(); i += 2) {
      ASSERT_EQ(outs[i].values.size(), outs[i + 1].values.size());
      EXPECT_EQ(outs[i].values, outs[i + 1].values) << outs[i].name << " vs " << outs[i + 1].name << ", " << G
                                                     << " groups, output pair " << i / 2;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, GroupedLinear, testing::Values("cpu", "cuda_emulated", "cuda_bf16_emulated"), backend_name);

// The clip's scale applied as AdamW reads the gradients is, bit for bit, scaling them first
// and then updating (what the optimizer did before): on the CPU and the emulated CUDA code.
class AdamWGradScale : public OnBackend {};

TEST_P(AdamWGradScale, IsScalingTheGradientsFirstBitForBit) {
  const long n = 1000;
  const float s = 0.3719f;
  duet::kernels::AdamWParams p{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 3};
  ::Run r(*b);
  float* g_scaled = r.in(rnd(n, 2));
  const float* g = r.in(rnd(n, 2));
  float* params_a = r.out("params, scaled first", rnd(n, 1));
  float* m_a = r.out("m, scaled first", rnd(n, 3, 0.1f));
  float* v_a = r.out("v, scaled first", positive(n, 4));
  float* params_b = r.out("params, scaled as read", rnd(n, 1));
  float* m_b = r.out("m, scaled as read", rnd(n, 3, 0.1f));
  float* v_b = r.out("v, scaled as read", positive(n, 4));
  b->scale(g_scaled, n, s);
  b->adamw_update(params_a, g_scaled, m_a, v_a, n, p);
  p.grad_scale = s;
  b->adamw_update(params_b, g, m_b, v_b, n, p);
  const auto outs = r.outputs();
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(outs[i].values, outs[i + 3].values) << outs[i].name;
  const auto init = rnd(n, 1);
  EXPECT_NE(outs[0].values, std::vector<double>(init.begin(), init.end()));  // it did update
}

INSTANTIATE_TEST_SUITE_P(Backends, AdamWGradScale, testing::Values("cpu", "cuda_emulated", "cuda"), backend_name);

// The gradient norm's sums over many tensors at once are, range by range, the very values of
// sum_squares over each range alone: the norm does not change by asking for them together.
class SumSquaresRanges : public OnBackend {};

TEST_P(SumSquaresRanges, EachIsTheRangesOwnSumBitForBit) {
  const long n = 300000;
  std::vector<float> host(n);
  for (long i = 0; i < n; ++i) host[i] = std::sin(0.001 * i) * 3.0f;
  float* g = static_cast<float*>(b->alloc(n * sizeof(float)));
  b->copy_from_host(g, host.data(), n * sizeof(float));
  std::vector<int64_t> ranges;  // 65 ranges of odd sizes: more than one launch's worth on CUDA (64)
  for (int64_t lo = 0, k = 1; ranges.size() < 130; lo += 37 * k, ++k) ranges.insert(ranges.end(), {lo, lo + 113 * k});
  ranges.insert(ranges.end(), {5, 5});  // and an empty one
  const int count = (int)ranges.size() / 2;
  std::vector<double> sums(count, -1.0);
  b->sum_squares_ranges(g, ranges.data(), count, sums.data());
  for (int i : {0, 1, 62, 63, 64, 65})  // each launch's first and last (every one is a CUDA fiber here)
    EXPECT_EQ(sums[i], b->sum_squares(g + ranges[2 * i], (long)(ranges[2 * i + 1] - ranges[2 * i]))) << "range " << i;
  EXPECT_EQ(sums.back(), 0.0);
  b->free(g);
}

INSTANTIATE_TEST_SUITE_P(Backends, SumSquaresRanges, testing::Values("cpu", "cuda_emulated", "cuda"), backend_name);

// While weights are held fixed, a weight's BF16 copy is cast on the stream of the thread that
// uses it first, and another thread's kernels read it after that cast (an event the other
// stream waits for), without a host wait. The emulated streams run work only when something
// waits for it (tests/cuda_emu/emu.h), so a missing wait reads the copy before its cast.
TEST(EmulatedStreams, ABf16WeightCopyCastOnOneThreadIsReadOnAnotherAfterTheCast) {
  const Backend& b = duet::test::emulated_cuda_bf16_backend();
  const int N = 8, I = 16, O = 24;
  std::vector<float> x(N * I), w(O * I);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37 * i);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::cos(0.11 * i);
  auto put = [&](const std::vector<float>& h) {
    auto* d = static_cast<float*>(b.alloc(h.size() * sizeof(float)));
    b.copy_from_host(d, h.data(), h.size() * sizeof(float));
    return d;
  };
  auto get = [&](const float* d, size_t n) {
    std::vector<float> h(n);
    b.copy_to_host(h.data(), d, n * sizeof(float));
    return h;
  };
  const std::vector<float> zeros(N * O, 0.0f);
  float *dx = put(x), *dw = put(w), *y = put(zeros), *ya = put(zeros), *yb = put(zeros);
  b.linear_forward(y, dx, dw, N, I, O, false);  // cast at the call: the reference
  const std::vector<float> want = get(y, N * O);
  void* a_done = b.mark_create();
  {
    duet::kernels::WeightsFixedScope fixed(b);
    std::thread([&] {
      b.linear_forward(ya, dx, dw, N, I, O, false);  // casts; its stream has not run
      b.mark_record(a_done);
    }).join();
    std::thread([&] {
      b.linear_forward(yb, dx, dw, N, I, O, false);  // the kept copy
      b.synchronize();
    }).join();
  }
  EXPECT_EQ(get(yb, N * O), want);
  b.mark_synchronize(a_done);  // the first thread's own product, after its cast
  EXPECT_EQ(get(ya, N * O), want);
  b.mark_destroy(a_done);
  for (float* p : {dx, dw, y, ya, yb}) b.free(p);
}

}  // namespace
