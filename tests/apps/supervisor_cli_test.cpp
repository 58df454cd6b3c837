// `duet launch` as the job's supervisor, end to end under real mpirun: faults are triggered by
// events of the run (a step reached: runtime.fail_* or a metrics line appearing), never by
// timers, so the tests do not depend on the machine's speed.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "checkpoint/fence.h"
#include "tests/apps/cli_util.h"

using namespace duet::test;
namespace fs = std::filesystem;

namespace {

// 8 ranks (the default layout), a checkpoint every 4 steps, saved synchronously so that a
// fault at step 6 always finds step 4 committed. In-memory snapshots off: these tests are
// about restarts from the HDF5 checkpoints (tests/apps/snapshot_cli_test.cpp has them on).
const std::string kJob = " --train.log_every 12 --train.eval_batches 1 --checkpoint.every 4"
                         " --checkpoint.async false --fault.backoff_s 0 --checkpoint.memory off";

// hang_timeout_s: generous except where a hang is the point (a loaded test machine can stall
// a step for long).
std::string launch(const fs::path& dir, const std::string& name, const std::string& extra = "",
                   const std::string& hang_timeout_s = "600", int steps = 12) {
  return std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 ") + DUET_BINARY + " launch" +
         kJob + " --train.steps " + std::to_string(steps) + " --fault.hang_timeout_s " + hang_timeout_s +
         " --run.dir " + dir.string() + " --run.name " + name + extra;
}

class Supervisor : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(scratch_dir("supervisor"));
    const auto r = run_command(launch(*dir_, "clean"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    reference_ = new std::map<int, std::string>(losses_by_step(*dir_ / "clean/metrics.jsonl"));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete reference_;
  }
  static fs::path* dir_;
  static std::map<int, std::string>* reference_;
};
fs::path* Supervisor::dir_ = nullptr;
std::map<int, std::string>* Supervisor::reference_ = nullptr;

// `duet train` for 2 steps as an attempt of generation 3 on run directory <dir>/f, whose fence
// a newer attempt has moved to 5 (a cut-off rank of an earlier attempt).
CommandResult train_as_superseded_attempt(const fs::path& dir, const std::string& args) {
  fs::create_directories(dir / "f");
  { std::ofstream(dir / "f/fence") << "5\n"; }
  return run_command(std::string("DUET_FENCE=3 timeout 300 ") + DUET_BINARY +
                     " train --train.steps 2 --train.eval_batches 1 --train.log_every 10" + args + " --run.dir " +
                     dir.string() + " --run.name f");
}

}  // namespace

TEST_F(Supervisor, AnUninterruptedRunLogsNoFault) {
  ASSERT_EQ(reference_->size(), 12u);
  for (const auto& k : event_kinds(*dir_ / "clean/events.jsonl"))
    EXPECT_TRUE(k == "launched" || k == "resumed" || k == "checkpoint" || k == "finished") << k;
}

