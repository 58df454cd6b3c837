// report/goodput: the accounting of a supervised run with one interruption, built by hand from
// the events.jsonl and metrics.jsonl contract (docs/fault-tolerance.md). Every expected number
// is worked out in the comments from the made-up timeline, not taken from the code.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "report/goodput.h"
#include "report/goodput_read.h"
#include "report/goodput_report.h"
#include "report/jsonl.h"

namespace duet::report {
namespace {

namespace fs = std::filesystem;

// The run, in supervisor seconds (elapsed_s):
//   10.00  attempt 1 launched (unix time 1000)
//   13.00  run header of attempt 1 (unix time 1003): start-up 3 s
//          steps 1-6: 2, 2, 2, 2.5 (0.5 of it waiting for the checkpoint save), 2, 2 s -> 25.5
//   26.00  rank 3 killed, half a second into step 7 (that half second is lost, "other")
//   26.25  noticed (detection 0.25): rank-died
//   27.25  job gone (teardown 1), backoff 2 s
//   29.25  attempt 2 launched; launch 0.5, MPI init 0.75, set-up 1.25, load 0.5 -> 32.25
//   35.25  first step (step 5, 1.5 s) done after 3 s with a 1.5 s validation: recovered
//          steps 6-8 at 1.5 s -> 39.75
//   40.75  finished (1 s of shutdown, "other")
const char* kEvents = R"({"time": 1000, "elapsed_s": 10, "kind": "launched", "attempt": 1, "ranks": [], "cause": "attempt 1", "layout": "pp 2 x dp 2 x ep 1"}
{"time": 1014, "elapsed_s": 24.5, "kind": "checkpoint", "attempt": 1, "ranks": [], "cause": "step 4 committed", "step": 4}
{"time": 1016, "elapsed_s": 26.25, "kind": "rank-died", "attempt": 1, "ranks": [3], "cause": "rank 3: killed by signal 9", "step": 6}
{"time": 1017, "elapsed_s": 27.25, "kind": "restart-scheduled", "attempt": 1, "ranks": [], "cause": "attempt 2 in 2 s"}
{"time": 1019, "elapsed_s": 29.25, "kind": "launched", "attempt": 2, "ranks": [], "cause": "attempt 2", "layout": "pp 2 x dp 2 x ep 1"}
{"time": 1025, "elapsed_s": 35.25, "kind": "recovered", "attempt": 2, "ranks": [], "cause": "", "fault_step": 6, "checkpoint_step": 4, "recomputed_steps": 2, "detection_s": 0.25, "teardown_s": 1.0, "backoff_s": 2.0, "launch_s": 0.5, "mpi_init_s": 0.75, "setup_s": 1.25, "load_s": 0.5, "first_step_s": 3.0, "total_s": 9.25}
{"time": 1030, "elapsed_s": 40.75, "kind": "finished", "attempt": 2, "ranks": [], "cause": "all ranks done", "exit_code": 0}
)";

// An earlier, unsupervised job in the same directory (header at unix 900) comes first: it is
// not part of this run.
const char* kMetrics = R"({"event":"run","run_id":"r","run_name":"x","start_step":0,"pid":1,"host":"h","time":"1970-01-01T00:15:00Z"}
{"step":1,"loss":5.5,"step_time_s":7}
{"event":"run","run_id":"r","run_name":"x","start_step":0,"pid":2,"host":"h","time":"1970-01-01T00:16:43Z"}
{"step":1,"loss":5.5,"step_time_s":2}
{"step":2,"loss":5.4,"step_time_s":2}
{"step":3,"loss":5.3,"step_time_s":2}
{"step":4,"loss":5.2,"step_time_s":2.5,"checkpoint_wait_s":0.5}
{"step":5,"loss":5.1,"step_time_s":2}
{"step":6,"loss":5.0,"step_time_s":2}
{"event":"run","run_id":"r","run_name":"x","start_step":4,"pid":3,"host":"h","time":"1970-01-01T00:17:02Z"}
{"event":"resume","from_step":4,"attempt":2}
{"step":5,"loss":5.1,"step_time_s":1.5,"val_loss":5.2}
{"step":6,"loss":5.0,"step_time_s":1.5}
{"step":7,"loss":4.9,"step_time_s":1.5}
{"step":8,"loss":4.8,"step_time_s":1.5}
)";

fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("duet-goodput-" + name + "-" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

struct RunRecords {
  std::vector<SupervisorEvent> events;
  StepHistory metrics;
};

RunRecords write_and_read(const std::string& events, const std::string& metrics) {
  const fs::path d = scratch("run");
  std::ofstream(d / "events.jsonl") << events;
  std::ofstream(d / "metrics.jsonl") << metrics;
  return {read_supervisor_events((d / "events.jsonl").string()), read_step_history((d / "metrics.jsonl").string())};
}

TEST(Goodput, ReadsTheSupervisorRecords) {
  const RunRecords run = write_and_read(kEvents, kMetrics);
  ASSERT_EQ(run.events.size(), 7u);
  EXPECT_EQ(run.events[2].kind, "rank-died");
  EXPECT_EQ(run.events[2].ranks, std::vector<int>{3});
  EXPECT_EQ(run.events[2].step, 6);
  EXPECT_EQ(run.events[0].layout, "pp 2 x dp 2 x ep 1");
  EXPECT_EQ(run.events[6].exit_code, 0);
  const Recovery& r = run.events[5].recovery;
  EXPECT_EQ(r.checkpoint_step, 4);
  EXPECT_EQ(r.recomputed_steps, 2);
  EXPECT_DOUBLE_EQ(r.mpi_init_s, 0.75);
  EXPECT_DOUBLE_EQ(r.total_s, 9.25);
  ASSERT_EQ(run.metrics.jobs.size(), 3u);
  EXPECT_EQ(run.metrics.jobs[2].start_step, 4);
  EXPECT_DOUBLE_EQ(run.metrics.jobs[1].time, 1003);  // 00:16:43 = 1003 s
  ASSERT_EQ(run.metrics.steps.size(), 11u);          // the resume record is not a step
  EXPECT_DOUBLE_EQ(run.metrics.steps[4].checkpoint_wait_s, 0.5);
}

TEST(Goodput, OneInterruptionAccountedPartByPart) {
  const RunRecords run = write_and_read(kEvents, kMetrics);
  const Goodput g = account_goodput(run.events, run.metrics);
  EXPECT_TRUE(g.finished);
  EXPECT_EQ(g.attempts, 2);
  EXPECT_DOUBLE_EQ(g.wall_s, 30.75);  // 40.75 - 10
  // Counted: steps 1-4 of attempt 1 (2 + 2 + 2 + 2.5, less the 0.5 save wait) and 5-8 of
  // attempt 2 (4 x 1.5): 8 + 6; the earlier job's 7 s step is outside the run.
  EXPECT_DOUBLE_EQ(g.productive_s, 14.0);
  EXPECT_DOUBLE_EQ(g.checkpoint_s, 0.5);
  EXPECT_EQ(g.steps_counted, 8);
  // Steps 5 and 6 of attempt 1 ran again: 2 + 2.
  EXPECT_DOUBLE_EQ(g.recomputed_s, 4.0);
  EXPECT_EQ(g.steps_recomputed, 2);
  EXPECT_DOUBLE_EQ(g.startup_s, 3.0);  // 1003 - 1000
  // 9.25 s of recovery parts, less the 1.5 s of step 5 inside first_step_s (it is productive).
  EXPECT_DOUBLE_EQ(g.recovery_s, 7.75);
  // Left: the half step cut short by the fault and the second of shutdown.
  EXPECT_NEAR(g.other_s, 1.5, 1e-12);
  EXPECT_NEAR(g.ettr(), 14.0 / 30.75, 1e-12);

  ASSERT_EQ(g.interruptions.size(), 1u);
  const Interruption& in = g.interruptions[0];
  EXPECT_EQ(in.attempt, 2);
  EXPECT_EQ(in.fault_kind, "rank-died");
  EXPECT_TRUE(in.recomputed_measured);
  EXPECT_DOUBLE_EQ(in.recomputed_s, 4.0);
  EXPECT_DOUBLE_EQ(in.first_step_time_s, 1.5);
  EXPECT_DOUBLE_EQ(in.badput_s(), 9.25 - 1.5 + 4.0);

  ASSERT_EQ(g.spans.size(), 2u);
  EXPECT_DOUBLE_EQ(g.spans[0].training_from_s, 3.0);
  EXPECT_DOUBLE_EQ(g.spans[0].end_s, 16.0);  // the fault: noticed at 26.25, 0.25 after it; minus 10
  EXPECT_EQ(g.spans[0].end, "rank-died");
  EXPECT_DOUBLE_EQ(g.spans[0].recomputed_s, 4.0);
  EXPECT_DOUBLE_EQ(g.spans[1].launched_s, 19.25);
  EXPECT_DOUBLE_EQ(g.spans[1].training_from_s, 25.25);  // 19.25 + 0.5 + 0.75 + 1.25 + 0.5 + 3
  EXPECT_DOUBLE_EQ(g.spans[1].end_s, 30.75);
  EXPECT_EQ(g.spans[1].end, "finished");
}

TEST(Goodput, WithoutFinishTheWallEndsAtTheLastRecordAndSaysSo) {
  std::string events = kEvents;
  events.erase(events.find("{\"time\": 1030"));  // drop the finished line
  const RunRecords run = write_and_read(events, kMetrics);
  const Goodput g = account_goodput(run.events, run.metrics);
  EXPECT_FALSE(g.finished);
  EXPECT_DOUBLE_EQ(g.wall_s, 25.25);  // the recovered record at 35.25
  ASSERT_FALSE(g.notes.empty());
  EXPECT_NE(g.notes[0].find("finished"), std::string::npos);
}

TEST(Goodput, WithoutARecoveredRecordTheInterruptionStillCountsItsLostSteps) {
  std::string events = kEvents;
  const size_t at = events.find("{\"time\": 1025");
  events.erase(at, events.find('\n', at) + 1 - at);  // drop the recovered line
  const RunRecords run = write_and_read(events, kMetrics);
  const Goodput g = account_goodput(run.events, run.metrics);
  ASSERT_EQ(g.interruptions.size(), 1u);
  EXPECT_FALSE(g.interruptions[0].recovery_known);
  EXPECT_EQ(g.interruptions[0].fault_kind, "rank-died");
  EXPECT_DOUBLE_EQ(g.interruptions[0].recomputed_s, 4.0);  // still measured from metrics.jsonl
  EXPECT_DOUBLE_EQ(g.recovery_s, 0.0);
  EXPECT_NEAR(g.other_s, 1.5 + 7.75, 1e-12);  // the recovery, unknown, falls into other
  EXPECT_DOUBLE_EQ(g.productive_s, 14.0);
}

TEST(Goodput, AnUninterruptedRunHasNoBadputButStartUpAndSaves) {
  const std::vector<SupervisorEvent> events = {
      {.time = 500, .elapsed_s = 1, .kind = "launched", .attempt = 1},
      {.time = 520, .elapsed_s = 21, .kind = "finished", .attempt = 1, .exit_code = 0}};
  StepHistory m;
  m.jobs = {{0, 504}};
  for (int s = 1; s <= 5; ++s) m.steps.push_back({0, s, 3.0, s == 5 ? 1.0 : 0.0});
  const Goodput g = account_goodput(events, m);
  EXPECT_DOUBLE_EQ(g.productive_s, 14.0);  // 5 x 3, less the 1 s save wait
  EXPECT_DOUBLE_EQ(g.checkpoint_s, 1.0);
  EXPECT_DOUBLE_EQ(g.recomputed_s, 0.0);
  EXPECT_DOUBLE_EQ(g.startup_s, 4.0);
  EXPECT_DOUBLE_EQ(g.other_s, 20 - 14 - 1 - 4);
  EXPECT_TRUE(g.interruptions.empty());
  EXPECT_DOUBLE_EQ(g.ettr(), 0.7);
}

TEST(Goodput, NoLaunchIsAnError) {
  EXPECT_THROW(account_goodput({{.elapsed_s = 3, .kind = "finished", .attempt = 1}}, {}), std::invalid_argument);
}

TEST(Goodput, ABadEventsFileIsNamedWithItsLine) {
  const fs::path d = scratch("bad");
  std::ofstream(d / "events.jsonl") << "{\"kind\": \"launched\", \"attempt\": 1, \"elapsed_s\": 0}\n{\"kind\": \n";
  try {
    read_supervisor_events((d / "events.jsonl").string());
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("events.jsonl:2:"), std::string::npos) << e.what();
  }
  std::ofstream(d / "no-kind.jsonl") << "{\"attempt\": 1, \"elapsed_s\": 0}\n";
  EXPECT_THROW(read_supervisor_events((d / "no-kind.jsonl").string()), std::runtime_error);
  EXPECT_THROW(read_supervisor_events((d / "missing.jsonl").string()), std::runtime_error);
}

