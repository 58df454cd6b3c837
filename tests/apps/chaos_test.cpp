// Chaos: one supervised run, 8 ranks on 2 logical nodes of 4, through five faults chosen by a
// seed and triggered on events of the run (a step reached, a save or a commit in progress) —
// a rank killed, a rank stopped (a hang), a kill while saving, the newest checkpoint damaged,
// a whole node lost — and it finishes by itself: every step's loss equal to an uninterrupted
// run (bit-identical while the layout is PP 4 × DP 2, within 1e-4 relative once the lost node
// left DP 1), every fault named in events.jsonl, no process left behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <regex>

#include "tests/apps/cli_util.h"

using namespace duet::test;
namespace fs = std::filesystem;

namespace {

struct Plan {
  std::string text;       // runtime.fail_plan
  int steps = 0;          // train.steps
  int last_dp2_step = 0;  // steps up to here ran on the full layout in their final attempt
  std::vector<std::string> kinds;
};

// Faults in a seeded order (the node loss last: the layout shrinks after it), each at a step
// after the attempt's resume point such that the attempt commits a checkpoint first (so the
// restart limit never triggers). Checkpoints every 2 steps; `resume` follows what each fault
// leaves: a kill at step s resumes from the last even step before s, a kill while saving
// step s from s - 2, a damaged newest checkpoint c from c - 2.
Plan make_plan(unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::string> kinds = {"kill", "stop", "killsave", "corrupt"};
  std::shuffle(kinds.begin(), kinds.end(), rng);
  kinds.push_back("nodestop");
  Plan p;
  p.kinds = kinds;
  int resume = 0;
  for (size_t i = 0; i < kinds.size(); ++i) {
    const std::string& k = kinds[i];
    const int rank = (int)(rng() % 8);
    int step = 0, next = 0;
    if (k == "killsave") step = resume + 4, next = step - 2;
    else if (k == "corrupt") step = resume + 5, next = resume + 2;  // newest is resume + 4
    else step = resume + 3 + (int)(rng() % 2), next = (step - 1) / 2 * 2;
    p.text += (p.text.empty() ? "" : ",") + std::to_string(i + 1) + ":" + k + ":" + std::to_string(rank) + ":" +
              std::to_string(step);
    resume = next;
  }
  p.last_dp2_step = resume;  // the node loss is last: from here on DP 1
  p.steps = resume + 4;
  return p;
}

}  // namespace

// HDF5 checkpoints alone (checkpoint.memory off): the resume points above are theirs.
TEST(Chaos, FiveFaultsAndTheRunFinishesWithTheSameLosses) {
  const unsigned seed = 20261202;
  const Plan plan = make_plan(seed);
  const fs::path dir = scratch_dir("chaos");
  const std::string common = std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 600 ") +
                             DUET_BINARY + " launch --train.steps " + std::to_string(plan.steps) +
                             " --train.log_every 100 --train.eval_batches 1 --checkpoint.every 2"
                             " --checkpoint.async false --fault.backoff_s 0 --checkpoint.memory off --run.dir " + dir.string();
  auto r = run_command(common + " --run.name ref");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ref = losses_by_step(dir / "ref/metrics.jsonl");
  ASSERT_EQ((int)ref.size(), plan.steps);

  // A stopped rank among live ones on its node is a hang (8 s); a node all of whose ranks are
  // silent is lost (2 s). Single-rank failures never exclude a node here (window 0): only the
  // node loss changes the layout.
  r = run_command(common + " --run.name chaos --launch.ranks_per_node 4 --fault.hang_timeout_s 8"
                           " --fault.host_timeout_s 2 --fault.node_window_s 0 --runtime.fail_plan " + plan.text);
  ASSERT_EQ(r.exit_code, 0) << "plan " << plan.text << "\n" << r.output;
  const auto kinds = event_kinds(dir / "chaos/events.jsonl");
  const std::string events = read_file(dir / "chaos/events.jsonl");
  EXPECT_EQ(count(kinds, "fault-injected"), 4 + 4) << events;  // the node loss strikes its 4 ranks
  EXPECT_EQ(count(kinds, "rank-died"), 3) << events;           // kill, killsave, corrupt
  EXPECT_EQ(count(kinds, "hang"), 1) << events;
  EXPECT_EQ(count(kinds, "host-lost"), 1) << events;
  EXPECT_EQ(count(kinds, "node-excluded"), 1) << events;
  EXPECT_EQ(count(kinds, "recovered"), 5) << events;
  EXPECT_EQ(count(kinds, "launched"), 6) << events;
  EXPECT_NE(r.output.find("damaged"), std::string::npos) << r.output;
  EXPECT_NE(events.find("\"layout\": \"pp 4 x dp 1 x ep 1, dualpipe on node0\""), std::string::npos) << events;

  const auto got = losses_by_step(dir / "chaos/metrics.jsonl");
  ASSERT_EQ(got.size(), ref.size()) << plan.text;
  for (const auto& [step, loss] : ref) {
    if (step <= plan.last_dp2_step) {
      EXPECT_EQ(got.at(step), loss) << "step " << step << " (plan " << plan.text << ")";
    } else {
      const double a = std::stod(got.at(step)), b = std::stod(loss);
      EXPECT_LE(std::abs(a - b) / b, 1e-4) << "step " << step << " after the shrink (plan " << plan.text << ")";
    }
  }
  EXPECT_TRUE(no_orphans(dir));
  fs::remove_all(dir);
}

