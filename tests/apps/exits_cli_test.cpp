// Issue 11, "a run is protected": sizes are checked before anything large is allocated, and
// exit codes and records say what happened. Each memory-hungry case runs under an
// address-space limit (prlimit --as) and a timeout, so a regression fails the test instead of
// eating the machine. Exit codes: core/exit_code.h (docs/runtime.md, "Exit codes").
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <regex>
#include <thread>

#include "tests/apps/cli_util.h"

using namespace duet::test;
namespace fs = std::filesystem;

namespace {

constexpr int kDone = 0, kUsage = 2, kCheckpointNotSaved = 3;

// `duet ARGS` with at most 2 GiB of address space and 60 s.
CommandResult run_duet_limited(const std::string& args, const std::string& as = "2G") {
  return run_command("timeout 60 prlimit --as=" + std::to_string(as == "2G" ? 2ll << 30 : std::stoll(as)) + " " +
                     DUET_BINARY + " " + args);
}

bool has(const CommandResult& r, const std::string& text) { return r.output.find(text) != std::string::npos; }

}  // namespace

// ---- 3. sizes checked up front --------------------------------------------------------------

TEST(ExitsCli, ConfigFromDevZeroIsRefusedBySize) {
  const auto r = run_duet_limited("train --config /dev/zero");
  EXPECT_EQ(r.exit_code, kUsage) << r.output;
  EXPECT_TRUE(has(r, "config file '/dev/zero' is larger than")) << r.output;
}

TEST(ExitsCli, ModelsThatCannotFitAreRefusedNamingTheKeys) {
  const auto dir = scratch_dir("exits-fit");
  struct Case {
    const char* args;
    const char* key;  // a key the message must name
  };
  for (const Case& c : {Case{"--model.layers 1000000", "model.layers"},
                        Case{"--model.moe.experts 100000", "model.moe.experts"},
                        Case{"--model.vocab 100000000", "model.vocab"},
                        Case{"--train.micro_batch_size 4096 --train.global_batch 4096 --train.seq_len 1024", "train.micro_batch_size"},
                        Case{"--model.d_model 65536 --model.heads 64", "model.d_model"}}) {
    const auto r = run_duet_limited(std::string("train ") + c.args + " --run.dir " + dir.string());
    EXPECT_EQ(r.exit_code, kUsage) << c.args << "\n" << r.output;
    EXPECT_TRUE(has(r, "does not fit in memory")) << c.args << "\n" << r.output;
    EXPECT_TRUE(has(r, c.key)) << c.args << "\n" << r.output;
    EXPECT_FALSE(has(r, "bad_alloc")) << c.args << "\n" << r.output;
  }
  fs::remove_all(dir);
}

TEST(ExitsCli, MemoryLimitKeyAndDryRun) {
  auto r = run_duet("train --dry-run");
  EXPECT_EQ(r.exit_code, kDone) << r.output;
  EXPECT_TRUE(has(r, "memory: ~")) << r.output;
  EXPECT_TRUE(has(r, "activations")) << r.output;
  r = run_duet("train --dry-run --runtime.memory_limit 1MiB");
  EXPECT_EQ(r.exit_code, kUsage) << r.output;
  EXPECT_TRUE(has(r, "is allowed (runtime.memory_limit)")) << r.output;
  r = run_duet("train --dry-run --runtime.memory_limit 8GiB");
  EXPECT_EQ(r.exit_code, kDone) << r.output;
  EXPECT_TRUE(has(r, "8.00 GiB allowed")) << r.output;
}