TEST(Goodput, MetricsCutOffByAKillKeepsItsCompleteLines) {
  const fs::path d = scratch("cut");
  std::ofstream(d / "metrics.jsonl") << "{\"step\":1,\"step_time_s\":2}\n{\"step\":2,\"step_ti";
  const StepHistory h = read_step_history((d / "metrics.jsonl").string());
  ASSERT_EQ(h.steps.size(), 1u);
  EXPECT_EQ(h.jobs.size(), 1u);  // no header: one job from step 0
}

TEST(Goodput, ReportHasTheTablesAndTheAttemptsTimeline) {
  const RunRecords run = write_and_read(kEvents, kMetrics);
  Report r;
  add_goodput(r, account_goodput(run.events, run.metrics));
  bool has_ettr = false;
  for (const auto& f : r.headline)
    if (f.key == "effective_training_time") {
      has_ettr = true;
      EXPECT_NEAR(f.number, 14.0 / 30.75, 1e-12);
    }
  EXPECT_TRUE(has_ettr);
  ASSERT_EQ(r.tables.size(), 2u);
  ASSERT_EQ(r.tables[1].rows.size(), 1u);
  EXPECT_EQ(r.tables[1].rows[0][1], "rank-died");
  EXPECT_EQ(r.tables[1].rows[0].back(), "13.25");  // 9.25 of recovery parts + 4 recomputed
  // Timeline: attempt 2's row holds detection..first step, attempt 1's its lost steps.
  int recomputed = 0, rows_of_2 = 0;
  for (const auto& e : r.goodput_timeline) {
    if (e.kind == "recomputed") {
      ++recomputed;
      EXPECT_EQ(e.rank, 0);
      EXPECT_DOUBLE_EQ(e.t0, 12.0);
    }
    if (e.rank == 1) ++rows_of_2;
  }
  EXPECT_EQ(recomputed, 1);
  EXPECT_EQ(rows_of_2, 9);  // 8 recovery parts + training
  const std::string html = render_html(r);
  EXPECT_NE(html.find("attempt 2"), std::string::npos);
  EXPECT_NE(html.find("Badput per interruption"), std::string::npos);
}

TEST(Goodput, JsonLineReaderRefusesWhatItDoesNotKnow) {
  EXPECT_THROW(parse_json_line("{\"a\": {\"b\": 1}}"), std::invalid_argument);
  EXPECT_THROW(parse_json_line("{\"a\": 1} x"), std::invalid_argument);
  const JsonObject o = parse_json_line(R"({"a": -1.5e1, "s": "x\"y", "t": true, "n": null, "v": [1, 2]})");
  EXPECT_EQ(json_number(o, "a"), -15.0);
  EXPECT_EQ(json_text(o, "s"), "x\"y");
  EXPECT_FALSE(json_number(o, "t").has_value());
  EXPECT_EQ(o.at("v").array.size(), 2u);
}

}  // namespace
}  // namespace duet::report