// The same five kinds of fault with in-memory snapshots on (every step, in a private folder):
// each restart recomputes at most one step — a damaged HDF5 checkpoint costs nothing more — and
// every loss is the uninterrupted run's (bit-identical up to
// the node loss, within 1e-4 after it, when the lost node's ranks come from their replicas).
// Faults are 3 or 4 steps apart: each attempt trains at least two steps past its resume point.
TEST(Chaos, FiveFaultsWithInMemorySnapshotsLoseAtMostOneStepEach) {
  std::mt19937 rng(20261203);
  std::vector<std::string> kinds = {"kill", "stop", "killsave", "corrupt"};
  std::shuffle(kinds.begin(), kinds.end(), rng);
  kinds.push_back("nodestop");
  std::string plan;
  int step = 0;
  for (size_t i = 0; i < kinds.size(); ++i) {
    step += kinds[i] == "killsave" && (step + 3) % 2 ? 4 : 3;  // a kill while saving needs a save step (even)
    plan += (plan.empty() ? "" : ",") + std::to_string(i + 1) + ":" + kinds[i] + ":" + std::to_string(rng() % 8) + ":" +
            std::to_string(step);
  }
  const int node_loss = step, steps = step + 3;
  const fs::path dir = scratch_dir("chaos-memory");
  const std::string common = std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 600 ") +
                             DUET_BINARY + " launch --train.steps " + std::to_string(steps) +
                             " --train.log_every 100 --train.eval_batches 1 --checkpoint.every 2"
                             " --checkpoint.async false --fault.backoff_s 0 --checkpoint.memory on --checkpoint.memory_dir " +
                             (dir / "shm").string() + " --run.dir " + dir.string();
  auto r = run_command(common + " --run.name ref");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ref = losses_by_step(dir / "ref/metrics.jsonl");
  r = run_command(common + " --run.name chaos --launch.ranks_per_node 4 --fault.hang_timeout_s 8"
                           " --fault.host_timeout_s 2 --fault.node_window_s 0 --runtime.fail_plan " + plan);
  ASSERT_EQ(r.exit_code, 0) << "plan " << plan << "\n" << r.output;
  const std::string events = read_file(dir / "chaos/events.jsonl");
  const auto kinds_seen = event_kinds(dir / "chaos/events.jsonl");
  EXPECT_EQ(count(kinds_seen, "recovered"), 5) << events;
  EXPECT_EQ(count(kinds_seen, "node-excluded"), 1) << events;
  // Every recovery: at most one step recomputed — from a snapshot, or from the HDF5 checkpoint
  // when that is as new (a rank stopped or killed before its snapshot of a checkpointed step
  // landed); a damaged newest checkpoint costs nothing more.
  const std::regex rec_re("\\{[^\n]*\"kind\": \"recovered\"[^\n]*\\}");
  int recoveries = 0, from_memory = 0;
  for (auto it = std::sregex_iterator(events.begin(), events.end(), rec_re); it != std::sregex_iterator(); ++it) {
    const std::string rec = (*it)[0];
    std::smatch m;
    ASSERT_TRUE(std::regex_search(rec, m, std::regex("\"recomputed_steps\": ([0-9]+)"))) << rec;
    EXPECT_LE(std::stoi(m[1]), 1) << rec;
    from_memory += rec.find("\"checkpoint\": \"memory step") != std::string::npos;
    ++recoveries;
  }
  EXPECT_EQ(recoveries, 5);
  EXPECT_GE(from_memory, 1) << events;
  const auto got = losses_by_step(dir / "chaos/metrics.jsonl");
  ASSERT_EQ(got.size(), ref.size()) << plan;
  for (const auto& [s, loss] : ref) {
    if (s < node_loss - 1) {
      EXPECT_EQ(got.at(s), loss) << "step " << s << " (plan " << plan << ")";
    } else {
      const double a = std::stod(got.at(s)), b = std::stod(loss);
      EXPECT_LE(std::abs(a - b) / b, 1e-4) << "step " << s << " (plan " << plan << ")";
    }
  }
  EXPECT_TRUE(no_orphans(dir));
  EXPECT_FALSE(fs::exists(dir / "shm") && !fs::is_empty(dir / "shm"));  // removed when the run finished
  fs::remove_all(dir);
}

