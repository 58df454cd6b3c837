// One GPU's training rate in BF16 on a model sized for one H200, against the cuBLAS BF16 GEMM
// rate measured in the same run on the model's largest GEMM shape (docs/gpu.md, "Speed").
// Links only the model and the kernels (no MPI, HDF5, ...): scripts/gpu-check.sh carries it
// to a GPU machine. The same code runs a small shape on the CPU backend, so the harness is
// exercised wherever the tests run (ctest bench_gpu_train_cpu).
//
// Benchmarks, per device and shape (name: BM_X/<device>/<shape>):
//   BM_Gemm   the largest GEMM of the model (linear_forward of the LM head: tokens × vocab ×
//             d_model): on CUDA, cublasGemmEx on BF16 inputs already in device memory with
//             FP32 output and accumulation — the rate a BF16 GEMM gets on this GPU; on the
//             CPU, the backend's SGEMM. Counter TFLOPs.
//   BM_Train  one optimizer step: `micro` micro-batches of forward + backward, AdamW (FP32
//             master weights and moments). Counters:
//               tok_per_s, model_TFLOPs   tokens and model FLOPs (6 × touched params +
//                                         causal attention, per token) per second
//               of_gemm                   model_TFLOPs ÷ BM_Gemm's median TFLOPs
//               gemm_pct                  share of the step the GEMM ops' kernels took
//               attn_pct                  attention's share (on the BF16 table its products are
//                                         GEMMs too, with softmax kernels between: apart)
//               pct_<op>                  each op's share (its kernels' busy time in one
//                                         profiled step ÷ the unprofiled step time; ops of the
//                                         two executors of a pair would add past 100%, but
//                                         this benchmark runs one)
//               other_pct_<op>            the same, for the ops that are neither GEMMs nor
//                                         attention; other_max_pct the largest of them
//             and a label naming the largest op that is neither a GEMM nor attention.
// Run (GPU): bench_gpu_train --benchmark_filter=/cuda/ --benchmark_repetitions=3
//            --benchmark_report_aggregates_only=true --benchmark_out=gpu.json
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/buffer.h"
#include "kernels/op_profile.h"
#include "model/arena.h"
#include "model/optimizer.h"
#include "model/stage.h"
#include "model/tensor_spec.h"

#if DUET_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#endif

using namespace duet;

