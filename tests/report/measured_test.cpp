// report/measured: metrics.jsonl reading, and the measured report of a one-rank run built by
// hand (1F1B, one micro-batch: F0:0 then B0:0 each step), without files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "report/measured.h"

namespace duet::report {
namespace {

namespace fs = std::filesystem;
using core::TraceCategory;
using core::TraceEvent;
using core::TraceOp;
using core::TraceThread;

double headline(const Report& r, const std::string& key) {
  for (const auto& f : r.headline)
    if (f.key == key) return f.number;
  ADD_FAILURE() << "no headline field " << key;
  return 0;
}

fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("duet-" + name + "-" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TEST(Measured, ReadMetricsSkipsLinesWithoutAStep) {
  const fs::path d = scratch("metrics");
  std::ofstream(d / "metrics.jsonl") << R"({"event":"start"}
{"step":1,"loss":5.5,"step_time_s":2.5,"tokens_per_s":800,"grad_sync_s":0.125}
{"step":2,"loss":5.25,"val_loss":5.5,"step_time_s":1.5e-1,"tokens_per_s":1e4,"grad_sync_s":0}
)";
  const auto rows = read_metrics((d / "metrics.jsonl").string());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].step, 1);
  EXPECT_EQ(rows[0].step_time, 2.5);
  EXPECT_EQ(rows[0].tokens_per_s, 800);
  EXPECT_EQ(rows[0].grad_sync, 0.125);
  EXPECT_FALSE(rows[0].eval);
  EXPECT_EQ(rows[1].step_time, 0.15);
  EXPECT_TRUE(rows[1].eval);
  std::ofstream(d / "empty.jsonl") << "\n";
  EXPECT_THROW(read_metrics((d / "empty.jsonl").string()), std::runtime_error);
  fs::remove_all(d);
}

// metrics.jsonl is append-only: after a resume from step 1, steps 2 and 3 appear again. Each
// step counts once, with its last line.
TEST(Measured, ReadMetricsKeepsEachStepsLastLine) {
  const fs::path d = scratch("metrics-resume");
  std::ofstream(d / "metrics.jsonl") << R"({"step":1,"step_time_s":1,"tokens_per_s":1,"grad_sync_s":0}
{"step":2,"step_time_s":2,"tokens_per_s":1,"grad_sync_s":0}
{"step":3,"step_time_s":3,"tokens_per_s":1,"grad_sync_s":0}
{"event":"resume","from_step":1,"attempt":2}
{"step":2,"step_time_s":20,"tokens_per_s":1,"grad_sync_s":0}
{"step":3,"step_time_s":30,"tokens_per_s":1,"grad_sync_s":0}
)";
  const auto rows = read_metrics((d / "metrics.jsonl").string());
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].step_time, 1);
  EXPECT_EQ(rows[1].step_time, 20);
  EXPECT_EQ(rows[2].step_time, 30);
  fs::remove_all(d);
}

TEST(Measured, MissingTraceIsNamed) {
  const fs::path d = scratch("measured-missing");
  std::ofstream(d / "metrics.jsonl") << R"({"step":1,"step_time_s":1,"tokens_per_s":1,"grad_sync_s":0})" << "\n";
  RunShape shape;
  shape.pp = 2, shape.dp = 1;
  shape.schedule = core::ScheduleKind::OneFOneB, shape.microbatches_per_pipeline = 2;
  try {
    measured_report(d.string(), shape);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("rank-00000.json"), std::string::npos) << e.what();
  }
  fs::remove_all(d);
}

// Step s starts at 10·s: F0:0 computes 0.25 s, waits 0.25 s for nothing in particular, B0:0
// computes 0.5 s.
std::vector<TraceEvent> one_rank_trace(int first_step, int last_step) {
  std::vector<TraceEvent> ev;
  for (int s = first_step; s <= last_step; ++s) {
    const double t = 10.0 * s;
    ev.push_back({"F0:0", TraceCategory::Compute, TraceThread::Compute, t, t + 0.25, s, {TraceOp::F, 0, 0}});
    ev.push_back({"wait", TraceCategory::Idle, TraceThread::Compute, t + 0.25, t + 0.5, s, {}});
    ev.push_back({"B0:0", TraceCategory::Compute, TraceThread::Compute, t + 0.5, t + 1, s, {TraceOp::B, 0, 0}});
  }
  return ev;
}