TEST(ExitsCli, HugeSchedulesAreRefused) {
  auto r = run_duet_limited("schedule --kind dualpipe --ranks 100000 --microbatches 100000");
  EXPECT_EQ(r.exit_code, kUsage) << r.output.substr(0, 2000);
  EXPECT_TRUE(has(r, "--ranks and --microbatches")) << r.output.substr(0, 2000);
  r = run_duet_limited("schedule --validate /dev/zero");
  EXPECT_EQ(r.exit_code, kUsage) << r.output.substr(0, 2000);
  EXPECT_TRUE(has(r, "schedule file '/dev/zero' is larger than")) << r.output.substr(0, 2000);
  // A small file whose header promises a huge schedule.
  const auto dir = scratch_dir("exits-sched");
  std::ofstream(dir / "big.txt") << "# duet schedule kind=1f1b ranks=1 microbatches=100000000\n0: F0:0\n";
  r = run_duet_limited("schedule --validate " + (dir / "big.txt").string());
  EXPECT_EQ(r.exit_code, kUsage) << r.output.substr(0, 2000);
  EXPECT_TRUE(has(r, "more than the")) << r.output.substr(0, 2000);
  fs::remove_all(dir);
}

TEST(ExitsCli, HugeSimulationIsRefused) {
  const auto dir = scratch_dir("exits-sim");
  const auto r = run_duet_limited("simulate --parallel.pp 64 --parallel.dp 32 --cluster.gpus 2048 "
                                  "--train.global_batch 32000000 --train.micro_batch_size 1 --out " + dir.string());
  EXPECT_EQ(r.exit_code, kUsage) << r.output.substr(0, 2000);
  EXPECT_TRUE(has(r, "duet simulates")) << r.output.substr(0, 2000);
  fs::remove_all(dir);
}

// ---- 4. exit codes and records that tell the truth ------------------------------------------

TEST(ExitsCli, UnsavedStopCheckpointIsANonZeroExit) {
  const auto dir = scratch_dir("exits-ckpt");
  const auto r = run_duet("train --train.steps 4 --train.eval_batches 1 --train.stop_at 1 --checkpoint.dir /proc/ck "
                          "--run.dir " + dir.string() + " --run.name a");
  EXPECT_EQ(r.exit_code, kCheckpointNotSaved) << r.output;
  EXPECT_TRUE(has(r, "the checkpoint of step 1 was not saved")) << r.output;
  EXPECT_FALSE(has(r, "run again to resume")) << r.output;
  // Every rank says so, and `duet launch` passes the code through mpirun.
  const auto l = run_command("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 " +
                             std::string(DUET_BINARY) + " launch --parallel.pp 2 --train.steps 3 --train.eval_batches 1 "
                             "--train.stop_at 1 --checkpoint.dir /proc/ck --run.dir " + dir.string() + " --run.name b");
  EXPECT_EQ(l.exit_code, kCheckpointNotSaved) << l.output;
  EXPECT_TRUE(has(l, "exit status 3: checkpoint not saved")) << l.output;
  fs::remove_all(dir);
}

// A killed run keeps the trace it recorded (streamed in chunks), and `duet report` reads it up
// to its last complete event, with a warning.
TEST(ExitsCli, KilledRunKeepsItsTrace) {
  const auto dir = scratch_dir("exits-kill");
  const fs::path run = dir / "a";
  // SIGKILL once it has trained a step and streamed compute events to its trace (polled: on a
  // loaded machine the first steps can take long).
  run_command("bash -c '" + std::string(DUET_BINARY) + " train --train.steps 100000 --train.eval_every 0 "
              "--train.eval_batches 1 --run.dir " + dir.string() + " --run.name a & p=$!; "
              "for i in $(seq 3000); do grep -qs \"step\\\":[0-9]*,.loss\" " + (run / "metrics.jsonl").string() +
              " && grep -qs \"cat\\\":\\\"compute\" " + (run / "trace/rank-00000.json").string() +
              " && break; kill -0 $p 2>/dev/null || break; sleep 0.1; done; kill -KILL $p; wait $p'");
  ASSERT_FALSE(loss_values(run / "metrics.jsonl").empty()) << "the run trained no step before it was killed";
  const fs::path trace = run / "trace/rank-00000.json";
  ASSERT_TRUE(fs::exists(trace));
  const std::string text = read_file(trace);
  EXPECT_NE(text.find("\"cat\":\"compute\""), std::string::npos) << "no events in the trace of a killed run";
  EXPECT_EQ(text.find("]}"), std::string::npos);  // not closed: it was killed
  const auto r = run_duet("report --run " + run.string());
  EXPECT_EQ(r.exit_code, kDone) << r.output.substr(0, 3000);
  EXPECT_TRUE(has(r, "ends without its closing")) << r.output.substr(0, 3000);
  fs::remove_all(dir);
}