namespace {

struct Shape {
  const char* name;
  model::ModelConfig model;
  int batch, seq_len, micro;
};

// h200: d_model 2048, 16 layers of heads of 128, the first dense (d_ff 5632), the others MoE
// with 16 routed experts of 1408 and one shared, top-2 — DeepSeek-V2-Lite's expert width at
// about a sixth of its depth × width, so the parameters, gradients and AdamW moments in FP32
// (2.6 B parameters, 42 GB) and one micro-batch's activations fit an H200 with room. Vocabulary
// 32768. A step is 4 micro-batches of one 2048-token sequence: 8192 tokens.
// small: the tiny model's shape, for the CPU.
model::ModelConfig make_model(int vocab, int d, int layers, int heads, int d_ff, int experts, int d_expert) {
  model::ModelConfig m;
  m.vocab = vocab, m.d_model = d, m.layers = layers, m.heads = heads, m.dense_layers = 1, m.d_ff = d_ff;
  m.experts = experts, m.top_k = 2, m.shared_experts = 1, m.d_expert = d_expert;
  return m;
}
const Shape kH200{"h200", make_model(32768, 2048, 16, 16, 5632, 16, 1408), 1, 2048, 4};
const Shape kSmall{"small", make_model(256, 128, 2, 4, 384, 4, 128), 1, 128, 2};

// The largest linear op of the model per micro-batch, by multiply-adds: (tokens, out, in).
struct GemmShape {
  long M, N, K;
};
GemmShape largest_gemm(const Shape& s) {
  const auto& m = s.model;
  const long T = (long)s.batch * s.seq_len, C = m.d_model;
  std::vector<GemmShape> all = {{T, m.vocab, C}, {T, 3 * C, C}, {T, C, C}, {T, 2L * m.d_ff, C}, {T, C, m.d_ff},
                                {T, 2L * m.d_shared(), C}};
  return *std::max_element(all.begin(), all.end(),
                           [](const GemmShape& a, const GemmShape& b) { return a.M * a.N * a.K < b.M * b.N * b.K; });
}

std::map<std::string, std::vector<double>> g_gemm_rates;  // per device/shape, FLOP/s

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

const kernels::Backend* device_backend(const std::string& device, std::string& why) {
  if (device == "cpu") return &kernels::cpu_backend();
  why = kernels::cuda_backend_absent_reason();
  return kernels::cuda_bf16_backend();
}

void BM_Gemm(benchmark::State& state, const std::string& device, const Shape& s) {
  std::string why;
  if (!device_backend(device, why)) return state.SkipWithError(("cuda backend absent: " + why).c_str());
  const GemmShape g = largest_gemm(s);
  double seconds = 0;
#if DUET_HAVE_CUDA
  if (device == "cuda") {
    std::string failed;  // the first failing call: then no rate (a GEMM that did not run takes no time)
    auto cuda_ok = [&](cudaError_t e, const char* call) {
      if (e != cudaSuccess && failed.empty()) failed = std::string(call) + ": " + cudaGetErrorString(e);
    };
    auto blas_ok = [&](cublasStatus_t e, const char* call) {
      if (e != CUBLAS_STATUS_SUCCESS && failed.empty()) failed = std::string(call) + ": " + cublasGetStatusString(e);
    };
    __nv_bfloat16 *a = nullptr, *b = nullptr;
    float* c = nullptr;
    cuda_ok(cudaMalloc(&a, sizeof(*a) * g.M * g.K), "cudaMalloc");
    cuda_ok(cudaMalloc(&b, sizeof(*b) * g.N * g.K), "cudaMalloc");
    cuda_ok(cudaMalloc(&c, sizeof(*c) * g.M * g.N), "cudaMalloc");
    cublasHandle_t h = nullptr;
    blas_ok(cublasCreate(&h), "cublasCreate");
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    cuda_ok(cudaEventCreate(&e0), "cudaEventCreate");
    cuda_ok(cudaEventCreate(&e1), "cudaEventCreate");
    if (failed.empty()) {
      cuda_ok(cudaMemset(a, 0x3c, sizeof(*a) * g.M * g.K), "cudaMemset");  // ~0.01 in BF16: finite products
      cuda_ok(cudaMemset(b, 0x3c, sizeof(*b) * g.N * g.K), "cudaMemset");
      const float one = 1.0f, zero = 0.0f;
      auto run = [&] {  // row-major C = A·Bᵀ as gemm.cu computes linear_forward
        blas_ok(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)g.N, (int)g.M, (int)g.K, &one, b, CUDA_R_16BF, (int)g.K,
                             a, CUDA_R_16BF, (int)g.K, &zero, c, CUDA_R_32F, (int)g.N, CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT),
                "cublasGemmEx");
      };
      for (int i = 0; i < 3; ++i) run();
      for (auto _ : state) {
        cuda_ok(cudaEventRecord(e0), "cudaEventRecord");
        for (int i = 0; i < 10; ++i) run();
        cuda_ok(cudaEventRecord(e1), "cudaEventRecord");
        cuda_ok(cudaEventSynchronize(e1), "cudaEventSynchronize");
        float ms = 0;
        cuda_ok(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
        state.SetIterationTime(ms * 1e-3 / 10);
        seconds += ms * 1e-3 / 10;
      }
    }
    cudaEventDestroy(e0), cudaEventDestroy(e1), cublasDestroy(h), cudaFree(a), cudaFree(b), cudaFree(c);
    if (!failed.empty()) return state.SkipWithError(failed.c_str());
  }
#endif
  if (device == "cpu") {
    const kernels::Backend& cpu = kernels::cpu_backend();
    std::vector<float> a(g.M * g.K, 0.01f), b(g.N * g.K, 0.01f), c(g.M * g.N);
    for (auto _ : state) {
      const auto t0 = std::chrono::steady_clock::now();
      cpu.linear_forward(c.data(), a.data(), b.data(), (int)g.M, (int)g.K, (int)g.N, false);
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      state.SetIterationTime(dt);
      seconds += dt;
    }
  }
  const double rate = 2.0 * g.M * g.N * g.K * state.iterations() / seconds;
  g_gemm_rates[device + "/" + s.name].push_back(rate);
  state.counters["TFLOPs"] = rate * 1e-12;
  state.SetLabel(std::to_string(g.M) + "x" + std::to_string(g.N) + "x" + std::to_string(g.K));
}

