// SGEMM on the shapes the model uses: duet's GEMM (oneDNN, kernels/cpu/gemm.cpp) against
// OpenBLAS as installed, at 1 and 2 threads, with the machine's FMA peak measured in the same
// run (docs/PERFORMANCE.md, "CPU GEMM"). The libraries alternate, rep by rep, so drift on a
// shared machine hits both alike; each cell is the median of the reps (min–max in brackets).
// Run: build/bench/bench_gemm [reps, default 5] [only shapes whose name contains this ("" all)]
//      [only library N]
// At 2 threads, alternating is not neutral: OpenBLAS's idle workers busy-wait long after each
// call (its THREAD_TIMEOUT, ~0.1 s) and hold a core while the other library's next product
// runs. Compare libraries at 2 threads one per process (the last argument).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/peak.h"

#ifdef DUET_BENCH_OPENBLAS
#include <cblas.h>
#endif

using namespace duet;

namespace {

struct Shape {
  std::string name;
  bool ta, tb;
  int M, N, K;
  double flops() const { return 2.0 * M * N * K; }
};

// A linear layer out[N,O] = in[N,I]·wᵀ as the model runs it: forward (NT), backward-input
// (NN), backward-weight (TN) — kernels/gemm.h.
void add_linear(std::vector<Shape>& v, const std::string& name, int N, int I, int O) {
  v.push_back({name + " fwd", false, true, N, O, I});
  v.push_back({name + " bwd-in", false, false, N, I, O});
  v.push_back({name + " bwd-w", true, false, O, I, N});
}

// One micro-batch of bench_train's shapes: N = 4 × 256 tokens, d_model C, dense FFN F = 3C,
// 8 experts of width C (top 2: about N/4 rows each), head V 256, attention tiles of 64 rows
// against 64..256 keys with head width D.
std::vector<Shape> model_shapes(int C, int D) {
  const int N = 1024, F = 3 * C, Fe = C, rows = N / 4;
  const std::string p = "d" + std::to_string(C) + " ";
  std::vector<Shape> v;
  add_linear(v, p + "qkv", N, C, 3 * C);
  add_linear(v, p + "wo", N, C, C);
  add_linear(v, p + "ffn w13", N, C, 2 * F);
  add_linear(v, p + "ffn w2", N, F, C);
  add_linear(v, p + "expert w13", rows, C, 2 * Fe);
  add_linear(v, p + "expert w2", rows, Fe, C);
  add_linear(v, p + "head", N, C, 256);
  v.push_back({p + "attn QKt", false, true, 64, 160, D});
  v.push_back({p + "attn PV", false, false, 64, D, 160});
  v.push_back({p + "attn PtdO", true, false, 160, D, 64});
  return v;
}

using Gemm = std::function<void(const Shape&, const float*, const float*, float*)>;

// Seconds per call: enough calls to fill ~10 ms after one warm-up call.
double time_call(const Gemm& g, const Shape& s, const std::vector<float>& a, const std::vector<float>& b,
                 std::vector<float>& c) {
  g(s, a.data(), b.data(), c.data());
  int calls = std::max(1, (int)(1e-2 * 50e9 / s.flops()));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) g(s, a.data(), b.data(), c.data());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / calls;
}

struct Stat {
  double median, lo, hi;
};
Stat stat(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

#ifdef DUET_BENCH_OPENBLAS
// How wide the vectors of an OpenBLAS x86-64 core type's kernels are: 3 AVX-512, 2 AVX2, 1
// narrower. OpenBLAS's DYNAMIC_ARCH picks the core type from a table of CPU models; a model
// newer than the build runs the generic "Prescott" kernels (SSE3), 3–5× below the CPU.
int openblas_core_width(std::string_view core) {
  std::string c(core);
  std::transform(c.begin(), c.end(), c.begin(), [](unsigned char ch) { return (char)std::tolower(ch); });
  for (const char* k : {"skylakex", "cooperlake", "sapphirerapids"})
    if (c == k) return 3;
  for (const char* k : {"haswell", "zen", "excavator"})
    if (c == k) return 2;
  return 1;
}

int isa_width(std::string_view isa) { return isa == "AVX-512" ? 3 : isa == "AVX2" ? 2 : 1; }
#endif

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  std::vector<std::pair<std::string, Gemm>> libs;
  libs.push_back({"duet (" + cpu::gemm_library() + ")", [](const Shape& s, const float* a, const float* b, float* c) {
                    cpu::gemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, a, s.ta ? s.M : s.K, b, s.tb ? s.K : s.N, 0.0f, c, s.N);
                  }});