TEST(ExitsCli, ReportRefusesUnreadableTraces) {
  const auto dir = scratch_dir("exits-garbage");
  const fs::path run = dir / "a";
  ASSERT_EQ(run_duet("train --train.steps 2 --train.eval_batches 1 --run.dir " + dir.string() + " --run.name a").exit_code, 0);
  const fs::path trace = run / "trace/rank-00000.json";
  std::ofstream(trace) << "this is not a trace\n\x01\x02 garbage\n";
  auto r = run_duet("report --run " + run.string());
  EXPECT_NE(r.exit_code, kDone) << r.output;
  EXPECT_TRUE(has(r, trace.string())) << r.output;
  EXPECT_TRUE(has(r, "is not a duet trace")) << r.output;
  // A header and nothing else: no events is no report either.
  std::ofstream(trace) << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n]}\n";
  r = run_duet("report --run " + run.string());
  EXPECT_NE(r.exit_code, kDone) << r.output;
  EXPECT_TRUE(has(r, "holds no events")) << r.output;
  fs::remove_all(dir);
}

// After a resume, metrics.jsonl says so, and the report counts each step once.
TEST(ExitsCli, ResumeIsRecordedAndStepsCountOnce) {
  const auto dir = scratch_dir("exits-resume");
  const std::string args = " --train.steps 4 --train.eval_batches 1 --checkpoint.every 1 --run.dir " + dir.string() +
                           " --run.name a";
  ASSERT_EQ(run_duet("train" + args + " --train.stop_at 3").exit_code, 0);
  // Drop the newest checkpoint: the run resumes from step 2 and writes step 3 again.
  fs::remove_all(dir / "a/checkpoints/step-000003");
  auto r = run_duet("train" + args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string metrics = read_file(dir / "a/metrics.jsonl");
  EXPECT_NE(metrics.find("{\"event\":\"resume\",\"from_step\":2,\"attempt\":2}"), std::string::npos) << metrics;
  EXPECT_EQ(loss_texts(dir / "a/metrics.jsonl").size(), 4u);
  EXPECT_TRUE(fs::exists(dir / "a/trace/rank-00000.attempt-2.json"));
  r = run_duet("report --run " + (dir / "a").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r, "attempt 2")) << r.output;
  fs::remove_all(dir);
}

// The estimate is within 25% of what training really adds to the process's peak resident
// memory (VmHWM at the end minus VmRSS right after start-up, logged by `duet train`).
TEST(ExitsCli, MemoryEstimateMatchesMeasuredPeak) {
  const auto dir = scratch_dir("exits-rss");
  struct Shape {
    const char* name;
    const char* args;
  };
  for (const Shape& s :
       {Shape{"tiny", ""},
        Shape{"d256", " --model.d_model 256 --model.heads 8 --model.d_ff 768 --model.moe.d_expert 256 "
                      "--train.micro_batch_size 4 --train.seq_len 256 --train.global_batch 16"},
        Shape{"d512", " --model.d_model 512 --model.heads 8 --model.d_ff 1536 --model.moe.d_expert 512 "
                      "--train.micro_batch_size 4 --train.seq_len 256 --train.global_batch 8"}}) {
    const auto r = run_duet(std::string("train --train.steps 3 --train.eval_batches 1 --runtime.trace false") + s.args +
                            " --run.dir " + dir.string() + " --run.name " + s.name);
    ASSERT_EQ(r.exit_code, 0) << s.name << "\n" << r.output;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.output, m, std::regex(R"(\((\d+) bytes; estimated (\d+) bytes per rank\))")))
        << r.output;
    const double measured = std::stod(m[1]), estimated = std::stod(m[2]);
    std::printf("%s: measured %.1f MiB, estimated %.1f MiB (%+.1f%%)\n", s.name, measured / (1 << 20),
                estimated / (1 << 20), 100 * (estimated - measured) / measured);
    EXPECT_LE(std::abs(estimated - measured) / measured, 0.25) << s.name << ": measured " << measured << " estimated "
                                                              << estimated;
  }
  fs::remove_all(dir);
}

