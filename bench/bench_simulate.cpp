// The full 2,048-GPU simulation of DeepSeek-V3 (configs/deepseek-v3-2048xh800.yaml): cost
// model, stage split, and one step of all 16 × 128 ranks. Target: under 2 s on one core.
//
//   build/bench/bench_simulate --benchmark_repetitions=10 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include "apps/simulate_job.h"
#include "io/config.h"

namespace {

const duet::io::RunConfig& deepseek_config() {
  static const duet::io::RunConfig cfg = duet::io::load_config(DUET_SOURCE_DIR "/configs/deepseek-v3-2048xh800.yaml");
  return cfg;
}

// Everything `duet simulate` does before writing files: config -> cost model -> simulate().
void BM_SimulateDeepSeekV3_2048Gpus(benchmark::State& state) {
  for (auto _ : state) {
    duet::app::SimOutcome o = duet::app::simulate_config(deepseek_config());
    benchmark::DoNotOptimize(o.summary.step_time_s);
  }
  state.counters["ranks"] = 2048;
}
BENCHMARK(BM_SimulateDeepSeekV3_2048Gpus)->Unit(benchmark::kMillisecond);

// The same plus the report (its one-pipeline timeline re-simulation and the three renderings).
void BM_SimulateAndReport(benchmark::State& state) {
  for (auto _ : state) {
    duet::app::SimOutcome o = duet::app::simulate_config(deepseek_config());
    duet::report::Report r = duet::report::simulated_report(o, duet::app::simulation_labels(deepseek_config()));
    std::string html = duet::report::render_html(r);
    benchmark::DoNotOptimize(html.data());
  }
}
BENCHMARK(BM_SimulateAndReport)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
