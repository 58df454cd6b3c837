// io/run_dir and io/resume_policy: which run directory a job gets, and what a resume may change.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/resume_policy.h"
#include "io/run_dir.h"

namespace duet::io {
namespace {
namespace fs = std::filesystem;

struct RunDirs : ::testing::Test {
  fs::path root = fs::temp_directory_path() / ("duet-rundir-" + std::to_string(::getpid()) + "-" +
                                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  RunConfig cfg;
  void SetUp() override {
    fs::remove_all(root);
    cfg.run.dir = root.string();
    cfg.run.name = "exp";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  static std::string text(const fs::path& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
};

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

TEST(ResumePolicy, RulesOfTheIssue) {
  for (const char* k : {"model.layers", "model.moe.experts", "data.path", "data.val_fraction", "train.seq_len"})
    EXPECT_EQ(resume_rule(k), ResumeRule::must_match) << k;
  for (const char* k : {"train.lr", "train.min_lr", "train.warmup_steps", "train.weight_decay", "train.beta1",
                        "train.beta2", "train.eps", "train.grad_clip", "train.global_batch", "train.seed"})
    EXPECT_EQ(resume_rule(k), ResumeRule::allow_changes) << k;
  for (const char* k : {"parallel.pp", "parallel.schedule", "train.steps", "train.stop_at", "checkpoint.every",
                        "runtime.threads", "run.name", "run.id"})
    EXPECT_EQ(resume_rule(k), ResumeRule::free) << k;
}

TEST(ResumePolicy, RefusalNamesTheDifferingKeys) {
  RunConfig saved, now;
  now.train.seed = 7;
  now.train.lr = saved.train.lr * 33;
  now.train.global_batch = 32;
  now.train.seq_len = 64;
  now.parallel.pp = 2;  // free
  now.train.steps = 9;  // free
  const ResumeChanges c = compare_for_resume(saved, now);
  EXPECT_EQ(c.refused, (std::vector<std::string>{"train.seq_len: 128 -> 64"}));
  EXPECT_EQ(c.needs_allow.size(), 3u) << joined(c.needs_allow);
  try {
    check_resume(saved, now, "the checkpoint X");
    ADD_FAILURE() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot resume from the checkpoint X"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("train.seq_len: 128 -> 64"), std::string::npos) << e.what();
  }
  now.train.seq_len = saved.train.seq_len;
  try {
    check_resume(saved, now, "X");
    ADD_FAILURE() << "accepted";
  } catch (const ConfigError& e) {
    for (const char* k : {"train.seed: 1234 -> 7", "train.lr:", "train.global_batch: 16 -> 32", "checkpoint.allow_changes"})
      EXPECT_NE(std::string(e.what()).find(k), std::string::npos) << k << "\n" << e.what();
  }
  now.checkpoint.allow_changes = true;
  EXPECT_EQ(check_resume(saved, now, "X").size(), 3u);
  EXPECT_TRUE(check_resume(saved, saved, "X").empty());
}

TEST_F(RunDirs, FreshRunGetsAnIdInConfigYaml) {
  const RunClaim c = claim_run_dir(cfg);
  EXPECT_EQ(fs::path(c.dir), root / "exp");
  EXPECT_EQ(c.id.size(), 16u);
  EXPECT_FALSE(c.continued);
  EXPECT_EQ(load_config((root / "exp/config.yaml").string()).run.id, c.id);
  EXPECT_TRUE(fs::exists(root / "exp/run.lock"));
  cfg.run.name = "given";
  cfg.run.id = "feedfacecafebeef";  // adopted, as from `duet submit`
  EXPECT_EQ(claim_run_dir(cfg).id, "feedfacecafebeef");
}

TEST_F(RunDirs, SecondJobOnTheSameDirectoryIsRefused) {
  const RunClaim first = claim_run_dir(cfg);
  EXPECT_THROW(claim_run_dir(cfg), RunLockHeld);
}

TEST_F(RunDirs, StoppedRunIsContinuedUnderItsId) {
  std::string id;
  {
    const RunClaim c = claim_run_dir(cfg);
    id = c.id;
  }
  cfg.parallel.pp = 2;  // free to change
  const RunClaim again = claim_run_dir(cfg);
  EXPECT_EQ(again.dir, (root / "exp").string());
  EXPECT_EQ(again.id, id);
  EXPECT_TRUE(again.continued);
  EXPECT_EQ(load_config((root / "exp/config.yaml").string()).parallel.pp, 2);
}

TEST_F(RunDirs, ContinuingWithAnotherSeedIsRefusedAndWritesNothing) {
  { const RunClaim c = claim_run_dir(cfg); }
  const std::string before = text(root / "exp/config.yaml");
  cfg.train.seed = 7;
  try {
    claim_run_dir(cfg);
    ADD_FAILURE() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.seed: 1234 -> 7"), std::string::npos) << e.what();
  }
  EXPECT_EQ(text(root / "exp/config.yaml"), before);
  EXPECT_FALSE(fs::exists(root / "exp/run.lock"));
}

TEST_F(RunDirs, FinishedRunIsNeverWrittenAgain) {
  {
    const RunClaim c = claim_run_dir(cfg);
    RunConfig done = cfg;
    done.run.id = c.id;
    mark_run_finished(c.dir, done, cfg.train.steps);
  }
  const std::string before = text(root / "exp/config.yaml");
  cfg.train.seed = 7;  // another run: no resume check against a finished one
  const RunClaim second = claim_run_dir(cfg);
  EXPECT_EQ(fs::path(second.dir), root / "exp-2");
  EXPECT_NE(joined(second.notes).find("holds a finished run"), std::string::npos) << joined(second.notes);
  EXPECT_NE(joined(second.notes).find("this run starts in " + (root / "exp-2").string()), std::string::npos);
  EXPECT_EQ(text(root / "exp/config.yaml"), before);
  EXPECT_FALSE(fs::exists(root / "exp/run.lock"));
}

// Its own id names the finished run (a Slurm job requeued after its last step): no new
// directory, nothing written, no lock; the claim says the run has finished.
TEST_F(RunDirs, AFinishedRunAskedForByItsIdIsReportedNotStartedAgain) {
  std::string id;
  {
    const RunClaim c = claim_run_dir(cfg);
    id = c.id;
    RunConfig done = cfg;
    done.run.id = c.id;
    mark_run_finished(c.dir, done, cfg.train.steps);
  }
  const std::string before = text(root / "exp/config.yaml");
  cfg.run.id = id;
  const RunClaim again = claim_run_dir(cfg);
  EXPECT_TRUE(again.finished);
  EXPECT_FALSE(again.continued);
  EXPECT_EQ(fs::path(again.dir), root / "exp");
  EXPECT_EQ(again.id, id);
  EXPECT_EQ(again.lock, nullptr);
  EXPECT_NE(joined(again.notes).find("run " + id + " in " + (root / "exp").string() + " has finished (duet run " + id +
                                     " finished: step "),
            std::string::npos)
      << joined(again.notes);
  EXPECT_FALSE(fs::exists(root / "exp-2"));
  EXPECT_EQ(text(root / "exp/config.yaml"), before);
  EXPECT_FALSE(fs::exists(root / "exp/run.lock"));
  RunConfig fewer = cfg;  // a config asking for less than the run did: it is done too
  fewer.train.steps = cfg.train.steps - 1;
  EXPECT_TRUE(claim_run_dir(fewer).finished);
  // Asked to train on (more steps), or afresh, it starts a new run beside it, as before; so
  // does another id.
  RunConfig more = cfg;
  more.train.steps = cfg.train.steps + 1;
  {
    const RunClaim longer = claim_run_dir(more);
    EXPECT_FALSE(longer.finished);
    EXPECT_EQ(fs::path(longer.dir), root / "exp-2");
  }
  RunConfig afresh = cfg;
  afresh.checkpoint.resume = false;
  {
    const RunClaim c = claim_run_dir(afresh);
    EXPECT_FALSE(c.finished);
    EXPECT_EQ(fs::path(c.dir), root / "exp-3");
  }
  cfg.run.id = "0123456789abcdef";
  const RunClaim other = claim_run_dir(cfg);
  EXPECT_FALSE(other.finished);
  EXPECT_EQ(fs::path(other.dir), root / "exp-4");
}

TEST_F(RunDirs, ResumeFalseOrAnotherIdStartsANewDirectory) {
  std::string id;
  { id = claim_run_dir(cfg).id; }
  cfg.checkpoint.resume = false;
  { EXPECT_EQ(fs::path(claim_run_dir(cfg).dir), root / "exp-2"); }
  cfg.checkpoint.resume = true;
  cfg.run.id = "0123456789abcdef";
  const RunClaim other = claim_run_dir(cfg);
  EXPECT_EQ(fs::path(other.dir), root / "exp-3");  // exp-2 holds another id too
  EXPECT_EQ(other.id, "0123456789abcdef");
}

TEST_F(RunDirs, MetricsHeaderNamesTheRun) {
  cfg.run.id = "00aa";
  const std::string h = run_header(cfg, 4).str();
  EXPECT_EQ(h.rfind(R"({"event":"run","run_id":"00aa","run_name":"exp","start_step":4,)", 0), 0u) << h;
}

}  // namespace
}  // namespace duet::io