// Slurm's time-limit warning (SIGUSR1) can come just after the run has ended: `duet launch`
// must still exit 0, not die of the signal (the job would end FAILED). USR1 is sent again and
// again from the moment the supervisor says it finished until the process is gone.
TEST(ExitsCli, AWarningAfterTheRunEndedDoesNotKillTheLauncher) {
  const auto dir = scratch_dir("exits-late-usr1");
  const std::string out = (dir / "launch.out").string();
  const auto r = run_command(
      "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " + std::string(DUET_BINARY) +  // $p: duet itself
      " launch --parallel.pp 1 --parallel.dp 1 --parallel.ep 1 --train.steps 2 --train.eval_batches 1"
      " --checkpoint.memory off --run.dir " + dir.string() + " > " + out + " 2>&1 & p=$!; "
      "until grep 'supervisor: finished' " + out + " >/dev/null 2>&1 || ! kill -0 $p 2>/dev/null; do sleep 0.01; done; "
      "n=0; while kill -USR1 $p 2>/dev/null; do n=$((n+1)); done; wait $p; s=$?; echo \"signals sent: $n\"; exit $s");
  EXPECT_EQ(r.exit_code, kDone) << r.output << read_file(out);
  EXPECT_TRUE(has(r, "signals sent: ")) << r.output;
  EXPECT_NE(read_file(out).find("supervisor: finished (exit code 0)"), std::string::npos) << read_file(out);
}

// A SIGUSR1 that comes while `duet launch` is still getting ready (the Slurm checks, the peak
// probe, the run directory: before the supervisor runs) is a time-limit warning like any other:
// the ranks stop at a step boundary with a checkpoint and the launcher exits 5 (requeue). The
// signal is made pending before duet starts (blocked in the child, sent, then exec): it reaches
// duet the moment duet unblocks it, earlier than any timing could place it. Before the fix it was
// thrown away, and the job ran on into its time limit without a checkpoint.
// Runs `duet launch` with `args` and a SIGUSR1 already pending: the signal is blocked in the
// child, sent, then the child execs duet, which gets it the moment it unblocks it. Returns the
// wait status and the output.
std::pair<int, std::string> launch_with_usr1_pending(const std::vector<std::string>& launch_args, const fs::path& out) {
  std::vector<std::string> args = {DUET_BINARY, "launch"};
  args.insert(args.end(), launch_args.begin(), launch_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_text = {"OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"};
  for (char** e = environ; *e; ++e) env_text.push_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);
  const std::string out_path = out.string();

  const pid_t pid = fork();
  if (pid < 0) return {-1, "fork failed"};
  if (pid == 0) {  // only async-signal-safe calls from here to exec
    const int fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) _exit(126);
    dup2(fd, 1), dup2(fd, 2);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, nullptr);
    kill(getpid(), SIGUSR1);  // pending across exec
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return {-1, "duet launch still running after 120 s\n" + read_file(out)};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling a child, not synchronising
  }
  return {status, read_file(out)};
}

