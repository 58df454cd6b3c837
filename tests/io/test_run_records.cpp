// io/read_limited, io/run_records and the streaming io/trace: files read with a limit, byte
// counts, the append-only metrics format across restarts, traces on disk while a run goes.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

#include "io/config.h"
#include "io/read_limited.h"
#include "io/run_records.h"
#include "io/trace.h"

namespace duet::io {
namespace {
namespace fs = std::filesystem;

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("duet-io-" + name + "-" + std::to_string(getpid()));
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(ReadLimited, RefusesAnEndlessFileByName) {
  try {
    read_file_limited("/dev/zero", 1 << 20, "config file");
    FAIL() << "read /dev/zero to the end";
  } catch (const FileTooLargeError& e) {
    EXPECT_NE(std::string(e.what()).find("config file '/dev/zero' is larger than 1.00 MiB"), std::string::npos) << e.what();
  }
}

TEST(ReadLimited, ReadsUpToTheLimitAndNamesMissingFiles) {
  const fs::path p = temp_path("limited");
  std::ofstream(p) << "0123456789";
  EXPECT_EQ(read_file_limited(p.string(), 10, "file"), "0123456789");
  EXPECT_THROW(read_file_limited(p.string(), 9, "file"), FileTooLargeError);
  fs::remove(p);
  EXPECT_THROW(read_file_limited(p.string(), 9, "file"), std::runtime_error);
  EXPECT_THROW(read_file_limited("/tmp", 9, "file"), std::runtime_error);
}

TEST(ReadLimited, LoadConfigOfAnEndlessFileIsAConfigError) {
  EXPECT_THROW(load_config("/dev/zero"), ConfigError);
}

TEST(ReadLimited, ByteCounts) {
  std::uint64_t x = 0;
  EXPECT_TRUE(parse_bytes("8GiB", x));
  EXPECT_EQ(x, 8ull << 30);
  EXPECT_TRUE(parse_bytes("512 MiB", x));
  EXPECT_EQ(x, 512ull << 20);
  EXPECT_TRUE(parse_bytes("2.5G", x));
  EXPECT_EQ(x, 5ull << 29);
  EXPECT_TRUE(parse_bytes("100k", x));
  EXPECT_EQ(x, 102400u);
  EXPECT_TRUE(parse_bytes("123", x));
  EXPECT_EQ(x, 123u);
  for (const char* bad : {"", "GiB", "8 XB", "-1", "1e3", "8GiBs", "99999999999999999999999"})
    EXPECT_FALSE(parse_bytes(bad, x)) << bad;
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(3ull << 30), "3.00 GiB");
}

TEST(ReadLimited, MemoryLimitKeyTakesUnits) {
  EXPECT_EQ(parse_config(default_config_text()).runtime.memory_limit, 0u);
  const RunConfig c = parse_config(default_config_text(), {"runtime.memory_limit=8GiB"}, "tiny.yaml");
  EXPECT_EQ(c.runtime.memory_limit, 8ull << 30);
  // Written back as a plain integer, which reads back the same.
  EXPECT_EQ(parse_config(to_yaml(c), {}, "resolved").runtime.memory_limit, 8ull << 30);
  EXPECT_THROW(parse_config(default_config_text(), {"runtime.memory_limit=lots"}, "tiny.yaml"), ConfigError);
}

TEST(RunRecords, AttemptsCountFromMetrics) {
  const fs::path p = temp_path("attempts");
  fs::remove(p);
  EXPECT_EQ(next_attempt(p.string()), 1);  // no file
  std::ofstream(p) << "";
  EXPECT_EQ(next_attempt(p.string()), 1);  // nothing ran
  std::ofstream(p) << "{\"step\":1,\"loss\":5}\n";
  EXPECT_EQ(next_attempt(p.string()), 2);
  std::ofstream(p, std::ios::app) << resume_record(1, 2).str() << "\n{\"step\":2,\"loss\":4}\n";
  EXPECT_EQ(next_attempt(p.string()), 3);
  fs::remove(p);
  EXPECT_EQ(resume_record(4, 2).str(), "{\"event\":\"resume\",\"from_step\":4,\"attempt\":2}");
  EXPECT_EQ(trace_file_name(3, 1), "rank-00003.json");
  EXPECT_EQ(trace_file_name(3, 2), "rank-00003.attempt-2.json");
}

TEST(RunRecords, EachStepsLastLineCounts) {
  const auto lines = read_step_lines(
      "{\"step\":1,\"loss\":5}\n{\"step\":2,\"loss\":4}\n{\"step\":3,\"loss\":3}\n"
      "{\"event\":\"resume\",\"from_step\":1,\"attempt\":2}\n{\"step\":2,\"loss\":4.5}\n{\"step\":3,\"loss\":3.5}\n");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines.at(1), "{\"step\":1,\"loss\":5}");
  EXPECT_EQ(lines.at(2), "{\"step\":2,\"loss\":4.5}");
  EXPECT_EQ(lines.at(3), "{\"step\":3,\"loss\":3.5}");
}

// Events reach the file in chunks while recording goes on, so memory stays bounded and a
// killed process leaves what it recorded; close() ends the JSON.
TEST(TraceStreaming, ChunksReachTheFileBeforeClose) {
  const fs::path p = temp_path("trace");
  {
    TraceRecorder t(p.string(), 2, /*chunk_events=*/3);
    EXPECT_NE(slurp(p).find("\"traceEvents\":["), std::string::npos);  // the header, at once
    const double t0 = TraceRecorder::now();  // within a second: only full chunks go out
    for (int i = 0; i < 7; ++i)
      t.add("F0:" + std::to_string(i), TraceCategory::Compute, TraceThread::Compute, t0 + 0.001 * i, t0 + 0.001 * i + 0.0005);
    EXPECT_EQ(t.events_written(), 6u);  // two full chunks; the seventh waits in memory
    const std::string partial = slurp(p);
    EXPECT_NE(partial.find("\"name\":\"F0:5\""), std::string::npos);
    EXPECT_EQ(partial.find("\"name\":\"F0:6\""), std::string::npos);
    EXPECT_EQ(partial.find("]}"), std::string::npos);
    // An event more than a second after the last write sends the buffer out, full or not.
    t.add("late", TraceCategory::Idle, TraceThread::Compute, TraceRecorder::now(), TraceRecorder::now() + 2);
    EXPECT_EQ(t.events_written(), 8u);
    t.close();
  }
  const std::string text = slurp(p);
  EXPECT_TRUE(std::regex_search(text, std::regex(R"(\{"name":"F0:6","cat":"compute","ph":"X","pid":2,"tid":0,"ts":[0-9.]+,)"
                                                 R"("dur":500\.000,"args":\{"step":0\}\})")))
      << text;
  EXPECT_EQ(text.substr(text.size() - 4), "\n]}\n");
  fs::remove(p);
  EXPECT_THROW(TraceRecorder("/proc/no/such/trace.json", 0), std::runtime_error);
}

}  // namespace
}  // namespace duet::io
