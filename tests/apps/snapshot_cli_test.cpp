// In-memory snapshots under `duet launch`, end to end with real mpirun and real processes: a
// rank killed, a rank hung and a whole logical node lost each cost at most one step, the
// losses stay those of the uninterrupted run, the snapshots go when the run ends, dead runs'
// snapshots are reclaimed, and too little memory warns (or refuses when asked for). Each
// test keeps its snapshots in a private folder (checkpoint.memory_dir), never /dev/shm.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <regex>
#include <string>

#include "tests/apps/cli_util.h"

using namespace duet::test;
namespace fs = std::filesystem;

namespace {

// 8 ranks (PP 4 x DP 2), an HDF5 checkpoint every 4 steps (so a restart from it would
// recompute up to 3 steps), snapshots every step.
std::string launch(const fs::path& dir, const std::string& name, const std::string& extra = "",
                   const std::string& hang_timeout_s = "600", int steps = 12) {
  return std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 400 ") + DUET_BINARY +
         " launch --train.log_every 12 --train.eval_batches 1 --checkpoint.every 4 --checkpoint.async false"
         " --fault.backoff_s 0 --train.steps " + std::to_string(steps) + " --fault.hang_timeout_s " + hang_timeout_s +
         " --checkpoint.memory_dir " + (dir / "shm").string() + " --run.dir " + dir.string() + " --run.name " + name +
         extra;
}

// The fields of the one `recovered` record of a run.
std::map<std::string, std::string> recovered(const fs::path& events) {
  const std::string text = read_file(events);
  std::smatch m;
  std::map<std::string, std::string> out;
  if (!std::regex_search(text, m, std::regex("\\{[^\n]*\"kind\": \"recovered\"[^\n]*\\}"))) return out;
  const std::string rec = m[0];
  const std::regex field("\"([a-z_]+)\": (\"[^\"]*\"|[-0-9.e]+)");
  for (auto it = std::sregex_iterator(rec.begin(), rec.end(), field); it != std::sregex_iterator(); ++it)
    out[(*it)[1]] = (*it)[2];
  return out;
}

class Snapshots : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_dir("snapshots");
    const auto r = run_command(launch(dir_, "clean"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("memory snapshots: every 1 step(s)"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("MiB in use under"), std::string::npos) << r.output;  // memory use reported
    reference_ = losses_by_step(dir_ / "clean/metrics.jsonl");
    ASSERT_EQ(reference_.size(), 12u);
    EXPECT_EQ(snapshot_folders(dir_ / "shm"), 0);  // a finished run removes its snapshots
  }
  void TearDown() override { fs::remove_all(dir_); }
  // A run with one fault: it resumed from an in-memory snapshot, recomputed at most one step,
  // and left no snapshot and no process behind.
  void expect_lost_at_most_one_step(const std::string& name, const CommandResult& r) {
    EXPECT_NE(r.output.find("resuming from the in-memory snapshot of step"), std::string::npos) << r.output;
    const auto rec = recovered(dir_ / name / "events.jsonl");
    ASSERT_FALSE(rec.empty()) << read_file(dir_ / name / "events.jsonl");
    EXPECT_LE(std::stoi(rec.at("recomputed_steps")), 1) << r.output;
    EXPECT_GE(std::stoi(rec.at("checkpoint_step")), std::stoi(rec.at("fault_step")) - 1);
    EXPECT_NE(rec.at("checkpoint").find("memory step"), std::string::npos) << rec.at("checkpoint");
    const std::string events = read_file(dir_ / name / "events.jsonl");
    EXPECT_NE(events.find("in-memory snapshot of step"), std::string::npos) << events;  // the resumed record
    EXPECT_EQ(snapshot_folders(dir_ / "shm"), 0);
    EXPECT_TRUE(no_orphans(dir_));
  }
  fs::path dir_;
  std::map<int, std::string> reference_;
};

}  // namespace