TEST(ExitsCli, AWarningBeforeTheSupervisorRunsIsActedOn) {
  const auto dir = scratch_dir("exits-early-usr1");
  const auto [status, text] =
      launch_with_usr1_pending({"--parallel.pp", "1", "--parallel.dp", "1", "--parallel.ep", "1", "--train.steps", "50",
                                "--train.eval_batches", "1", "--checkpoint.memory", "off", "--run.dir", dir.string()},
                               dir / "launch.out");
  ASSERT_TRUE(status >= 0 && WIFEXITED(status)) << "ended by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << "\n"
                                 << text;
  EXPECT_EQ(WEXITSTATUS(status), 5) << text;  // RequeueRequested
  auto says = [&](const std::string& what) { return text.find(what) != std::string::npos; };
  EXPECT_TRUE(says("SIGUSR1: every rank stops at the next step boundary with a checkpoint")) << text;
  EXPECT_TRUE(says("supervisor: finished (exit code 5)")) << text;
  EXPECT_FALSE(says("done: 50 steps")) << text;  // it did not run on to the end
  // It stops at a step boundary (the first, unless the supervisor was slow to pass the stop on)
  // with that step's checkpoint committed.
  std::smatch m;
  const std::regex stopped("stopping after step ([0-9]+) \\(the supervisor asked\\)");
  ASSERT_TRUE(std::regex_search(text, m, stopped)) << text;
  EXPECT_TRUE(says("supervisor: checkpoint: step " + m[1].str() + " committed")) << text;
  // No evaluation ran after the first one: the summary says so rather than "-> 0.0000".
  EXPECT_TRUE(says("val loss 5.") && says("at step 0, none since")) << text;
  fs::remove_all(dir);
}

// The same warning when the first step is the last: the stop comes as the run ends, so there is
// nothing to stop or requeue — the run finishes (exit 0, FINISHED). Before, the job asked to be
// requeued, and its next start found the run finished and trained it again from step 0 in
// <name>-2. That next start, given the run's id (as every start of a Slurm job is), now says
// the run has finished and does nothing.
TEST(ExitsCli, AWarningAtTheLastStepFinishesTheRunAndARequeuedStartDoesNothing) {
  const auto dir = scratch_dir("exits-last-step-usr1");
  const std::vector<std::string> args = {"--parallel.pp",        "1",   "--parallel.dp", "1",         "--parallel.ep",
                                         "1",                    "--train.steps",        "1",         "--train.eval_batches",
                                         "1",                    "--checkpoint.memory",  "off",       "--run.dir",
                                         dir.string(),           "--run.name",           "last"};
  const auto [status, text] = launch_with_usr1_pending(args, dir / "launch.out");
  ASSERT_TRUE(status >= 0 && WIFEXITED(status)) << text;
  EXPECT_EQ(WEXITSTATUS(status), 0) << text;
  auto says = [&](const std::string& what) { return text.find(what) != std::string::npos; };
  EXPECT_TRUE(says("SIGUSR1: every rank stops at the next step boundary with a checkpoint")) << text;
  EXPECT_TRUE(says("done: 1 steps")) << text;
  EXPECT_FALSE(says("stopping after step")) << text;
  EXPECT_TRUE(says("supervisor: finished (exit code 0): training finished (the stop came with its last step)")) << text;
  ASSERT_TRUE(fs::exists(dir / "last/FINISHED")) << text;

  std::smatch id;
  const std::string config = read_file(dir / "last/config.yaml");
  ASSERT_TRUE(std::regex_search(config, id, std::regex("id: \"([0-9a-f]{16})\""))) << config;
  const std::string metrics = read_file(dir / "last/metrics.jsonl");
  std::vector<std::string> again = args;
  again.insert(again.end(), {"--run.id", id[1].str()});
  const auto r = run_duet("launch " + [&] {
    std::string words;
    for (const auto& a : again) words += (words.empty() ? "" : " ") + a;
    return words;
  }());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(has(r, "run " + id[1].str() + " in " + (dir / "last").string() + " has finished")) << r.output;
  EXPECT_TRUE(has(r, "nothing to do")) << r.output;
  EXPECT_FALSE(fs::exists(dir / "last-2")) << r.output;
  EXPECT_EQ(read_file(dir / "last/metrics.jsonl"), metrics);
  fs::remove_all(dir);
}