// One rank, 1F1B, one micro-batch of 64 tokens: the run one_rank_trace() traces.
RunShape one_rank_shape() {
  RunShape shape;
  shape.pp = 1, shape.dp = 1, shape.ep = 1;
  shape.schedule = core::ScheduleKind::OneFOneB, shape.microbatches_per_pipeline = 1;
  shape.global_batch = 1, shape.micro_batch_size = 1, shape.seq_len = 64, shape.d_model = 8;
  return shape;
}

// On a GPU each op also has an event on the GPU thread: device time, which the host accounting
// leaves out (the same figures as without it); the report says how long the kernels ran.
TEST(Measured, GpuEventsAreANoteNotHostTime) {
  const RunShape shape = one_rank_shape();
  const std::vector<StepMetrics> metrics = {{1, 9, 10, 0, false}, {2, 8, 10, 0, false}, {3, 1, 64, 0, false},
                                            {4, 1, 64, 0, false}};
  auto trace = one_rank_trace(1, 4);
  const Report host = measured_report("host", shape, metrics, {trace});
  for (int s = 1; s <= 4; ++s) {
    const double t = 10.0 * s;  // the GPU runs F's kernels for 0.2 s and B's for 0.4 s
    trace.push_back({"F0:0", TraceCategory::Compute, TraceThread::Device, t + 0.01, t + 0.24, s, {TraceOp::F, 0, 0},
                     0, 0.2});
    trace.push_back({"B0:0", TraceCategory::Compute, TraceThread::Device, t + 0.5, t + 0.95, s, {TraceOp::B, 0, 0},
                     0, 0.4});
    // NCCL's row: the GPU moving data, not running kernels — neither host time nor kernel time.
    trace.push_back({"ncclSend to 1", TraceCategory::P2p, TraceThread::NcclStreams, t + 0.3, t + 0.8, s, {}, 0, 0.5});
  }
  const Report gpu = measured_report("gpu", shape, metrics, {trace});
  for (const char* key : {"step_time_s", "bubble_s", "exposed_comm_s", "core_wait_s", "predicted_step_time_s"})
    EXPECT_EQ(headline(gpu, key), headline(host, key)) << key;
  EXPECT_EQ(gpu.busy_per_rank, host.busy_per_rank);
  EXPECT_EQ(gpu.timeline.size(), host.timeline.size());
  std::string notes;
  for (const auto& n : gpu.notes) notes += n + "\n";
  EXPECT_NE(notes.find("GPU: the busiest rank's kernels ran 600.0 ms of step"), std::string::npos) << notes;
  for (const auto& n : host.notes) EXPECT_EQ(n.find("GPU:"), std::string::npos) << n;
}