// Rank 3 killed at the start of step 7: the HDF5 checkpoint is step 4, the snapshots hold
// step 6 (or at worst 5); every loss is bit-identical to the uninterrupted run's.
TEST_F(Snapshots, AKilledRankLosesAtMostOneStep) {
  const auto r = run_command(launch(dir_, "kill", " --runtime.fail_rank 3 --runtime.fail_step 7 --runtime.fail_signal 9"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_lost_at_most_one_step("kill", r);
  EXPECT_EQ(losses_by_step(dir_ / "kill/metrics.jsonl"), reference_);
}

// Rank 5 stopped (SIGSTOP) at the start of step 7: a hang, torn down after the timeout.
TEST_F(Snapshots, AHungRankLosesAtMostOneStep) {
  const auto r = run_command(launch(dir_, "hang", " --runtime.fail_rank 5 --runtime.fail_step 7 --runtime.fail_signal 19",
                                    /*hang_timeout_s=*/"8"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count(event_kinds(dir_ / "hang/events.jsonl"), "hang"), 1) << r.output;
  expect_lost_at_most_one_step("hang", r);
  EXPECT_EQ(losses_by_step(dir_ / "hang/metrics.jsonl"), reference_);
}

// Node 1 (ranks 4-7 of 2 logical nodes of 4) lost at step 7: the supervisor deletes its
// snapshot folder with it, so ranks 4-7's state exists only as the replicas node 0 holds. The
// next attempt runs PP 4 x DP 1 on node 0 and loads into that layout.
TEST_F(Snapshots, ALostNodeResumesFromItsReplicasInASmallerLayout) {
  const auto r = run_command(launch(dir_, "node",
                                    " --launch.ranks_per_node 4 --fault.host_timeout_s 2 --fault.node_window_s 0"
                                    " --runtime.fail_plan 1:nodestop:5:7"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("node node1 is lost: its in-memory snapshots"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("4 own copies, 4 peer replicas"), std::string::npos) << r.output;
  const std::string events = read_file(dir_ / "node/events.jsonl");
  EXPECT_NE(events.find("\"layout\": \"pp 4 x dp 1 x ep 1, dualpipe on node0\""), std::string::npos) << events;
  expect_lost_at_most_one_step("node", r);
  const auto got = losses_by_step(dir_ / "node/metrics.jsonl");
  const int resumed = std::stoi(recovered(dir_ / "node/events.jsonl").at("checkpoint_step"));
  ASSERT_EQ(got.size(), reference_.size());
  for (const auto& [step, loss] : reference_) {
    if (step <= resumed) {
      EXPECT_EQ(got.at(step), loss) << "step " << step;  // trained before the loss, on PP 4 x DP 2
    } else {
      const double a = std::stod(got.at(step)), b = std::stod(loss);
      EXPECT_LE(std::abs(a - b) / b, 1e-4) << "step " << step << " on DP 1";
    }
  }
}

// Three logical nodes of two ranks (PP 2 x DP 3); node 2 lost at step 7. The next attempt runs
// PP 2 x DP 2 on nodes 0 and 1, and each rank needs every old rank's state: nodes 0 and 1 each
// hold some of it (own copies; node 2's ranks only as replicas on node 0) and no rank reads
// another node's folder — the files it lacks are sent by a rank of the node that holds them, as
// between separate hosts.
TEST(SnapshotsMemory, AShrinkOntoSeveralNodesGetsTheStateTheOtherNodesHold) {
  const fs::path dir = scratch_dir("snapshots-nodes");
  const std::string three = " --parallel.pp 2 --parallel.dp 3 --parallel.ep 1 --train.global_batch 24"
                            " --launch.ranks_per_node 2";
  auto r = run_command(launch(dir, "clean", three));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto reference = losses_by_step(dir / "clean/metrics.jsonl");
  r = run_command(launch(dir, "node",
                         three + " --fault.host_timeout_s 2 --fault.node_window_s 0 --runtime.fail_plan 1:nodestop:4:7"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("node node2 is lost: its in-memory snapshots"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("runs pp 2 x dp 2 x ep 1, dualpipe on node0,node1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("resuming from the in-memory snapshot of step"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("6 sent from another node"), std::string::npos) << r.output;
  const auto rec = recovered(dir / "node/events.jsonl");
  ASSERT_FALSE(rec.empty());
  EXPECT_LE(std::stoi(rec.at("recomputed_steps")), 1) << r.output;
  const auto got = losses_by_step(dir / "node/metrics.jsonl");
  ASSERT_EQ(got.size(), reference.size());
  const int resumed = std::stoi(rec.at("checkpoint_step"));
  for (const auto& [step, loss] : reference) {
    if (step <= resumed) {
      EXPECT_EQ(got.at(step), loss) << "step " << step;
    } else {
      const double a = std::stod(got.at(step)), b = std::stod(loss);
      EXPECT_LE(std::abs(a - b) / b, 1e-4) << "step " << step << " on DP 2";
    }
  }
  EXPECT_EQ(snapshot_folders(dir / "shm"), 0);
  EXPECT_TRUE(no_orphans(dir));
  fs::remove_all(dir);
}

// A memory folder too small for the snapshots (here a limit of 64 KiB): checkpoint.memory
// auto warns and trains with HDF5 checkpoints alone; on refuses to train (exit 2, naming the
// key).
TEST(SnapshotsMemory, TooLittleRoomWarnsOrRefusesWhenAskedFor) {
  const fs::path dir = scratch_dir("snapshots-small");
  auto r = run_command(launch(dir, "auto", " --parallel.pp 2 --checkpoint.memory_limit 64KiB", "600", 3));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: in-memory snapshots are off: they need"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("checkpoint.memory_limit allows 0.1 MiB"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("memory snapshots: every"), std::string::npos) << r.output;
  r = run_command(launch(dir, "on", " --parallel.pp 2 --checkpoint.memory on --checkpoint.memory_limit 64KiB", "600", 3));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("checkpoint.memory: on, but they need"), std::string::npos) << r.output;
  // Refused by every rank together, from the real sizes: the job ends with the usage code, not
  // as a crash the supervisor would restart.
  EXPECT_NE(r.output.find("supervisor: finished (exit code 2)"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("restart-scheduled"), std::string::npos) << r.output;
  EXPECT_TRUE(no_orphans(dir));
  fs::remove_all(dir);
}

// Replicas go to rank + ranks-per-node and each node's first rank scans for its node: 3 ranks
// at 2 per node cannot be laid out that way, and every rank refuses together (exit 2, the key
// named), without an abort.
TEST(SnapshotsMemory, RanksThatDoNotFillWholeNodesAreRefusedTogether) {
  const fs::path dir = scratch_dir("snapshots-blocks");
  const auto r = run_command(std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpirun "
                                         "--oversubscribe -np 3 ") +
                             DUET_BINARY + " train --parallel.pp 3 --parallel.schedule 1f1b --train.steps 2"
                             " --train.eval_batches 1 --checkpoint.memory on --launch.ranks_per_node 2 --run.dir " +
                             dir.string() + " --checkpoint.memory_dir " + (dir / "shm").string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("checkpoint.memory: on, but they need every node to hold a whole block of ranks, but 2 "
                          "ranks per node do not divide the 3 ranks"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("MPI_ABORT"), std::string::npos) << r.output;
  fs::remove_all(dir);
}

// A folder left by a run that died (no process holds its owner.lock) is reclaimed when a run
// starts; a live run's is not; the run's own folder is removed when it finishes.
TEST(SnapshotsMemory, DeadRunsAreReclaimedAndAFinishedRunCleansUp) {
  const fs::path dir = scratch_dir("snapshots-reclaim");
  const fs::path dead = dir / "shm/duet-0123456789abcdef";
  fs::create_directories(dead / "node0");
  { std::ofstream(dead / "owner.lock"); }
  { std::ofstream(dead / "node0/rank-00000.slot0.snap") << "left by a run that was killed"; }
  const auto r = run_command(launch(dir, "run", " --parallel.pp 2", "600", 3));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("memory snapshots: reclaimed " + dead.string()), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_EQ(snapshot_folders(dir / "shm"), 0);
  fs::remove_all(dir);
}

// A job that gives up (fault.max_restarts 0: at its first failure) saves its newest in-memory
// snapshot (step 6, at worst 5) as an HDF5 checkpoint when that is newer than the newest
// checkpoint (step 4) before the snapshots go; the next launch resumes from it, with the losses
// of an uninterrupted run, instead of training steps 5-6 again (or, with checkpoint.every 0,
// the default, everything).
TEST(SnapshotsMemory, AJobThatGivesUpKeepsItsNewestSnapshotAsACheckpoint) {
  const fs::path dir = scratch_dir("snapshots-keep");
  const std::string job = " --parallel.pp 2";
  auto r = run_command(launch(dir, "ref", job, "600", 8));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("saved the in-memory snapshot"), std::string::npos) << r.output;  // finished: nothing kept
  const auto reference = losses_by_step(dir / "ref/metrics.jsonl");
  ASSERT_EQ(reference.size(), 8u);
  r = run_command(launch(dir, "run",
                         job + " --fault.max_restarts 0 --runtime.fail_rank 1 --runtime.fail_step 7 --runtime.fail_signal 9",
                         "600", 8));
  ASSERT_EQ(r.exit_code, 4) << r.output;  // gave up
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("saved the in-memory snapshot of step (\\d+) as the checkpoint (\\S+) "
                                                        "\\(the newest was step 4\\)")))
      << r.output;
  const int saved = std::stoi(m[1]);
  EXPECT_GE(saved, 5);
  EXPECT_TRUE(fs::exists(fs::path(m[2].str()) / "COMMITTED")) << m[2];
  EXPECT_EQ(snapshot_folders(dir / "shm"), 0);
  EXPECT_NE(read_file(dir / "run/events.jsonl").find("\"kind\": \"snapshot-saved\""), std::string::npos);
  r = run_command(launch(dir, "run", job, "600", 8));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming from " + m[2].str() + " (step " + std::to_string(saved)), std::string::npos) << r.output;
  EXPECT_EQ(losses_by_step(dir / "run/metrics.jsonl"), reference);
  EXPECT_TRUE(no_orphans(dir));
  fs::remove_all(dir);
}
