// Scheduler benchmarks. The headline: one training step of a 2,048-rank job - DualPipe,
// 16 pipeline stages, 120 micro-batches per pipeline, 128 data-parallel pipelines - must
// simulate in well under a second on one core, with cost linear in the number of ops.
//
//   build/bench/bench_scheduler --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include "scheduler/schedule.h"
#include "scheduler/simulate.h"
#include "scheduler/validate.h"

namespace {

using namespace duet::sched;

size_t count_ops(const Schedule& s) {
  size_t n = 0;
  for (const auto& v : s.ops) n += v.size();
  return n;
}

// DeepSeek-V3-like shape: per-stage costs with all-to-all inside chunks, p2p messages on a
// link with latency and bandwidth, DP sync at the end.
SimConfig deepseek_like(int pipelines, bool timeline) {
  SimConfig c;
  StageCost s = stage_cost(1.0, 2.0, 1.0, 2.6);
  s.f_a2a = 0.6, s.b_a2a = 0.6;
  s.activation_bytes = s.gradient_bytes = 7168.0 * 4096 * 2;
  s.dp_sync = 4.0;
  c.stages = {s};
  c.link_classes = {{0.01, 50e9 / 1e3}, {0.002, 400e9 / 1e3}};
  c.link_class = [](int from, int to) { return from / 8 == to / 8 ? 1 : 0; };  // 8 GPUs per node
  c.pipelines = pipelines;
  c.record_timeline = timeline;
  return c;
}

// 2,048 ranks: DualPipe 16 x 120, 128 pipelines. Arg: record the timeline (0/1).
void BM_Simulate2048RankStep(benchmark::State& state) {
  Schedule s = make_dualpipe_schedule(16, 120);
  SimConfig c = deepseek_like(128, state.range(0) != 0);
  double makespan = 0;
  for (auto _ : state) {
    SimResult r = simulate(s, c);
    makespan = r.makespan;
    benchmark::DoNotOptimize(r.rank_stats.data());
  }
  const double ops = static_cast<double>(count_ops(s)) * 128;
  state.counters["ops"] = ops;
  state.counters["ns_per_op"] = benchmark::Counter(ops, benchmark::Counter::kIsIterationInvariantRate |
                                                            benchmark::Counter::kInvert);
  state.counters["makespan"] = makespan;
}
BENCHMARK(BM_Simulate2048RankStep)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// Linear in ops: DualPipe 16 ranks x 128 pipelines, micro-batches growing.
void BM_SimulateScaling(benchmark::State& state) {
  Schedule s = make_dualpipe_schedule(16, static_cast<int>(state.range(0)));
  SimConfig c = deepseek_like(128, false);
  for (auto _ : state) benchmark::DoNotOptimize(simulate(s, c).makespan);
  state.SetComplexityN(static_cast<int64_t>(count_ops(s)) * 128);
}
BENCHMARK(BM_SimulateScaling)->Arg(32)->Arg(64)->Arg(128)->Arg(256)->Arg(512)->Complexity(benchmark::oN)
    ->Unit(benchmark::kMillisecond);

void BM_MakeDualPipe(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(make_dualpipe_schedule(16, 120).ops.data());
}
BENCHMARK(BM_MakeDualPipe)->Unit(benchmark::kMicrosecond);

void BM_ValidateDualPipe(benchmark::State& state) {
  Schedule s = make_dualpipe_schedule(16, 120);
  for (auto _ : state) benchmark::DoNotOptimize(validate_schedule(s).ok());
}
BENCHMARK(BM_ValidateDualPipe)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
