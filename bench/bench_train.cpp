// Training throughput of the CPU model against the machine: the FMA peak (an FMA loop at the
// widest vector ISA the CPU has) and duet's SGEMM, both measured first in the same run at the
// same thread count (docs/PERFORMANCE.md). Counters:
//   BM_FmaPeak GFLOPs FMA peak of all threads together (kernels/peak.h)
//   BM_Sgemm GFLOPs   duet's SGEMM (kernels/gemm.h), square 1024³, C = A·Bᵀ
//   model_GFLOPs      model FLOPs per second (6 × touched params + causal attention, per token)
//   of_peak           model_GFLOPs / FMA peak — the figure the targets are set on
//   of_sgemm          model_GFLOPs / SGEMM
//   pct_<op>          share of step time spent in each kernel (exclusive of nested GEMMs)
// Run: build/bench/bench_train --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/gemm.h"
#include "kernels/peak.h"
#include "kernels/profile.h"
#include "model/arena.h"
#include "model/optimizer.h"
#include "model/stage.h"
#include "runtime/train_setup.h"

using namespace duet;

namespace {

// FMA-peak and SGEMM rates (FLOP/s) per thread count, measured by BM_FmaPeak and BM_Sgemm
// earlier in this run; the ratios use their median (a shared machine gives the odd outlier
// either way).
std::map<int, std::vector<double>> g_peak_rates, g_sgemm_rates;

double median_rate(std::map<int, std::vector<double>>& rates, int threads) {
  auto v = rates[threads];
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int threads_arg(const benchmark::State& s) { return (int)s.range(0); }

// Two threads, each on its own CPU, at ~2× one thread: two real cores; at ~1×: two vCPUs
// sharing one core (kernels/peak.h).
void BM_FmaPeak(benchmark::State& state) {
  const int threads = threads_arg(state);
  double rate = 0;
  for (auto _ : state) rate = cpu::measure_fma_peak(threads, 0.002, 100).flops;
  g_peak_rates[threads].push_back(rate);
  state.counters["GFLOPs"] = rate * 1e-9;
  state.counters["per_thread"] = rate * 1e-9 / threads;
}
BENCHMARK(BM_FmaPeak)->Arg(1)->Arg(2)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Sgemm(benchmark::State& state) {
  const int n = 1024, threads = threads_arg(state);
  cpu::set_gemm_threads(threads);
  std::vector<float> a((size_t)n * n, 0.5f), b((size_t)n * n, 0.25f), c((size_t)n * n);
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    cpu::gemm(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(c.data());
  }
  const double rate = 2.0 * n * n * n * state.iterations() / seconds;
  g_sgemm_rates[threads].push_back(rate);
  state.counters["GFLOPs"] = rate * 1e-9;
  if (median_rate(g_peak_rates, threads) > 0) state.counters["of_peak"] = rate / median_rate(g_peak_rates, threads);
}
BENCHMARK(BM_Sgemm)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

struct Shape {
  int d_model, layers, heads, d_ff, experts, top_k, d_expert, batch, seq_len;
};

// One optimizer step of `micro` micro-batches: forward, backward, AdamW.
// CPU time the hypervisor gave to other guests, summed over CPUs (/proc/stat "steal"), in
// seconds; -1 where it cannot be read.
double steal_seconds() {
  std::FILE* f = std::fopen("/proc/stat", "r");
  if (!f) return -1;
  unsigned long long v[8] = {};
  const int n = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                            &v[6], &v[7]);
  std::fclose(f);
  return n == 8 ? (double)v[7] / (double)sysconf(_SC_CLK_TCK) : -1;
}

void train_step_bench(benchmark::State& state, const Shape& s, int micro) {
  const int threads = threads_arg(state);
  cpu::set_gemm_threads(threads);
  model::ModelConfig m;
  m.vocab = 256, m.d_model = s.d_model, m.layers = s.layers, m.heads = s.heads, m.dense_layers = 1;
  m.d_ff = s.d_ff, m.experts = s.experts, m.top_k = s.top_k, m.shared_experts = 1, m.d_expert = s.d_expert;
  model::ParamArena arena(model::model_tensor_specs(m));
  model::init_parameters(arena, m, 1);
  model::Stage stage(m, model::StageRange::whole_model(m), arena);
  model::OptimizerConfig oc;
  model::AdamW opt(arena, oc);
  model::StageActivations acts;
  const int N = s.batch * s.seq_len;
  std::mt19937 rng(1);
  std::vector<int32_t> tokens(N), targets(N);
  for (int i = 0; i < N; ++i) tokens[i] = rng() % 256, targets[i] = rng() % 256;
  auto step = [&] {
    arena.zero_grads();
    for (int k = 0; k < micro; ++k) {
      stage.forward(acts, {s.batch, s.seq_len, tokens.data(), targets.data(), true}, nullptr);
      stage.backward(acts, nullptr, 1.0f / (N * micro));
    }
    opt.step(arena, 1e-3, 1.0f);
  };
  step();  // warm up: allocate activations
  cpu::profile_reset();
  cpu::profile_enable(true);
  const cpu::PoolStats pool0 = cpu::pool_stats();
  const double steal0 = steal_seconds();
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  cpu::profile_enable(false);
  const double tokens_per_step = (double)N * micro;
  const double flops = model::train_flops_per_token(m, s.seq_len) * tokens_per_step;
  const double rate = flops * state.iterations() / seconds;
  state.counters["model_GFLOPs"] = rate * 1e-9;
  state.counters["tok_per_s"] = tokens_per_step * state.iterations() / seconds;
  if (median_rate(g_peak_rates, threads) > 0) state.counters["of_peak"] = rate / median_rate(g_peak_rates, threads);
  if (median_rate(g_sgemm_rates, threads) > 0) state.counters["of_sgemm"] = rate / median_rate(g_sgemm_rates, threads);
  for (const auto& [op, t] : cpu::profile_totals()) state.counters["pct_" + op] = 100.0 * t / seconds;
  // Why a run was slow: helpers found asleep (the compute threads judged their cores shared),
  // and CPU time the hypervisor gave to others (steal, all CPUs, as a share of the run's time).
  const cpu::PoolStats pool1 = cpu::pool_stats();
  if (pool1.regions > pool0.regions)
    state.counters["pool_wakes_pct"] = 100.0 * (pool1.wakes - pool0.wakes) / (pool1.regions - pool0.regions);
  if (steal0 >= 0) state.counters["steal_pct"] = 100.0 * (steal_seconds() - steal0) / seconds;
}

}  // namespace

