// io/core_wait: the calling thread's run-queue time, and the trace field that carries it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

#include "io/core_wait.h"
#include "io/trace.h"

namespace duet::io {
namespace {

namespace fs = std::filesystem;

size_t open_descriptors() {
  return (size_t)std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator{});
}

TEST(CoreWait, ReadsThisThreadsRunQueueTimeWhereTheKernelHasIt) {
  if (!fs::exists("/proc/thread-self/schedstat")) GTEST_SKIP() << "this kernel has no per-thread schedstat";
  EXPECT_TRUE(core_wait_available());
  double last = thread_core_wait_s();
  EXPECT_GE(last, 0);
  for (int i = 0; i < 1000; ++i) {  // never goes back
    const double now = thread_core_wait_s();
    ASSERT_GE(now, last);
    last = now;
  }
}

TEST(CoreWait, EachThreadClosesItsFileWhenItEnds) {
  // The engine starts a helper thread every step; each reads its own file.
  (void)thread_core_wait_s();
  const size_t before = open_descriptors();
  for (int i = 0; i < 50; ++i) std::thread([] { (void)thread_core_wait_s(); }).join();
  EXPECT_EQ(open_descriptors(), before);
}

TEST(CoreWait, TraceCarriesItInMicroseconds) {
  const fs::path p = fs::temp_directory_path() / ("duet-core-wait-" + std::to_string(getpid()) + ".json");
  {
    TraceRecorder t(p.string(), 0);
    t.add("F0:0", TraceCategory::Compute, TraceThread::Compute, 1, 1.5, {core::TraceOp::F, 0, 0}, 412e-6);
    t.add("wait", TraceCategory::Idle, TraceThread::Compute, 1.5, 2);  // none: no field
    t.close();
  }
  std::ifstream in(p);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  fs::remove(p);
  EXPECT_NE(text.find(R"("args":{"step":0,"op":"F","dir":0,"mb":0,"core_wait_us":412.0}})"), std::string::npos)
      << text;
  EXPECT_NE(text.find(R"("name":"wait","cat":"idle","ph":"X","pid":0,"tid":0,"ts":1500000.000,"dur":500000.000,)"
                      R"("args":{"step":0}})"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace duet::io