TEST_F(Supervisor, AKilledRankIsRestartedFromTheCheckpointWithTheSameLosses) {
  const auto r = run_command(launch(*dir_, "kill", " --runtime.fail_rank 3 --runtime.fail_step 6 --runtime.fail_signal 9"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from"), std::string::npos) << r.output;
  const auto kinds = event_kinds(*dir_ / "kill/events.jsonl");
  EXPECT_EQ(count(kinds, "rank-died"), 1);
  EXPECT_EQ(count(kinds, "launched"), 2);
  EXPECT_EQ(losses_by_step(*dir_ / "kill/metrics.jsonl"), *reference_);  // bit-identical, every step
  EXPECT_TRUE(no_orphans(*dir_));
  // The recovery's parts are recorded, and add up to its total.
  const std::string events = read_file(*dir_ / "kill/events.jsonl");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(events, m, std::regex("\\{[^\n]*\"kind\": \"recovered\"[^\n]*\\}"))) << events;
  const std::string rec = m[0];
  auto field = [&](const std::string& k) {
    std::smatch f;
    EXPECT_TRUE(std::regex_search(rec, f, std::regex("\"" + k + "\": ([-0-9.e]+)"))) << k << " in " << rec;
    return f.empty() ? -1.0 : std::stod(f[1]);
  };
  double sum = 0;
  for (const char* k : {"detection_s", "teardown_s", "backoff_s", "launch_s", "mpi_init_s", "setup_s", "load_s",
                        "first_step_s"}) {
    EXPECT_GE(field(k), 0) << k;
    sum += field(k);
  }
  EXPECT_NEAR(sum, field("total_s"), 1e-6);
  EXPECT_EQ(field("checkpoint_step"), 4);
  EXPECT_EQ(field("fault_step"), 5);  // rank 3 died at the start of step 6
  EXPECT_EQ(field("recomputed_steps"), 1);
}

// A validation longer than the hang timeout is not a hang: each validation micro-batch is
// progress. 120 batches of 16 sequences take ~4 s on the 2 cores of a dev machine (validation
// runs at steps 2 and 4) against a 2 s timeout; before, both validations were taken for hangs.
// How long validation took is read back (train.log's stamps around step 2, less the step): on a
// machine where it is not longer than the timeout, the test shows nothing and says so.
TEST(SupervisorEval, ALongValidationIsNotAHang) {
  const fs::path dir = scratch_dir("supervisor-eval");
  const auto r = run_command(std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 ") +
                             DUET_BINARY + " launch --parallel.pp 2 --train.steps 4 --train.eval_every 2"
                             " --train.eval_batches 120 --train.log_every 1 --fault.hang_timeout_s 2"
                             " --fault.max_restarts 0 --checkpoint.memory off --runtime.trace false --run.dir " +
                             dir.string() + " --run.name e");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count(event_kinds(dir / "e/events.jsonl"), "hang"), 0) << r.output;
  // Seconds of the day of train.log's "step N/4" line, and step 2's own time.
  auto stamp = [&](int step) {
    std::smatch m;
    const std::string log = read_file(dir / "e/train.log");
    if (!std::regex_search(log, m, std::regex("(\\d\\d):(\\d\\d):(\\d\\d\\.\\d+)  step " + std::to_string(step) + "/4")))
      return -1.0;
    return 3600 * std::stod(m[1]) + 60 * std::stod(m[2]) + std::stod(m[3]);
  };
  std::smatch m;
  const std::string metrics = read_file(dir / "e/metrics.jsonl");
  ASSERT_TRUE(std::regex_search(metrics, m, std::regex("\"step\":2,[^\n]*\"step_time_s\":([0-9.e-]+)"))) << metrics;
  ASSERT_GE(stamp(1), 0) << read_file(dir / "e/train.log");
  ASSERT_GE(stamp(2), stamp(1)) << read_file(dir / "e/train.log");  // (a run across midnight: run it again)
  const double validation = stamp(2) - stamp(1) - std::stod(m[1]);
  fs::remove_all(dir);
  if (validation <= 2.5)
    GTEST_SKIP() << "validation took " << validation << " s here, not longer than the 2 s hang timeout";
}