#ifdef DUET_BENCH_OPENBLAS
  libs.push_back({std::string("OpenBLAS ") + openblas_get_config() + ", core " + openblas_get_corename(),
                  [](const Shape& s, const float* a, const float* b, float* c) {
                    cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                                s.M, s.N, s.K, 1.0f, a, s.ta ? s.M : s.K, b, s.tb ? s.K : s.N, 0.0f, c, s.N);
                  }});
#endif
  std::vector<Shape> shapes = {{"square 1024", false, true, 1024, 1024, 1024}};
  for (auto [C, D] : {std::pair{256, 32}, std::pair{512, 64}})
    for (auto& s : model_shapes(C, D)) shapes.push_back(s);
  if (argc > 2)
    std::erase_if(shapes, [&](const Shape& s) { return s.name.find(argv[2]) == std::string::npos; });
  if (argc > 3) {
    const size_t only = (size_t)std::atoi(argv[3]);
    if (only >= libs.size()) {
      std::fprintf(stderr, "bench_gemm: library %s does not exist (0 to %zu)\n", argv[3], libs.size() - 1);
      return 2;
    }
    libs = {libs[only]};
  }

  for (size_t l = 0; l < libs.size(); ++l) std::printf("lib %zu: %s\n", l, libs[l].first.c_str());
#ifdef DUET_BENCH_OPENBLAS
  if (openblas_core_width(openblas_get_corename()) < isa_width(cpu::widest_fma_isa()))
    std::printf("note: OpenBLAS runs its '%s' kernels, narrower than this %s CPU's vectors (a CPU model it\n"
                "      does not know): its column shows that fallback, not the CPU; duet's GEMM picks kernels by ISA\n",
                openblas_get_corename(), cpu::widest_fma_isa());
#endif
  for (int threads : {1, 2}) {
    cpu::set_gemm_threads(threads);
#ifdef DUET_BENCH_OPENBLAS
    openblas_set_num_threads(threads);
#endif
    const cpu::FmaPeak peak = cpu::measure_fma_peak(threads, 0.002, 100);
    std::printf("\n%d thread(s): FMA peak (%s) %.1f GFLOP/s (%.1f per thread)\n", threads, peak.isa, peak.flops * 1e-9,
                peak.per_thread() * 1e-9);
    std::printf("%-22s", "shape (M N K)");
    for (size_t l = 0; l < libs.size(); ++l) std::printf(" | lib %zu GFLOP/s (min-max)   ", l);
    std::printf("\n");
    // per lib, per model prefix: total flops / total median time
    std::vector<std::vector<double>> tot_t(libs.size(), std::vector<double>(3)), tot_f = tot_t;
    for (const auto& s : shapes) {
      std::vector<float> a((size_t)s.M * s.K, 0.5f), b((size_t)s.K * s.N, 0.25f), c((size_t)s.M * s.N);
      std::vector<std::vector<double>> rates(libs.size());
      for (int r = 0; r < reps; ++r)
        for (size_t i = 0; i < libs.size(); ++i) {
          const size_t l = (r % 2 == 0) ? i : libs.size() - 1 - i;  // alternate which goes first
          rates[l].push_back(s.flops() / time_call(libs[l].second, s, a, b, c));
        }
      char label[64];
      std::snprintf(label, sizeof label, "%s %c%c %d %d %d", s.name.c_str(), s.ta ? 'T' : 'N', s.tb ? 'T' : 'N', s.M,
                    s.N, s.K);
      std::printf("%-40s", label);
      const int g = s.name.rfind("d256", 0) == 0 ? 1 : s.name.rfind("d512", 0) == 0 ? 2 : 0;
      for (size_t l = 0; l < libs.size(); ++l) {
        const Stat st = stat(rates[l]);
        std::printf(" | %7.1f (%5.1f-%5.1f)", st.median * 1e-9, st.lo * 1e-9, st.hi * 1e-9);
        tot_t[l][g] += s.flops() / st.median, tot_f[l][g] += s.flops();
      }
      std::printf("\n");
    }
    for (int g : {1, 2}) {
      if (tot_f[0][g] == 0) continue;
      std::printf("%-40s", g == 1 ? "d256 all shapes (flop-weighted)" : "d512 all shapes (flop-weighted)");
      for (size_t l = 0; l < libs.size(); ++l) {
        const double rate = tot_f[l][g] / tot_t[l][g];
        std::printf(" | %7.1f = %.2f of peak   ", rate * 1e-9, rate / peak.flops);
      }
      std::printf("\n");
    }
  }
  return 0;
}
