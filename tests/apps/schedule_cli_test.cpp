// End-to-end: `duet schedule` driven as a user would, through the built binary.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace {

struct CliResult {
  int code;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Per process: CTest may run these tests in parallel, each in its own process.
std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "duet_schedule_cli_" + std::to_string(getpid()) + "_" + name;
}

// Runs `duet schedule <args>` and captures exit code, stdout and stderr.
CliResult duet_schedule(const std::string& args) {
  const std::string err_path = temp_path("stderr.txt");
  const std::string cmd = std::string("'") + DUET_BINARY + "' schedule " + args + " 2>'" + err_path + "'";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return {-1, "", "popen failed"};
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, slurp(err_path)};
}

void write(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

TEST(ScheduleCli, PrintsOneLinePerRank) {
  CliResult r = duet_schedule("--kind dualpipe --ranks 8 --microbatches 20");
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream in(r.out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "# duet schedule kind=dualpipe ranks=8 microbatches=20");
  for (int rank = 0; rank < 8; ++rank) {
    ASSERT_TRUE(std::getline(in, line));
    EXPECT_EQ(line.rfind(std::to_string(rank) + ": F", 0), 0u) << line;
  }
  EXPECT_FALSE(std::getline(in, line));
}

TEST(ScheduleCli, RankZeroExampleOfTheRefs) {
  CliResult r = duet_schedule("--kind dualpipe --ranks 4 --microbatches 8");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\n0: F0:0 F0:1 F0:2 F1:0 I1:0 W1:0 F1:1 F0:3&B1:1 "), std::string::npos) << r.out;
}

TEST(ScheduleCli, Json) {
  CliResult r = duet_schedule("--kind zb1p --ranks 2 --microbatches 2 --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("{\"kind\": \"zb1p\", \"ranks\": 2, \"microbatches\": 2", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("{\"kind\": \"W\", \"dir\": 0, \"mb\": 1}"), std::string::npos);
}

TEST(ScheduleCli, SimulatePrintsMakespanAndBubbles) {
  // DualPipe, 8 ranks: bubble (8/2-1)(F&B+B-3W) = 3 x 2 = 6 on every rank.
  CliResult r = duet_schedule("--kind dualpipe --ranks 8 --microbatches 20 --simulate 1,2,1,3 --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"makespan\": 66"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"bubble_per_rank\": [6, 6, 6, 6, 6, 6, 6, 6]"), std::string::npos) << r.out;
  CliResult t = duet_schedule("--kind 1f1b --ranks 4 --microbatches 8 --simulate 1,2,1,3");
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("makespan 33\n"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("\n0              24          9"), std::string::npos) << t.out;
}

TEST(ScheduleCli, LatencyShowsAsExposedCommunication) {
  CliResult r = duet_schedule("--kind 1f1b --ranks 2 --microbatches 1 --simulate 1,2,1,3 --p2p-latency 0.5 --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"makespan\": 7"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"exposed_comm_per_rank\": [0.5, 0.5]"), std::string::npos) << r.out;
}

TEST(ScheduleCli, SvgIsWritten) {
  const std::string path = temp_path("v.svg");
  std::remove(path.c_str());
  CliResult r = duet_schedule("--kind dualpipev --ranks 4 --microbatches 10 --svg '" + path + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  std::string svg = slurp(path);
  EXPECT_EQ(svg.rfind("<svg ", 0), 0u);
  EXPECT_NE(svg.find("class=\"pair\""), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(r.err.find("wrote " + path), std::string::npos);
}

TEST(ScheduleCli, ValidatesAPrintedSchedule) {
  CliResult printed = duet_schedule("--kind dualpipe --ranks 4 --microbatches 10");
  ASSERT_EQ(printed.code, 0);
  const std::string path = temp_path("good.txt");
  write(path, printed.out);
  CliResult r = duet_schedule("--validate '" + path + "'");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("valid dualpipe schedule, 4 ranks, 10 micro-batches"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("peak activations per rank: 5 5 5 5"), std::string::npos) << r.out;
}

TEST(ScheduleCli, RejectsAHandWrittenScheduleNamingRankOpAndRule) {
  const std::string path = temp_path("bad.txt");
  write(path, "# a 1F1B schedule with rank 1's first two ops swapped\n0: F0:0 F0:1 B0:0 B0:1\n1: B0:0 F0:0 F0:1 B0:1\n");
  CliResult r = duet_schedule("--validate '" + path + "' --kind 1f1b");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("rank 1, op 0 (B0:0): backward of micro-batch 0 dir 0 runs before its forward F0:0 "
                       "[backward-after-forward]"),
            std::string::npos)
      << r.err;
  CliResult j = duet_schedule("--validate '" + path + "' --kind 1f1b --format json");
  EXPECT_EQ(j.code, 1);
  EXPECT_NE(j.out.find("\"valid\": false"), std::string::npos) << j.out;
  EXPECT_NE(j.out.find("\"rule\": \"backward-after-forward\""), std::string::npos) << j.out;
}

TEST(ScheduleCli, UsageErrorsExitTwoWithAMessage) {
  struct Case {
    const char* args;
    const char* message;
  };
  for (const Case& c : {Case{"--kind dualpipe --ranks 5 --microbatches 20", "ranks must be even"},
                        Case{"--kind dualpipe --ranks 4 --microbatches 6", "micro-batches must be >= 2 x ranks = 8"},
                        Case{"--kind gpipe --ranks 4 --microbatches 8", "unknown schedule kind 'gpipe'"},
                        Case{"--ranks 4 --microbatches 8", "--kind is required"},
                        Case{"--kind 1f1b --ranks 4 --microbatches 8 --simulate 1,2", "four durations"},
                        Case{"--kind 1f1b --ranks 4 --microbatches 8 --format yaml", "--format must be text or json"},
                        Case{"--validate /nonexistent/schedule.txt", "cannot read schedule file"},
                        Case{"--kind 1f1b --ranks 4 --microbatches 8 --bogus", "bogus"}}) {
    CliResult r = duet_schedule(c.args);
    EXPECT_EQ(r.code, 2) << c.args;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << ": " << r.err;
  }
}

TEST(ScheduleCli, Help) {
  CliResult r = duet_schedule("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* opt : {"--kind", "--ranks", "--microbatches", "--format", "--simulate", "--svg", "--validate"})
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt;
}

}  // namespace