// A lost node that comes back (its line removed from runs/<name>/excluded-nodes, as a person
// re-enabling it would) is used again at the next restart: the layout grows back to DP 2.
TEST(Chaos, AnExcludedNodeThatComesBackIsUsedAgain) {
  const fs::path dir = scratch_dir("regrow");
  const std::string common = std::string("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 600 ") +
                             DUET_BINARY + " launch --train.steps 12 --train.log_every 100 --train.eval_batches 1"
                             " --checkpoint.every 2 --checkpoint.async false --fault.backoff_s 0 --run.dir " + dir.string();
  auto r = run_command(common + " --run.name ref");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path events = dir / "grow/events.jsonl", excluded = dir / "grow/excluded-nodes";
  // Node 1 is lost at step 3; once attempt 2 has started without it, the node comes back (the
  // file emptied); attempt 2 (on node 0 alone) is killed at step 7, and attempt 3 runs on both
  // nodes again.
  const std::string job = common + " --run.name grow --launch.ranks_per_node 4 --fault.host_timeout_s 2"
                                   " --fault.node_window_s 0 --runtime.fail_plan 1:nodestop:5:3,2:kill:1:7";
  const std::string script = job + " > " + (dir / "grow.log").string() + " 2>&1 & pid=$!; for i in $(seq 6000); do " +
                             "grep -q \"launched.*attempt.: 2\" " + events.string() + " 2>/dev/null && break; kill -0 $pid || break; " +
                             "sleep 0.05; done; : > " + excluded.string() + "; wait $pid; echo \"exit=$?\"";
  r = run_command("bash -c '" + script + "'");
  EXPECT_NE(r.output.find("exit=0"), std::string::npos) << r.output << read_file(dir / "grow.log");
  const std::string ev = read_file(events);
  const auto kinds = event_kinds(events);
  EXPECT_EQ(count(kinds, "node-excluded"), 1) << ev;
  EXPECT_EQ(count(kinds, "node-restored"), 1) << ev;
  EXPECT_EQ(count(kinds, "launched"), 3) << ev;
  EXPECT_NE(ev.find("\"attempt\": 2, \"ranks\": [], \"cause\": \"attempt 2\", \"layout\": \"pp 4 x dp 1 x ep 1, dualpipe on node0\""),
            std::string::npos) << ev;
  EXPECT_NE(ev.find("\"attempt\": 3, \"ranks\": [], \"cause\": \"attempt 3\", \"layout\": \"pp 4 x dp 2 x ep 2, dualpipe on node0,node1\""),
            std::string::npos) << ev;
  const auto ref = losses_by_step(dir / "ref/metrics.jsonl"), got = losses_by_step(dir / "grow/metrics.jsonl");
  ASSERT_EQ(got.size(), ref.size());
  for (const auto& [step, loss] : ref) {
    const double a = std::stod(got.at(step)), b = std::stod(loss);
    EXPECT_LE(std::abs(a - b) / b, 1e-4) << "step " << step;
  }
  EXPECT_TRUE(no_orphans(dir));
  fs::remove_all(dir);
}
