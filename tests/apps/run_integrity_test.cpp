// Issue 11, "a run is protected": run lineages, what a resume may change, one job per run
// directory, reruns that never destroy — end to end through the duet binary.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <regex>
#include <thread>

#include "tests/apps/cli_util.h"

using namespace duet::test;
namespace fs = std::filesystem;

namespace {

const std::string kQuick = " --train.eval_batches 1 --train.global_batch 4 --runtime.trace false";

std::string hostname() {
  char h[256] = {};
  gethostname(h, sizeof h - 1);
  return h;
}

std::string manifest_of(const fs::path& ckpt) { return read_file(ckpt / "manifest.json"); }

}  // namespace

// Defect 1: an older run's step-2 and step-4 in the checkpoint folder. The new run lost its own
// step 1 right after "committed", replaced the old step 2, and its restart resumed from the
// old run's step 4 while `latest` pointed at its step 3.
TEST(RunIntegrity, CheckpointRotationAndResumeKeepToTheirRun) {
  const auto dir = scratch_dir("lineage-mix");
  const std::string ck = (dir / "ck").string();
  const std::string base = "train" + kQuick + " --run.dir " + dir.string() + " --checkpoint.dir " + ck;
  auto r = run_duet(base + " --run.name old --train.steps 4 --checkpoint.every 2 --checkpoint.keep 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string old2 = manifest_of(fs::path(ck) / "step-000002"), old4 = manifest_of(fs::path(ck) / "step-000004");
  ASSERT_FALSE(old2.empty());
  const std::string fresh = base + " --run.name new --train.seed 7 --checkpoint.every 1 --checkpoint.keep 2 --train.steps 6";
  r = run_duet(fresh + " --checkpoint.resume false --train.stop_at 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(fs::path(ck) / "step-000001/COMMITTED")) << "its only checkpoint was rotated away\n" << r.output;
  EXPECT_NE(r.output.find("also holds checkpoints of other runs"), std::string::npos) << r.output;
  r = run_duet(fresh + " --train.stop_at 3");  // the same run, continued to step 3
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(manifest_of(fs::path(ck) / "step-000002"), old2) << "the old run's step 2 was replaced";
  EXPECT_EQ(manifest_of(fs::path(ck) / "step-000004"), old4);
  std::string id;  // the new run's step 2 went next to the old one's, named with its lineage
  for (const auto& e : fs::directory_iterator(ck))
    if (e.path().filename().string().starts_with("step-000002.")) id = e.path().filename().string().substr(12);
  ASSERT_EQ(id.size(), 16u) << id;
  EXPECT_NE(read_file(dir / "new/config.yaml").find(id), std::string::npos);
  EXPECT_TRUE(fs::exists(fs::path(ck) / ("step-000002." + id) / "COMMITTED"));
  EXPECT_EQ(fs::read_symlink(fs::path(ck) / "latest"), "step-000003");
  r = run_duet(fresh);  // restart: resumes from its own step 3
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from " + ck + "/step-000003"), std::string::npos) << r.output;
  EXPECT_EQ(manifest_of(fs::path(ck) / "step-000004"), old4);
  EXPECT_NE(manifest_of(fs::path(ck) / "step-000006").find(id), std::string::npos);
  fs::remove_all(dir);
}

// Defect 2, first half: two jobs started at once on one run directory both ran. The second
// is refused, naming the holder, with a non-zero exit; the first is unaffected.
TEST(RunIntegrity, SecondJobOnARunDirectoryIsRefused) {
  const auto dir = scratch_dir("lock-two");
  const std::string cmd = "train" + kQuick + " --train.steps 400 --train.log_every 1000 --run.dir " + dir.string() + " --run.name x";
  CommandResult first;
  std::thread t([&] { first = run_duet(cmd); });
  const fs::path lock = dir / "x/run.lock";
  for (int i = 0; i < 300 && !fs::exists(dir / "x/metrics.jsonl"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(fs::exists(lock));
  const std::string holder = read_file(lock);
  const auto second = run_duet(cmd);
  ASSERT_NE(holder.find("\npid "), std::string::npos) << holder;
  const long pid = std::stol(holder.substr(holder.find("\npid ") + 5));
  ::kill(static_cast<pid_t>(pid), SIGTERM);  // the first job: a process this test started
  t.join();
  EXPECT_NE(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("in use by another job: PID " + std::to_string(pid) + " on host " + hostname() + ", started "),
            std::string::npos)
      << second.output;
  // Nothing of the second job in the run directory: one header record, from the first.
  const std::string metrics = read_file(dir / "x/metrics.jsonl");
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n') >= 1, true);
  EXPECT_EQ(metrics.find("\"event\":\"run\""), metrics.rfind("\"event\":\"run\"")) << metrics;
  fs::remove_all(dir);
}

// Defect 2, second half: the same run name with another seed appended to metrics.jsonl and
// overwrote config.yaml; a resume with changed seed, lr, batch and sequence length was
// accepted silently.
TEST(RunIntegrity, ResumeRefusesChangesNamingTheKeys) {
  const auto dir = scratch_dir("resume-changes");
  const std::string base = "train --train.eval_batches 1 --runtime.trace false --train.steps 4 --run.dir " +
                           dir.string() + " --run.name b";
  ASSERT_EQ(run_duet(base + " --train.global_batch 4 --train.stop_at 2").exit_code, 0);
  const std::string config = read_file(dir / "b/config.yaml"), metrics = read_file(dir / "b/metrics.jsonl");
  auto r = run_duet(base + " --train.seed 7 --train.lr 0.099 --train.global_batch 8 --train.seq_len 64");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("train.seq_len: 128 -> 64"), std::string::npos) << r.output;
  r = run_duet(base + " --train.seed 7 --train.lr 0.099 --train.global_batch 8");
  EXPECT_NE(r.exit_code, 0) << r.output;
  for (const char* k : {"train.seed: 1234 -> 7", "train.lr: ", "train.global_batch: 4 -> 8", "--checkpoint.allow_changes"})
    EXPECT_NE(r.output.find(k), std::string::npos) << k << "\n" << r.output;
  EXPECT_EQ(read_file(dir / "b/config.yaml"), config);  // refused before anything was written
  EXPECT_EQ(read_file(dir / "b/metrics.jsonl"), metrics);
  r = run_duet(base + " --train.global_batch 4 --train.lr 0.004 --checkpoint.allow_changes true");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming with changes (checkpoint.allow_changes): train.lr: 0.003 -> 0.004"), std::string::npos)
      << r.output;
  fs::remove_all(dir);
}

// Rerunning a finished run starts <name>-2 and leaves the finished one as it was.
TEST(RunIntegrity, RerunOfAFinishedRunStartsANewDirectory) {
  const auto dir = scratch_dir("rerun");
  const std::string base = "train" + kQuick + " --train.steps 2 --run.dir " + dir.string() + " --run.name a";
  ASSERT_EQ(run_duet(base).exit_code, 0);
  ASSERT_TRUE(fs::exists(dir / "a/FINISHED"));
  const std::string config = read_file(dir / "a/config.yaml"), metrics = read_file(dir / "a/metrics.jsonl");
  const auto r = run_duet(base + " --train.seed 7");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("holds a finished run"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("this run starts in " + (dir / "a-2").string()), std::string::npos) << r.output;
  EXPECT_EQ(read_file(dir / "a/config.yaml"), config);
  EXPECT_EQ(read_file(dir / "a/metrics.jsonl"), metrics);
  EXPECT_EQ(loss_texts(dir / "a-2/metrics.jsonl").size(), 2u);
  EXPECT_NE(read_file(dir / "a-2/config.yaml").find("seed: 7"), std::string::npos);
  fs::remove_all(dir);
}

// Asked for by its own id, the finished run is reported, not trained again in <name>-2.
TEST(RunIntegrity, AFinishedRunAskedForByItsIdIsNotTrainedAgain) {
  const auto dir = scratch_dir("rerun-id");
  const std::string base = "train" + kQuick + " --train.steps 2 --run.dir " + dir.string() + " --run.name a";
  ASSERT_EQ(run_duet(base).exit_code, 0);
  std::smatch id;
  const std::string config = read_file(dir / "a/config.yaml"), metrics = read_file(dir / "a/metrics.jsonl");
  ASSERT_TRUE(std::regex_search(config, id, std::regex("id: \"([0-9a-f]{16})\""))) << config;
  const auto r = run_duet(base + " --run.id " + id[1].str());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("duet train: run " + id[1].str() + " in " + (dir / "a").string() + " has finished"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("nothing to do"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "a-2"));
  EXPECT_EQ(read_file(dir / "a/metrics.jsonl"), metrics);
  fs::remove_all(dir);
}

// A run whose last step's checkpoint could not be saved (a full disk) has trained every step but
// is not finished: its final state is not on disk. It is not marked FINISHED, so the next
// start with its id resumes from the step before and saves the end; marked, that start would
// have said "finished, nothing to do" and the state at the end would stay lost. A failed save
// before the last step, with none asked for there, still exits 3 but the run is finished.
TEST(RunIntegrity, ARunWhoseLastCheckpointWasNotSavedIsNotFinished) {
  const auto dir = scratch_dir("unsaved-end");
  const std::string base = "train" + kQuick + " --checkpoint.every 2 --checkpoint.async false"
                                              " --run.dir " + dir.string();
  auto r = run_duet(base + " --run.name whole --train.steps 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto reference = loss_texts(dir / "whole/metrics.jsonl");
  ASSERT_EQ(reference.size(), 4u);
  r = run_duet(base + " --run.name early --train.steps 3 --runtime.fail_plan 1:diskfull:0:2");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("the checkpoint of step 2 was not saved"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir / "early/FINISHED")) << r.output;
  EXPECT_EQ(r.output.find("not marked finished"), std::string::npos) << r.output;
  r = run_duet(base + " --run.name u --train.steps 4 --runtime.fail_plan 1:diskfull:0:4");
  EXPECT_EQ(r.exit_code, 3) << r.output;  // core::ExitCode::CheckpointNotSaved
  EXPECT_NE(r.output.find("the checkpoint of step 4 was not saved"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "u/FINISHED")) << r.output;
  EXPECT_NE(r.output.find("the run is not marked finished (its end is not saved)"), std::string::npos) << r.output;
  std::smatch id;
  const std::string config = read_file(dir / "u/config.yaml");
  ASSERT_TRUE(std::regex_search(config, id, std::regex("id: \"([0-9a-f]{16})\""))) << config;
  r = run_duet(base + " --run.name u --train.steps 4 --run.id " + id[1].str());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from " + (dir / "u/checkpoints/step-000002").string()), std::string::npos)
      << r.output;
  EXPECT_TRUE(fs::exists(dir / "u/checkpoints/step-000004/COMMITTED")) << r.output;
  EXPECT_TRUE(fs::exists(dir / "u/FINISHED"));
  EXPECT_FALSE(fs::exists(dir / "u-2"));
  // Steps 3 and 4 trained again (metrics.jsonl is append-only), to the losses of the run that
  // saved every checkpoint.
  EXPECT_EQ(loss_texts(dir / "u/metrics.jsonl"), reference);
  const std::string metrics = read_file(dir / "u/metrics.jsonl");
  int step4_lines = 0;
  for (size_t at = metrics.find("\"step\":4,"); at != std::string::npos; at = metrics.find("\"step\":4,", at + 1))
    ++step4_lines;
  EXPECT_EQ(step4_lines, 2) << metrics;
  fs::remove_all(dir);
}

// A lock left by a job that died (its PID is gone) is taken over, with a line saying so.
TEST(RunIntegrity, StaleLockIsTakenOver) {
  const auto dir = scratch_dir("lock-stale");
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  fs::create_directories(dir / "s");
  std::ofstream(dir / "s/run.lock") << "duet run lock\npid " << child << "\nhost " << hostname()
                                    << "\nstarted 1764627601\nstart_text x\ntoken 0123456789abcdef\nslurm_job_id -\n";
  const auto r = run_duet("train" + kQuick + " --train.steps 1 --run.dir " + dir.string() + " --run.name s");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("run lock: taking over"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("its process is gone"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "s/run.lock"));  // released at the end
  fs::remove_all(dir);
}

// Under `duet launch` the lock is launch's: its ranks work under it (they do not take it),
// and a second launch on the same run directory is refused naming launch's PID.
TEST(RunIntegrity, SecondLaunchIsRefusedWhileTheFirstRuns) {
  const auto dir = scratch_dir("lock-launch");
  const std::string cmd = "launch --parallel.pp 2 --bind none" + kQuick + " --train.steps 20 --run.dir " + dir.string() +
                          " --run.name l";
  CommandResult first;
  std::thread t([&] { first = run_duet(cmd); });
  const fs::path lock = dir / "l/run.lock";
  // The lock is created, then written: wait for its text (its holder's pid line), not only the file.
  std::string holder;
  for (int i = 0; i < 300; ++i) {
    holder = fs::exists(lock) ? read_file(lock) : std::string();
    const auto at = holder.find("\npid ");
    if (at != std::string::npos && holder.find('\n', at + 1) != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const auto second = run_duet(cmd);
  t.join();
  ASSERT_EQ(first.exit_code, 0) << first.output;
  ASSERT_NE(holder.find("\npid "), std::string::npos) << holder;
  const std::string pid = holder.substr(holder.find("\npid ") + 5, holder.find('\n', holder.find("\npid ") + 1) - holder.find("\npid ") - 5);
  EXPECT_NE(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("in use by another job: PID " + pid + " on host " + hostname()), std::string::npos)
      << second.output;
  EXPECT_EQ(loss_texts(dir / "l/metrics.jsonl").size(), 20u);
  EXPECT_FALSE(fs::exists(lock));  // released when the job ended
  fs::remove_all(dir);
}

// `duet submit` on a directory that holds a run stopped early gives the job that run's id, so
// that the same command again continues it (a new id made the job's start skip to <name>-2 and
// train from step 0); another run.id, or a config that run cannot resume with, is refused
// naming why, before anything is written. Without a layout it submits the default job (PP 4 x
// DP 2, EP 2), the one its `duet launch` runs; it used to check the config's 1 rank while the
// job's launch ran 8.
TEST(RunIntegrity, SubmitContinuesARunStoppedEarly) {
  const auto dir = scratch_dir("submit-again");
  const auto r = run_duet("train" + kQuick + " --train.steps 4 --train.stop_at 2 --run.dir " + dir.string() +
                          " --run.name s");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::smatch m;
  const std::string config = read_file(dir / "s/config.yaml");
  ASSERT_TRUE(std::regex_search(config, m, std::regex("\n  id: \"([0-9a-f]{16})\""))) << config;
  const std::string id = m[1];
  const std::string submit = "submit --dry-run --nodes 1 --set parallel.pp=1 --set parallel.dp=1" + kQuick +
                             " --train.steps 4 --run.dir " + dir.string() + " --run.name s";
  const auto again = run_duet(submit);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("the job continues run " + id + " in " + (dir / "s").string()), std::string::npos)
      << again.output;
  EXPECT_NE(again.output.find("'--set' 'run.id=" + id + "'"), std::string::npos) << again.output;

  const auto other = run_duet(submit + " --run.id 0123456789abcdef");
  EXPECT_EQ(other.exit_code, 2) << other.output;
  EXPECT_NE(other.output.find("holds run " + id + ", not run.id 0123456789abcdef"), std::string::npos) << other.output;
  const auto changed = run_duet(submit + " --model.layers 6");
  EXPECT_EQ(changed.exit_code, 2) << changed.output;
  EXPECT_NE(changed.output.find("model.layers"), std::string::npos) << changed.output;
  EXPECT_EQ(read_file(dir / "s/config.yaml"), config);
  EXPECT_FALSE(fs::exists(dir / "s/job.sbatch"));

  const auto fresh = run_duet("submit --dry-run --nodes 2 --ranks-per-node 4 --run.dir " + dir.string() + " --run.name n");
  ASSERT_EQ(fresh.exit_code, 0) << fresh.output;
  EXPECT_NE(fresh.output.find("exec '" + std::string(DUET_BINARY) +
                              "' 'launch' '--set' 'parallel.pp=4' '--set' 'parallel.dp=2' '--set' 'parallel.ep=2'"),
            std::string::npos)
      << fresh.output;
  EXPECT_FALSE(fs::exists(dir / "n"));
  fs::remove_all(dir);
}

// Option names are whole: an abbreviation is refused naming the option it abbreviates (Boost
// took it, and `duet submit` passed `--part gpu` on to the job's `duet launch`, which refused
// it only when the job started, after its wait in the queue).
TEST(RunIntegrity, AbbreviatedOptionsAreRefusedNamingTheOption) {
  const auto part = run_duet("submit --dry-run --nodes 8 --part gpu");
  EXPECT_EQ(part.exit_code, 2) << part.output;
  EXPECT_NE(part.output.find("unrecognised option '--part' (did you mean '--partition'? option names are not "
                             "abbreviated)"),
            std::string::npos)
      << part.output;
  const auto steps = run_duet("train --train.step 2 --dry-run");
  EXPECT_EQ(steps.exit_code, 2) << steps.output;
  EXPECT_NE(steps.output.find("did you mean '--train.steps'?"), std::string::npos) << steps.output;
  const auto typo = run_duet("train --train.setps 2 --dry-run");
  EXPECT_NE(typo.output.find("unrecognised option '--train.setps' (did you mean '--train.steps'?)"), std::string::npos)
      << typo.output;
  // Every subcommand the same way: a typo of one of its options is named, with what was meant.
  for (const auto& [command, hint] : std::vector<std::pair<std::string, std::string>>{
           {"ckpt verify /tmp --levl full", "unrecognised option '--levl' (did you mean '--level'?)"},
           {"status --ru /tmp", "unrecognised option '--ru' (did you mean '--run'? option names are not abbreviated)"},
           {"submit --dry-run --partitoin gpu", "unrecognised option '--partitoin' (did you mean '--partition'?)"},
           // A dotted name is a config key first ("runtime" holds "time", an option of submit's).
           {"submit --dry-run --runtime.tarce false", "(did you mean '--runtime.trace'?)"},
           // Never the hidden names of positional arguments.
           {"ckpt verify /tmp --d", "unrecognised option '--d' (--help lists the options)"}}) {
    const auto r = run_duet(command);
    EXPECT_EQ(r.exit_code, 2) << command << "\n" << r.output;
    EXPECT_NE(r.output.find(hint), std::string::npos) << command << "\n" << r.output;
  }
}

// run.id becomes part of checkpoint names (step-N.<id> beside another run's step-N, listed by
// splitting at '.'): an id with a '.' made a run's checkpoints invisible, and it trained again
// from step 0. Such ids are refused naming the key.
TEST(RunIntegrity, ARunIdThatCannotNameACheckpointIsRefused) {
  for (const std::string& bad : std::vector<std::string>{"exp.1", "a/b", "x y", std::string(65, 'a')}) {
    const auto r = run_duet("train --dry-run --run.id '" + bad + "'");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("run.id: expected \"\" or up to 64 letters, digits, '-' and '_'"), std::string::npos)
        << r.output;
  }
  EXPECT_EQ(run_duet("train --dry-run --run.id exp-1_b").exit_code, 0);
}

// A resume with another train.global_batch (checkpoint.allow_changes) goes on at the data
// position its checkpoint saved. It went on at step × the new global batch: with 4 → 8 after
// step 2 it skipped sequences 8-15, with 8 → 4 it would train sequences 8-15 again. With a
// learning rate too small to move the weights (and the experts' routing biases held still), a
// step's loss is a function of its sequences alone: step 3 at a global batch of 8 must see sequences 8-15, the mean of the losses an
// uninterrupted global batch of 4 sees at its steps 3 and 4.
TEST(RunIntegrity, AResumeWithAnotherGlobalBatchGoesOnAtTheSavedDataPosition) {
  const auto dir = scratch_dir("resume-batch");
  const std::string base = "train --train.eval_batches 1 --runtime.trace false --train.lr 1e-12 --train.min_lr 1e-12"
                           " --model.moe.bias_update_rate 0 --checkpoint.every 2 --run.dir " + dir.string();
  const auto whole = run_duet(base + " --train.global_batch 4 --train.steps 4 --run.name whole");
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  const auto at4 = loss_values(dir / "whole/metrics.jsonl");
  ASSERT_EQ(at4.size(), 4u);
  ASSERT_EQ(run_duet(base + " --train.global_batch 4 --train.steps 5 --train.stop_at 2 --run.name c").exit_code, 0);
  const auto r = run_duet(base + " --train.global_batch 8 --train.steps 5 --train.stop_at 4 --checkpoint.allow_changes true"
                                 " --run.name c");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("data: continuing at sequence 8, where step 2 was saved (train.global_batch is now 8): step 3 "
                          "trains on sequences 8 to 15"),
            std::string::npos)
      << r.output;
  const auto resumed = loss_values(dir / "c/metrics.jsonl");
  ASSERT_EQ(resumed.size(), 4u);  // steps 1-4
  EXPECT_NEAR(resumed[2], (at4[2] + at4[3]) / 2, 1e-6) << "step 3 did not train on sequences 8-15";
  EXPECT_GT(std::abs(at4[2] - at4[3]), 1e-4);  // the check can tell sequences apart
  const std::string metrics = read_file(dir / "c/metrics.jsonl");
  EXPECT_NE(metrics.find("\"step\":3,"), std::string::npos);
  EXPECT_NE(metrics.find("\"tokens\":" + std::to_string(16 * 128) + ","), std::string::npos) << metrics;  // after step 3
  // Its checkpoint of step 4 saved that position: a further resume goes on from sequence 24.
  const auto again = run_duet(base + " --train.global_batch 4 --train.steps 5 --checkpoint.allow_changes true --run.name c");
  EXPECT_FALSE(fs::exists(dir / "c-2"));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("data: continuing at sequence 24, where step 4 was saved"), std::string::npos) << again.output;
  fs::remove_all(dir);
}

// The default layout does not override a schedule the user gave (it set the key twice, an
// error), and run.* given with the short -s are replaced by the resolved ones like --set's
// (they reached the job's launch twice, which refused them when the job started).
TEST(RunIntegrity, SubmitKeepsTheUsersScheduleAndResolvesShortSets) {
  const auto dir = scratch_dir("submit-schedule");
  const auto r = run_duet("submit --dry-run --nodes 2 --ranks-per-node 4 --parallel.schedule zb1p -s run.name=x"
                          " --run.dir " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("'--parallel.schedule' 'zb1p'"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("parallel.schedule=dualpipe"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("'-s' 'run.name=x'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("'--set' 'run.name=x'"), std::string::npos) << r.output;
  EXPECT_EQ(run_duet("launch --dry-run --parallel.schedule zb1p").exit_code, 0);
  fs::remove_all(dir);
}