// Attention alone (kernels/attention.h), forward + backward of one layer of the D256 and D512
// shapes: B 4 × T 256 × 8 heads of 32 or 64. CPU time of the calling thread (the default
// clock), so at one thread a run shares less of the machine's noise; attn_GFLOPs counts the
// causal products only (6 products of T²·D/2 multiply-adds per head).
void BM_Attention(benchmark::State& state) {
  const int threads = threads_arg(state), D = (int)state.range(1), B = 4, T = 256, H = 8, C = H * D;
  cpu::set_gemm_threads(threads);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> qkv((size_t)B * T * 3 * C), out((size_t)B * T * C), dout(out.size()), dqkv(qkv.size()),
      probs((size_t)B * H * T * T);
  for (auto& x : qkv) x = normal(rng);
  for (auto& x : dout) x = normal(rng);
  for (auto _ : state) {
    cpu::attention_forward(out.data(), probs.data(), qkv.data(), B, T, H, D);
    cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), probs.data(), B, T, H, D);
    benchmark::DoNotOptimize(dqkv.data());
  }
  const double flops = 6.0 * B * H * (double)T * T * D;  // 6 products × 2·T²·D/2
  state.counters["attn_GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Attention)->Args({1, 32})->Args({1, 64})->Args({2, 32})->Unit(benchmark::kMillisecond);

static void BM_TrainTiny(benchmark::State& state) {  // configs/tiny.yaml's shape
  train_step_bench(state, {128, 4, 4, 384, 8, 2, 128, 1, 128}, 16);
}
static void BM_TrainD256(benchmark::State& state) {  // d_model 256, 4 layers, T 256, 4 sequences
  train_step_bench(state, {256, 4, 8, 768, 8, 2, 256, 4, 256}, 4);
}
static void BM_TrainD512(benchmark::State& state) {
  train_step_bench(state, {512, 4, 8, 1536, 8, 2, 512, 4, 256}, 2);
}
BENCHMARK(BM_TrainTiny)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TrainD256)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TrainD512)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("gemm", cpu::gemm_library());
  benchmark::AddCustomContext("fma_isa", cpu::widest_fma_isa());
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