TEST(Measured, OneRankRunByHand) {
  const RunShape shape = one_rank_shape();
  // Steps 1 and 2 warm up; step 4 evaluates; steady: 3, 5, 6 with median 1.25 s (step 6).
  const std::vector<StepMetrics> metrics = {
      {1, 9, 10, 0, false}, {2, 8, 10, 0, false}, {3, 1, 64, 0, false},
      {4, 7, 10, 0, true},  {5, 1.5, 40, 0, false}, {6, 1.25, 50, 0, false}};
  const Report r = measured_report("byhand", shape, metrics, {one_rank_trace(1, 6)});

  EXPECT_EQ(r.title, "duet run report: byhand");
  EXPECT_EQ(r.source, "measured");
  EXPECT_NE(r.subtitle.find("step 6 shown"), std::string::npos) << r.subtitle;
  EXPECT_EQ(headline(r, "step_time_s"), 1.25);
  EXPECT_EQ(headline(r, "steps_measured"), 3);
  EXPECT_EQ(headline(r, "tokens_per_s"), 50);
  EXPECT_EQ(headline(r, "tokens_per_step"), 64);
  EXPECT_EQ(headline(r, "bubble_s"), 0);
  EXPECT_EQ(headline(r, "exposed_comm_s"), 0.25);
  EXPECT_EQ(headline(r, "exposed_comm_fraction"), 0.25);
  EXPECT_EQ(r.busy_per_rank, std::vector<double>{0.75});
  EXPECT_EQ(r.exposed_comm_per_rank, std::vector<double>{0.25});
  // The simulator replays F then B with the measured costs: 0.25 + 0.5 s.
  EXPECT_NEAR(headline(r, "predicted_step_time_s"), 0.75, 1e-12);
  ASSERT_EQ(r.tables.size(), 1u);
  ASSERT_EQ(r.tables[0].rows.size(), 1u);
  EXPECT_EQ(r.tables[0].rows[0][1], "250.000");  // F, ms
  EXPECT_EQ(r.tables[0].rows[0][2], "500.000");  // B, ms
  ASSERT_EQ(r.timeline.size(), 3u);  // step 6 only, from its first event
  EXPECT_EQ(r.timeline[0].kind, "F");
  EXPECT_EQ(r.timeline[0].t0, 0);
  EXPECT_EQ(r.timeline[1].kind, "idle");
  EXPECT_EQ(r.timeline[2].kind, "B");
  EXPECT_EQ(r.timeline[2].t1, 1);
}

// A run resumed at step 4: metrics.jsonl goes back to step 1, the newest attempt's traces only
// to step 5. The step closest to the median (step 3, an earlier start's) has no trace here:
// the step shown is the closest one traced, not an empty window.
TEST(Measured, AResumedRunShowsAStepItsTracesHold) {
  const RunShape shape = one_rank_shape();
  const std::vector<StepMetrics> metrics = {{1, 9, 10, 0, false},  {2, 8, 10, 0, false},  {3, 1, 64, 0, false},
                                            {4, 1, 64, 0, false},  {5, 1.5, 40, 0, false}, {6, 2, 30, 0, false},
                                            {7, 0.25, 90, 0, false}};
  const Report r = measured_report("resumed", shape, metrics, {one_rank_trace(5, 7)});
  EXPECT_EQ(headline(r, "step_time_s"), 1);  // the median of the whole run's steady steps 3..7
  EXPECT_NE(r.subtitle.find("step 5 shown"), std::string::npos) << r.subtitle;
  EXPECT_EQ(r.busy_per_rank, std::vector<double>{0.75});
  EXPECT_EQ(headline(r, "exposed_comm_s"), 0.25);
  EXPECT_EQ(r.timeline.size(), 3u);
}