// The model, its optimizer and a micro-batch's activations on one backend, built once per
// process and device/shape (building the H200 shape's 2.6 B parameters takes seconds).
struct Trainer {
  const Shape& shape;
  model::ParamArena arena;
  model::Stage stage;
  model::AdamW opt;
  model::StageActivations acts;
  kernels::Buffer<int32_t> tokens, targets;
  Trainer(const Shape& s, uint64_t seed)
      : shape(s),
        arena(model::model_tensor_specs(s.model)),
        stage(s.model, model::StageRange::whole_model(s.model), arena),
        opt(arena, model::OptimizerConfig{}),
        tokens((size_t)s.batch * s.seq_len),
        targets((size_t)s.batch * s.seq_len) {
    model::init_parameters(arena, s.model, seed);
    std::mt19937 rng((uint32_t)seed);
    for (size_t i = 0; i < tokens.size(); ++i)
      tokens[i] = (int32_t)(rng() % s.model.vocab), targets[i] = (int32_t)(rng() % s.model.vocab);
  }
  double step() {  // the mean loss
    const int N = shape.batch * shape.seq_len;
    const kernels::Backend& b = arena.backend();
    arena.zero_grads();
    double loss = 0;
    {
      kernels::WeightsFixedScope fixed(b);  // as the engine's steps: BF16 weight copies kept for the step
      for (int k = 0; k < shape.micro; ++k) {
        stage.forward(acts, {shape.batch, shape.seq_len, tokens.data(), targets.data(), true}, nullptr);
        loss += stage.loss_sum(acts);
        stage.backward(acts, nullptr, 1.0f / (float)(N * shape.micro));
      }
    }
    opt.step(arena, 1e-4, 1.0f);
    arena.backend().synchronize();
    return loss / ((double)N * shape.micro);
  }
};

void BM_Train(benchmark::State& state, const std::string& device, const Shape& s) {
  std::string why;
  const kernels::Backend* base = device_backend(device, why);
  if (!base) return state.SkipWithError(("cuda backend absent: " + why).c_str());
  static std::map<std::string, std::unique_ptr<Trainer>> trainers;
  auto& t = trainers[device + "/" + s.name];
  if (!t) {
    const kernels::Backend* profiled = nullptr;
    try {
      profiled = &kernels::op_profiled(*base);
    } catch (const std::logic_error&) {
      return state.SkipWithError("one device per process: run with --benchmark_filter=/cpu/ or /cuda/");
    }
    kernels::set_compute_backend(*profiled);
    t = std::make_unique<Trainer>(s, 1);
    for (int i = 0; i < 2; ++i) t->step();  // warm up: activations, scratch, cuBLAS, pages resident
  }
  std::vector<double> step_s;
  double loss = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    loss = t->step();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(dt);
    step_s.push_back(dt);
  }
  const double step = median(step_s);
  // One profiled step: each op timed alone (its kernels' busy time).
  kernels::op_profile_reset();
  kernels::op_profile_enable(true);
  t->step();
  kernels::op_profile_enable(false);
  const auto ops = kernels::op_profile_totals();

  const double tokens = (double)s.batch * s.seq_len * s.micro;
  const double flops = model::train_flops_per_token(s.model, s.seq_len) * tokens;
  state.counters["tok_per_s"] = tokens / step;
  state.counters["model_TFLOPs"] = flops / step * 1e-12;
  state.counters["step_ms"] = step * 1e3;
  state.counters["loss"] = loss;
  const double gemm_rate = median(g_gemm_rates[device + "/" + s.name]);
  if (gemm_rate > 0) state.counters["of_gemm"] = flops / step / gemm_rate;
  double gemm_s = 0, attn_s = 0, worst_s = 0;
  std::string worst = "none";
  for (const auto& [op, time] : ops) {
    state.counters["pct_" + op] = 100.0 * time.seconds / step;
    if (kernels::is_gemm_op(op)) {
      gemm_s += time.seconds;
    } else if (op.rfind("attention_", 0) == 0) {
      attn_s += time.seconds;
    } else {
      state.counters["other_pct_" + op] = 100.0 * time.seconds / step;
      if (time.seconds > worst_s) worst_s = time.seconds, worst = op;
    }
  }
  state.counters["gemm_pct"] = 100.0 * gemm_s / step;
  state.counters["attn_pct"] = 100.0 * attn_s / step;
  state.counters["other_max_pct"] = 100.0 * worst_s / step;  // the label names the op
  // The name only: Google Benchmark keeps a label in the aggregates only when every
  // repetition gave the same one (two ops of about the same time can swap between
  // repetitions), so the summary names the largest other op from the other_pct_<op> medians.
  state.SetLabel("largest op besides GEMMs and attention: " + worst);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // Each shape's GEMM reference first, then its training step, which reads the reference.
  for (const auto& [device, shape] : {std::pair<std::string, const Shape*>{"cuda", &kH200}, {"cpu", &kSmall}}) {
    const std::string suffix = "/" + device + "/" + shape->name;
    const int train_steps = device == "cuda" ? 5 : 3;
    benchmark::RegisterBenchmark(("BM_Gemm" + suffix).c_str(), BM_Gemm, device, *shape)
        ->Iterations(5)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("BM_Train" + suffix).c_str(), BM_Train, device, *shape)
        ->Iterations(train_steps)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::AddCustomContext("model_h200", "d_model 2048, 16 layers, 16 heads, MoE 16x1408 top-2 + 1 shared, "
                                            "vocab 32768, seq 2048, 4 micro-batches of 1, BF16 (cuda-bf16)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