// A rank killed while it writes its shard of step 8: that checkpoint never commits, the
// restart resumes from step 4 and every loss is the uninterrupted run's.
TEST_F(Supervisor, AKillDuringASaveUsesNoPartialCheckpoint) {
  const auto r = run_command(launch(*dir_, "killsave", " --runtime.fail_rank 6 --runtime.fail_step 8 --runtime.fail_signal 9"
                                                       " --runtime.fail_at save"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from " + (*dir_ / "killsave/checkpoints/step-000004").string()), std::string::npos)
      << r.output;
  const auto kinds = event_kinds(*dir_ / "killsave/events.jsonl");
  EXPECT_EQ(count(kinds, "rank-died"), 1);
  EXPECT_EQ(count(kinds, "recovered"), 1);
  EXPECT_EQ(losses_by_step(*dir_ / "killsave/metrics.jsonl"), *reference_);
  // Step 8 was saved again by the next attempt; nothing of the interrupted save is left.
  EXPECT_TRUE(fs::exists(*dir_ / "killsave/checkpoints/step-000008/COMMITTED"));
  for (const auto& e : fs::directory_iterator(*dir_ / "killsave/checkpoints"))
    EXPECT_EQ(e.path().string().find("staging"), std::string::npos) << e.path();
  EXPECT_TRUE(no_orphans(*dir_));
}

// Rank 0 killed inside its commit of step 8, after COMMITTED is written and before the
// checkpoint is moved into place: a staging directory that looks complete is never loaded.
TEST_F(Supervisor, AKillDuringACommitUsesNoPartialCheckpoint) {
  const auto r = run_command(launch(*dir_, "killcommit", " --runtime.fail_rank 0 --runtime.fail_step 8 --runtime.fail_signal 9"
                                                         " --runtime.fail_at commit"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from " + (*dir_ / "killcommit/checkpoints/step-000004").string()), std::string::npos)
      << r.output;
  const std::string events = read_file(*dir_ / "killcommit/events.jsonl");
  EXPECT_NE(events.find("\"kind\": \"fault-injected\""), std::string::npos) << events;
  EXPECT_EQ(count(event_kinds(*dir_ / "killcommit/events.jsonl"), "rank-died"), 1) << events;
  EXPECT_EQ(losses_by_step(*dir_ / "killcommit/metrics.jsonl"), *reference_);
  EXPECT_EQ(fs::read_symlink(*dir_ / "killcommit/checkpoints/latest"), "step-000012");
  EXPECT_TRUE(no_orphans(*dir_));
}

// An attempt whose generation is no longer the run's newest (a cut-off rank of an earlier
// attempt, started late) records nothing of the run: no line of metrics.jsonl, no step
// trained, no checkpoint, no FINISHED.
TEST(SupervisorFence, AnOlderAttemptRecordsNothing) {
  const fs::path dir = scratch_dir("fence");
  const auto r = train_as_superseded_attempt(dir, " --checkpoint.every 2 --checkpoint.async false");
  EXPECT_EQ(r.exit_code, 1) << r.output;  // core::ExitCode::Failed
  EXPECT_NE(r.output.find("stopping after step 0, saving nothing: fenced: this attempt (generation 3) was superseded "
                          "by generation 5"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("this attempt was superseded (see above) and wrote nothing more of the run"), std::string::npos)
      << r.output;
  EXPECT_EQ(read_file(dir / "f/metrics.jsonl"), "");
  EXPECT_FALSE(fs::exists(dir / "f/checkpoints/latest"));
  EXPECT_FALSE(fs::exists(dir / "f/FINISHED")) << r.output;
  EXPECT_FALSE(fs::exists(dir / "f/report.json"));
  fs::remove_all(dir);
}

// An attempt superseded while it trains — its rank stopped and continued, or cut off from
// its supervisor, while a newer attempt took the run over — stops at the next step boundary.
// From the moment the fence moved it wrote no line of metrics.jsonl (each is written under
// the fence's shared lock), committed no checkpoint, did not mark the run finished, and left
// the run's in-memory snapshots (the newer attempt's by then) in place. Two ranks: rank 0 sees
// the fence, and the other stops with it.
TEST(SupervisorFence, AnAttemptSupersededMidRunStopsAtTheNextStep) {
  const fs::path dir = scratch_dir("fence-midrun");
  const int steps = 400;  // far more than it reaches
  CommandResult r;
  std::thread run([&] {
    r = run_command(mpirun_train(2, "timeout 300 ") + " --parallel.pp 2 --train.steps " + std::to_string(steps) +
                    " --train.eval_batches 1 --train.log_every 1000 --runtime.trace false --checkpoint.every 2"
                    " --checkpoint.async false --checkpoint.memory on --checkpoint.memory_dir " +
                    (dir / "shm").string() + " --run.dir " + dir.string() + " --run.name f");
  });
  // Step 3's line is written after step 2's checkpoint is committed.
  const fs::path metrics = dir / "f/metrics.jsonl";
  bool third = false;
  for (int i = 0; i < 6000 && !third; ++i) {
    third = fs::exists(metrics) && read_file(metrics).find("{\"step\":3,") != std::string::npos;
    if (!third) std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling a file, not synchronising
  }
  // Once advance_fence returns, no line of the older generation can land.
  const std::int64_t newer = third ? duet::ckpt::advance_fence((dir / "f/fence").string()) : 0;
  const std::string recorded = read_file(metrics);
  run.join();
  ASSERT_TRUE(third) << r.output;
  EXPECT_EQ(newer, 2);  // the run took generation 1 itself
  EXPECT_EQ(r.exit_code, 1) << r.output;
  std::smatch m;
  const std::regex stopped("stopping after step ([0-9]+), saving nothing: fenced: this attempt \\(generation 1\\) was "
                           "superseded by generation 2");
  ASSERT_TRUE(std::regex_search(r.output, m, stopped)) << r.output;
  const int at = std::stoi(m[1].str());
  EXPECT_GE(at, 3);
  EXPECT_LT(at, steps);
  EXPECT_EQ(read_file(metrics), recorded);  // nothing written after the fence moved
  const auto losses = losses_by_step(metrics);
  ASSERT_FALSE(losses.empty());
  EXPECT_EQ(losses.rbegin()->first, at - 1) << recorded;  // step `at` trained, its line refused
  // The newest checkpoint is one committed before the fence moved (none is saved at `at`).
  ASSERT_TRUE(fs::exists(dir / "f/checkpoints/latest"));
  const std::string latest = fs::read_symlink(dir / "f/checkpoints/latest").string();
  EXPECT_LT(std::stoi(latest.substr(latest.find('-') + 1)), at) << latest;
  EXPECT_FALSE(fs::exists(dir / "f/FINISHED"));
  EXPECT_NE(r.output.find("left in place: fenced: this attempt (generation 1)"), std::string::npos) << r.output;
  EXPECT_EQ(snapshot_folders(dir / "shm"), 1) << r.output;
  fs::remove_all(dir);
}

// A fence that cannot be read (here: replaced by a folder once step 2 is recorded) is not a
// newer attempt: the run goes on recording every step, saying once that it could not check.
// Only its checkpoint commits, which need the check, fail (exit 3). It used to take any fence
// error for a supersession and stop every rank without saving.
TEST(SupervisorFence, AFenceThatCannotBeReadDoesNotStopTheRun) {
  const fs::path dir = scratch_dir("fence-unread");
  const int steps = 40;
  CommandResult r;
  std::thread run([&] {
    r = run_command("timeout 300 " + std::string(DUET_BINARY) + " train --train.steps " + std::to_string(steps) +
                    " --train.eval_batches 1 --train.log_every 1000 --runtime.trace false --checkpoint.every 20"
                    " --checkpoint.async false --checkpoint.memory off --run.dir " + dir.string() + " --run.name f");
  });
  const fs::path metrics = dir / "f/metrics.jsonl";
  bool second = false;
  for (int i = 0; i < 6000 && !second; ++i) {
    second = fs::exists(metrics) && read_file(metrics).find("{\"step\":2,") != std::string::npos;
    if (!second) std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling a file, not synchronising
  }
  if (second) {
    fs::remove(dir / "f/fence");
    fs::create_directory(dir / "f/fence");
  }
  run.join();
  ASSERT_TRUE(second) << r.output;
  EXPECT_EQ(r.exit_code, 3) << r.output;  // core::ExitCode::CheckpointNotSaved
  const std::string said = "metrics: the attempt's fence could not be read";
  const auto first = r.output.find(said);
  EXPECT_NE(first, std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(said, first + 1), std::string::npos) << "said more than once";
  EXPECT_EQ(r.output.find("saving nothing"), std::string::npos) << r.output;
  EXPECT_EQ(losses_by_step(metrics).size(), (size_t)steps) << r.output;
  fs::remove_all(dir);
}

TEST_F(Supervisor, AStoppedRankIsAHangWithItsStateSavedThenRestarted) {
  const auto r = run_command(launch(*dir_, "hang",
                                    " --runtime.fail_rank 5 --runtime.fail_step 6 --runtime.fail_signal 19",
                                    /*hang_timeout_s=*/"8"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto kinds = event_kinds(*dir_ / "hang/events.jsonl");
  EXPECT_EQ(count(kinds, "hang"), 1) << r.output;
  EXPECT_EQ(count(kinds, "stacks"), 1);
  // Rank 5 was stopped: the others waited on it, so it is the one named.
  const std::string events = read_file(*dir_ / "hang/events.jsonl");
  EXPECT_NE(events.find("rank 5 made no progress"), std::string::npos) << events;
  const std::string state = read_file(*dir_ / "hang/hang-attempt-1/rank-5.txt");
  EXPECT_NE(state.find("State:\tT (stopped)"), std::string::npos) << state.substr(0, 400);
  // Every other rank answered with every thread's stack, named down to the training loop
  // (waiting on rank 5); the stopped one could not.
  EXPECT_NE(events.find("7 of 8 ranks wrote every thread's stack (not answering: rank 5)"), std::string::npos) << events;
  EXPECT_FALSE(fs::exists(*dir_ / "hang/hang-attempt-1/rank-5.stacks.txt"));
  const std::string stacks = read_file(*dir_ / "hang/hang-attempt-1/rank-4.stacks.txt");
  EXPECT_NE(stacks.find("duet::runtime::train"), std::string::npos) << stacks.substr(0, 2000);
  EXPECT_EQ(losses_by_step(*dir_ / "hang/metrics.jsonl"), *reference_);
  EXPECT_TRUE(no_orphans(*dir_));
}

TEST_F(Supervisor, ANonFiniteLossRestartsWithoutThatStepsData) {
  // Rank 6 (PP stage 3 of replica 0) computes the losses of direction 0: micro-batch 0's is NaN.
  const auto r = run_command(launch(*dir_, "nan", " --runtime.fail_rank 6 --runtime.fail_step 6 --runtime.fail_nan true"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto kinds = event_kinds(*dir_ / "nan/events.jsonl");
  EXPECT_EQ(count(kinds, "non-finite"), 1) << r.output;
  EXPECT_NE(read_file(*dir_ / "nan/events.jsonl").find("at step 6 (micro-batch 0 of direction 0 on rank 6)"),
            std::string::npos)
      << read_file(*dir_ / "nan/events.jsonl");
  EXPECT_EQ(count(kinds, "skip-data"), 1);
  EXPECT_NE(r.output.find("skipping the data of step(s) 6"), std::string::npos) << r.output;
  const auto got = losses_by_step(*dir_ / "nan/metrics.jsonl");
  ASSERT_EQ(got.size(), 12u);
  for (int s = 1; s <= 5; ++s) EXPECT_EQ(got.at(s), reference_->at(s)) << "step " << s;  // before: unchanged
  EXPECT_NE(got.at(6), reference_->at(6));  // step 6 trained on step 7's data
  for (const auto& [s, loss] : got) EXPECT_TRUE(std::isfinite(std::stod(loss))) << "step " << s;
  // Its last checkpoint (step 12) records the data it reached, 13 steps' worth with the one
  // skipped: a later job, which does not know the skipped step, goes on from there instead of
  // training step 12's data again (it recorded 12 steps' worth).
  duet::ckpt::CheckpointReader last((*dir_ / "nan/checkpoints/latest").string());
  EXPECT_EQ(last.manifest().step, 12);
  EXPECT_EQ(last.state(0).data_position, 13 * 16);  // configs/tiny.yaml: a global batch of 16
}

TEST_F(Supervisor, ACrashLoopGivesUpWithItsOwnExitCode) {
  const auto r = run_command(launch(*dir_, "loop",
                                    " --runtime.fail_rank 1 --runtime.fail_step 2 --runtime.fail_attempts 100"
                                    " --fault.max_restarts 2"));
  EXPECT_EQ(r.exit_code, 4) << r.output;  // core::ExitCode::GaveUp
  const auto kinds = event_kinds(*dir_ / "loop/events.jsonl");
  EXPECT_EQ(count(kinds, "launched"), 3);  // the first attempt and two restarts
  EXPECT_EQ(count(kinds, "finished"), 1);
  EXPECT_NE(r.output.find("giving up"), std::string::npos) << r.output;
  EXPECT_TRUE(no_orphans(*dir_));
}

namespace {

// A 400-step `duet launch` of run <name> in the background; once its third metrics line is
// written (at most 120 s, or until the job ended by itself), `signal_cmd` runs in the same bash
// ($pid: the supervisor's, $metrics: the metrics file), and the job is waited for. The output
// ends with "exit=<its exit code>".
CommandResult launch_then_signal(const fs::path& dir, const std::string& name, const std::string& signal_cmd) {
  const fs::path metrics = dir / name / "metrics.jsonl";
  const std::string script = "metrics=" + metrics.string() + "; " + launch(dir, name, "", "600", 400) + " > " +
                             (dir / (name + ".log")).string() +
                             " 2>&1 & pid=$!; for i in $(seq 2400); do [ -f $metrics ] && [ $(wc -l < $metrics) -ge 3 ] "
                             "&& break; kill -0 $pid || break; sleep 0.05; done; " +
                             signal_cmd + "; wait $pid; echo \"exit=$?\"";
  return run_command("bash -c '" + std::regex_replace(script, std::regex("'"), "'\\''") + "'");
}

// The run stopped before its 400 steps, at a step whose checkpoint is committed.
void expect_stopped_with_checkpoint(const fs::path& dir, const std::string& name) {
  const auto losses = losses_by_step(dir / name / "metrics.jsonl");
  ASSERT_FALSE(losses.empty()) << name;
  const int last = losses.rbegin()->first;
  EXPECT_LT(last, 400) << name;
  char step_dir[32];
  std::snprintf(step_dir, sizeof step_dir, "step-%06d", last);
  EXPECT_TRUE(fs::exists(dir / name / "checkpoints" / step_dir / "COMMITTED")) << name << " step " << last;
}

}  // namespace

// SIGTERM / SIGINT / SIGUSR1 to the supervisor once step 3 is in metrics.jsonl: every rank stops at a
// step boundary with a checkpoint; exit 0 / 0 / 5 (requeue requested); nothing is left running.
TEST_F(Supervisor, StopSignalsSaveAndExitWithTheirCodes) {
  for (const auto& [sig, code] : {std::pair<std::string, int>{"TERM", 0}, {"INT", 0}, {"USR1", 5}}) {
    const std::string name = "sig" + sig;
    const auto r = launch_then_signal(*dir_, name, "kill -" + sig + " $(pgrep -P $pid -x duet)");
    EXPECT_NE(r.output.find("exit=" + std::to_string(code)), std::string::npos) << sig << ": " << r.output << "\n"
                                                                                << read_file(*dir_ / (name + ".log"));
    expect_stopped_with_checkpoint(*dir_, name);
    EXPECT_TRUE(no_orphans(*dir_)) << sig;
  }
}

// SIGTERM to one rank, as `scancel` or a preemption sends every rank one: the rank does not
// die where it is (that lost every step since the last checkpoint); it tells the supervisor,
// and every rank stops at the next step boundary with a checkpoint: exit 0, no restart.
TEST_F(Supervisor, ASigtermToARankStopsTheJobWithACheckpoint) {
  const std::string name = "rankterm";
  // Rank 0's pid is in the run's first metrics line.
  const auto r = launch_then_signal(*dir_, name, "kill -TERM $(head -1 $metrics | grep -o '\"pid\":[0-9]*' | cut -d: -f2)");
  const std::string log = read_file(*dir_ / (name + ".log"));
  EXPECT_NE(r.output.find("exit=0"), std::string::npos) << r.output << "\n" << log;
  EXPECT_NE(log.find("stop: SIGTERM to rank 0: every rank stops at the next step boundary"), std::string::npos) << log;
  expect_stopped_with_checkpoint(*dir_, name);
  const auto kinds = event_kinds(*dir_ / name / "events.jsonl");
  EXPECT_EQ(count(kinds, "launched"), 1);
  EXPECT_EQ(count(kinds, "rank-died"), 0);
  EXPECT_TRUE(no_orphans(*dir_));
}