// Two data-parallel replicas of the one-rank run, each B0:0 half on a run queue (0.25 s) and
// each wait half (0.125 s): ranks that took turns on a core.
TEST(Measured, CoreWaitIsItsOwnPartAndSharedCoresQueueTheCompute) {
  RunShape shape;
  shape.pp = 1, shape.dp = 2, shape.ep = 1;
  shape.schedule = core::ScheduleKind::OneFOneB, shape.microbatches_per_pipeline = 1;
  shape.global_batch = 2, shape.micro_batch_size = 1, shape.seq_len = 64, shape.d_model = 8;
  const std::vector<StepMetrics> metrics = {{1, 9, 10, 0, false}, {2, 8, 10, 0, false}, {3, 1.25, 64, 0, false}};
  std::vector<TraceEvent> trace = one_rank_trace(1, 3);
  for (auto& e : trace) e.core_wait = e.cat == TraceCategory::Idle ? 0.125 : e.op.op == TraceOp::B ? 0.25 : 0;
  auto report_on = [&](int cores) {
    shape.cores = cores;
    return measured_report("shared", shape, metrics, {trace, trace});
  };

  const Report alone = report_on(0);  // a core per rank
  EXPECT_EQ(alone.busy_per_rank, (std::vector<double>{0.5, 0.5}));  // F 0.25 + B 0.5 - 0.25
  EXPECT_EQ(alone.core_wait_per_rank, (std::vector<double>{0.375, 0.375}));
  EXPECT_EQ(alone.exposed_comm_per_rank, (std::vector<double>{0.125, 0.125}));
  EXPECT_EQ(headline(alone, "core_wait_s"), 0.375);
  EXPECT_EQ(headline(alone, "core_wait_fraction"), 0.375);  // of the 1 s window
  ASSERT_GE(alone.breakdown.size(), 3u);
  EXPECT_EQ(alone.breakdown[1].name, "waiting for a core");
  EXPECT_EQ(alone.breakdown[1].seconds, 0.375);
  // The replay prices F at 0.25 s and B at 0.5 - 0.25 s: one rank alone would take 0.5 s.
  EXPECT_NEAR(headline(alone, "predicted_step_time_s"), 0.5, 1e-12);
  EXPECT_NEAR(headline(alone, "predicted_one_core_per_rank_s"), 0.5, 1e-12);

  // On one core the two ranks' 0.5 s each take turns: 1 s.
  const Report shared = report_on(1);
  EXPECT_NEAR(headline(shared, "predicted_step_time_s"), 1.0, 1e-12);
  EXPECT_NEAR(headline(shared, "predicted_one_core_per_rank_s"), 0.5, 1e-12);
  EXPECT_NEAR(headline(shared, "predicted_over_measured"), 1.0 / 1.25, 1e-12);
  // On two cores, one each: no queue; the ranks' waiting for a core came from other processes.
  const Report own_cores = report_on(2);
  EXPECT_NEAR(headline(own_cores, "predicted_step_time_s"), 0.5, 1e-12);
  auto has_note = [](const Report& r, const std::string& text) {
    for (const auto& n : r.notes)
      if (n.find(text) != std::string::npos) return true;
    return false;
  };
  EXPECT_TRUE(has_note(own_cores, "other processes were using this machine's cores"));
  EXPECT_FALSE(has_note(shared, "other processes were using this machine's cores"));
  EXPECT_TRUE(has_note(shared, "2 ranks on 1 cores"));

  // Metrics that say what CPU the ranks used (0.75 s each, steady step 3) queue that instead:
  // their waits and messages cost CPU too.
  std::vector<StepMetrics> with_cpu = metrics;
  for (auto& m : with_cpu) m.cpu_s = 0.75;
  shape.cores = 1;
  const Report used = measured_report("shared", shape, with_cpu, {trace, trace});
  EXPECT_NEAR(headline(used, "predicted_step_time_s"), 1.5, 1e-12);
}

// A rank's grad_sync_s is its whole tail after the pipeline — every direction's reduction and
// the optimizer. DualPipe's ranks hold two stages each (two directions): the replay must count
// that tail once per rank, not once per direction. With no op in the traces the replayed step
// is the tail alone.
TEST(Measured, TheReplayCountsARanksSyncTailOnceWhateverItsDirections) {
  for (const auto kind : {core::ScheduleKind::OneFOneB, core::ScheduleKind::DualPipe}) {
    RunShape shape;
    shape.pp = 2, shape.dp = 1, shape.ep = 1;
    shape.schedule = kind, shape.microbatches_per_pipeline = 4;
    shape.global_batch = 4, shape.micro_batch_size = 1, shape.seq_len = 64, shape.d_model = 8;
    const std::vector<StepMetrics> metrics = {{1, 9, 10, 0.1, false}, {2, 8, 10, 0.1, false}, {3, 1, 64, 0.1, false},
                                              {4, 1, 64, 0.1, false}};
    const Report r = measured_report("tail", shape, metrics, {{}, {}});
    EXPECT_NEAR(headline(r, "predicted_step_time_s"), 0.1, 1e-12) << core::format_schedule_kind(kind);
  }
}

}  // namespace
}  // namespace duet::report
