// report/trace_reader: a trace file in the format io/trace.h writes (spelled out here by hand:
// report tests do not link io/) reads back event by event.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "report/trace_reader.h"

namespace duet::report {
namespace {

namespace fs = std::filesystem;
using core::TraceCategory;
using core::TraceOp;
using core::TraceOpRef;
using core::TraceThread;

// What TraceRecorder::write() produces for rank 1: metadata lines, then one event a line.
const char* kTraceText =
    R"({"displayTimeUnit":"ms","traceEvents":[
{"name":"process_name","ph":"M","pid":1,"args":{"name":"rank 1"}},
{"name":"thread_name","ph":"M","pid":1,"tid":0,"args":{"name":"compute"}},
{"name":"thread_name","ph":"M","pid":1,"tid":1,"args":{"name":"second executor"}},
{"name":"thread_name","ph":"M","pid":1,"tid":2,"args":{"name":"progress"}},
{"name":"thread_name","ph":"M","pid":1,"tid":3,"args":{"name":"deferred weight passes"}},
{"name":"F0:5","cat":"compute","ph":"X","pid":1,"tid":0,"ts":1000000.500,"dur":2500.250,"args":{"step":3,"op":"F","dir":0,"mb":5,"core_wait_us":412.0}},
{"name":"all-to-all dispatch","cat":"all2all","ph":"X","pid":1,"tid":1,"ts":1000500.000,"dur":250.000,"args":{"step":3}},
{"name":"send to rank 0","cat":"p2p","ph":"X","pid":1,"tid":2,"ts":1002000.000,"dur":125.000,"args":{"step":3}},
{"name":"W1:12","cat":"compute","ph":"X","pid":1,"tid":3,"ts":1003000.000,"dur":0.000,"args":{"step":4,"op":"W","dir":1,"mb":12}},
{"name":"wait gradient 1:2","cat":"idle","ph":"X","pid":1,"tid":0,"ts":1004000.000,"dur":10.000,"args":{"step":4,"core_wait_us":2.5}},
{"name":"gradient reduce-scatter","cat":"dp","ph":"X","pid":1,"tid":0,"ts":1005000.000,"dur":20.000,"args":{"step":4}},
{"name":"F0:6","cat":"compute","ph":"X","pid":1,"tid":4,"ts":1006000.000,"dur":900.000,"args":{"step":4,"op":"F","dir":0,"mb":6,"gpu_busy_us":812.5}}
]}
)";

fs::path write_temp(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() / (name + "-" + std::to_string(getpid()) + ".json");
  std::ofstream(p) << text;
  return p;
}

TEST(TraceReader, ReadsEveryCompleteEvent) {
  const fs::path p = write_temp("duet-trace-reader", kTraceText);
  const auto ev = read_trace(p.string());
  fs::remove(p);
  ASSERT_EQ(ev.size(), 7u);  // the metadata lines are not events

  EXPECT_EQ(ev[0].name, "F0:5");
  EXPECT_EQ(ev[0].cat, TraceCategory::Compute);
  EXPECT_EQ(ev[0].thread, TraceThread::Compute);
  EXPECT_EQ(ev[0].step, 3);
  EXPECT_EQ(ev[0].op, (TraceOpRef{TraceOp::F, 0, 5}));
  EXPECT_NEAR(ev[0].t0, 1.0000005, 1e-12);  // microseconds in the file, seconds here
  EXPECT_NEAR(ev[0].t1 - ev[0].t0, 0.00250025, 1e-12);
  EXPECT_NEAR(ev[0].core_wait, 412e-6, 1e-15);  // waited for a core: µs in the file

  EXPECT_EQ(ev[1].cat, TraceCategory::All2all);
  EXPECT_EQ(ev[1].thread, TraceThread::SecondExecutor);
  EXPECT_EQ(ev[1].op, TraceOpRef{});  // not an op: no op in its args
  EXPECT_EQ(ev[2].cat, TraceCategory::P2p);
  EXPECT_EQ(ev[2].thread, TraceThread::Progress);

  EXPECT_EQ(ev[3].thread, TraceThread::DeferredWeight);
  EXPECT_EQ(ev[3].op, (TraceOpRef{TraceOp::W, 1, 12}));  // two-digit micro-batch
  EXPECT_EQ(ev[3].step, 4);
  EXPECT_EQ(ev[3].t1, ev[3].t0);

  EXPECT_EQ(ev[4].cat, TraceCategory::Idle);
  EXPECT_EQ(ev[4].name, "wait gradient 1:2");
  EXPECT_NEAR(ev[4].core_wait, 2.5e-6, 1e-15);
  EXPECT_EQ(ev[3].core_wait, 0);  // absent: none recorded (older traces have none anywhere)
  EXPECT_EQ(ev[5].cat, TraceCategory::Dp);

  EXPECT_EQ(ev[6].thread, TraceThread::Device);  // an op's kernels on the GPU
  EXPECT_EQ(ev[6].op, (TraceOpRef{TraceOp::F, 0, 6}));
  EXPECT_NEAR(ev[6].device_busy, 812.5e-6, 1e-15);
  EXPECT_EQ(ev[0].device_busy, 0);  // absent on host threads' events
}

// A killed run's trace: no closing "]}", the last event cut in the middle. Read up to the last
// complete event, with a warning.
TEST(TraceReader, CutOffFileIsReadToItsLastCompleteEvent) {
  std::string text = kTraceText;
  text = text.substr(0, text.find("{\"name\":\"wait gradient")) + "{\"name\":\"wait gradient 1:2\",\"cat\":\"id";
  const fs::path p = write_temp("duet-trace-cut", text);
  const TraceFile t = read_trace_file(p.string());
  fs::remove(p);
  EXPECT_EQ(t.events.size(), 4u);
  EXPECT_NE(t.warning.find("ends without its closing"), std::string::npos) << t.warning;
  EXPECT_NE(t.warning.find(p.string()), std::string::npos) << t.warning;
  const fs::path whole = write_temp("duet-trace-whole", kTraceText);
  EXPECT_TRUE(read_trace_file(whole.string()).warning.empty());
  fs::remove(whole);
}

// Garbage, or a trace with no events, is refused by name: an all-zero report would lie.
TEST(TraceReader, RefusesFilesThatAreNotTraces) {
  struct Case {
    const char* text;
    const char* reason;
  };
  for (const Case& c : {Case{"garbage\n\x01\x02\n", "is not a duet trace"}, Case{"", "is empty"},
                        Case{"{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n]}\n", "holds no events"}}) {
    const fs::path p = write_temp("duet-trace-bad", c.text);
    try {
      read_trace(p.string());
      ADD_FAILURE() << "read " << c.text;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.reason), std::string::npos) << e.what();
    }
    fs::remove(p);
  }
}

TEST(TraceReader, MissingFileIsNamed) {
  try {
    read_trace("/no/such/dir/rank-00000.json");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/no/such/dir/rank-00000.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace duet::report
