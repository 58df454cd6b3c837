// checkpoint/ commit protocol: a crash at any point leaves the previous checkpoint loadable
// and never a half-written one that loads as good; a failed rank commits nothing; rotation
// keeps `keep` good checkpoints and never the only good one.
#include <gtest/gtest.h>

#include <system_error>

#include "checkpoint/checkpoint.h"
#include "tests/checkpoint/test_util.h"

namespace duet::ckpt {
namespace {
using namespace duet::ckpt::test;

VerifyOptions full_check() { return test::full_check("model-A"); }

std::vector<std::int64_t> steps_on_disk(const std::string& dir) {
  std::vector<std::int64_t> out;
  for (const auto& e : list_checkpoints(dir)) out.push_back(e.step);
  return out;
}

struct CrashCase {
  CommitStage stage;
  std::int64_t resumes_at;  // the step a restart resumes from
};

class CommitCrash : public ::testing::TestWithParam<CrashCase> {};

TEST_P(CommitCrash, RestartResumesFromACompleteCheckpoint) {
  ScratchDir dir("crash");
  const auto old_model = test_model(1), new_model = test_model(2);
  save_sequential(dir.str(), 100, old_model, test_layout(4));
  SaveOptions opt;
  opt.crash_after = GetParam().stage;
  EXPECT_THROW(save_sequential(dir.str(), 200, new_model, test_layout(4), opt), ckpt::CheckpointCrash);

  const ResumePoint rp = find_resumable_checkpoint(dir.str(), full_check());
  ASSERT_TRUE(rp.found());
  EXPECT_EQ(rp.step, GetParam().resumes_at);
  EXPECT_TRUE(rp.rejected.empty()) << rp.rejected[0];
  CheckpointReader reader(rp.path, "model-A");
  const auto& expect = rp.step == 100 ? old_model : new_model;
  for (const GlobalTensor& t : expect) EXPECT_EQ(reader.read(t.name), t.values) << t.name;

  // The restarted job saves step 200 again: leftovers of the crash do not get in the way.
  std::vector<std::string> log;
  opt = {};
  opt.log = [&](std::string_view l) { log.emplace_back(l); };
  const std::string again = save_sequential(dir.str(), 200, new_model, test_layout(4), opt);
  EXPECT_TRUE(verify_checkpoint(again, full_check()).ok());
  EXPECT_EQ(fs::read_symlink(dir.path / "latest"), "step-000200");
  EXPECT_EQ(steps_on_disk(dir.str()), (std::vector<std::int64_t>{100, 200}));
  EXPECT_FALSE(fs::exists(dir.path / "step-000200.staging"));
}

// Before the staging directory is renamed, a crash leaves nothing that can load; after it,
// the new checkpoint is complete (every file fsync'd, COMMITTED matching) and is the one to
// resume from even though `latest` may still name the old one.
INSTANTIATE_TEST_SUITE_P(EveryStage, CommitCrash,
                         ::testing::Values(CrashCase{CommitStage::shards_checked, 100},
                                           CrashCase{CommitStage::index_written, 100},
                                           CrashCase{CommitStage::manifest_written, 100},
                                           CrashCase{CommitStage::committed_marker, 100},
                                           CrashCase{CommitStage::renamed, 200},
                                           CrashCase{CommitStage::latest_updated, 200}));

TEST(CheckpointCommit, CrashBeforeLatestLeavesLatestOnTheOldOne) {
  ScratchDir dir("latest");
  save_sequential(dir.str(), 100, test_model(), test_layout(2));
  SaveOptions opt;
  opt.crash_after = CommitStage::renamed;
  EXPECT_THROW(save_sequential(dir.str(), 200, test_model(), test_layout(2), opt), ckpt::CheckpointCrash);
  EXPECT_EQ(fs::read_symlink(dir.path / "latest"), "step-000100");
}

TEST(CheckpointCommit, CrashWhileRanksWriteLeavesOnlyAStagingDirectory) {
  ScratchDir dir("midwrite");
  save_sequential(dir.str(), 100, test_model(), test_layout(4));
  // Two of four ranks wrote step 200, then the job died.
  for (int r = 0; r < 2; ++r) {
    RankSlices rs = rank_slices(test_model(), r, 4);
    write_shard({dir.str(), 200, r, test_layout(4), rs.slices, rs.state});
  }
  EXPECT_EQ(steps_on_disk(dir.str()), (std::vector<std::int64_t>{100}));
  EXPECT_EQ(find_resumable_checkpoint(dir.str(), full_check()).step, 100);
  // Committing it anyway names the rank that did not write.
  try {
    commit_checkpoint(dir.str(), 200, test_layout(4));
    FAIL() << "committed a checkpoint with two shards missing";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 2 did not finish its shard"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir.path / "step-000200.staging")) << "a failed commit cleans up";
}

TEST(CheckpointCommit, RankThatFailsToWriteMeansNoRankCommits) {
  ScratchDir dir("rankfail");
  save_threaded(dir.str(), 100, test_model(), test_layout(4));
  SaveOptions opt;
  opt.before_shard_close = [](int rank, std::int64_t) {
    if (rank == 2) throw std::system_error(ENOSPC, std::generic_category(), "injected");
  };
  const auto results = save_threaded(dir.str(), 200, test_model(), test_layout(4), opt);
  for (int r = 0; r < 4; ++r) {
    EXPECT_FALSE(results[r].committed) << "rank " << r;
    EXPECT_FALSE(results[r].error.empty());
  }
  EXPECT_NE(results[2].error.find("rank 2: cannot write shard"), std::string::npos) << results[2].error;
  EXPECT_NE(results[2].error.find("No space left on device"), std::string::npos) << results[2].error;
  EXPECT_NE(results[0].error.find("another rank failed to write its shard"), std::string::npos) << results[0].error;
  EXPECT_EQ(steps_on_disk(dir.str()), (std::vector<std::int64_t>{100}));
  EXPECT_FALSE(fs::exists(dir.path / "step-000200.staging"));
  EXPECT_EQ(fs::read_symlink(dir.path / "latest"), "step-000100");
  EXPECT_TRUE(verify_checkpoint((dir.path / "step-000100").string(), full_check()).ok());
}

TEST(CheckpointCommit, RanksDisagreeingOnTheLayoutAreRefused) {
  ScratchDir dir("layout");
  for (int r = 0; r < 2; ++r) {
    RankSlices rs = rank_slices(test_model(), r, 2);
    CheckpointLayout l = test_layout(2);
    if (r == 1) l.schedule = "1f1b";
    write_shard({dir.str(), 5, r, l, rs.slices, rs.state});
  }
  try {
    commit_checkpoint(dir.str(), 5, test_layout(2));
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("shard-00001.json' was written with world 2 (pp 2, dp 1, ep 1, 1f1b)"),
              std::string::npos)
        << e.what();
  }
}

TEST(CheckpointCommit, SlicesThatLeaveATensorUncoveredAreRefused) {
  ScratchDir dir("coverage");
  // Rank 1 forgets its slice of "embed".
  for (int r = 0; r < 2; ++r) {
    RankSlices rs = rank_slices(test_model(), r, 2);
    if (r == 1) rs.slices.erase(rs.slices.begin());
    write_shard({dir.str(), 5, r, test_layout(2), rs.slices, rs.state});
  }
  try {
    commit_checkpoint(dir.str(), 5, test_layout(2));
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'embed' [16, 8]: the shards hold 64 of its 128 elements"),
              std::string::npos)
        << e.what();
  }
}

TEST(CheckpointCommit, RotationKeepsTheNewestKeep) {
  ScratchDir dir("keep");
  SaveOptions opt;
  opt.keep = 2;
  std::vector<std::string> log;
  opt.log = [&](std::string_view l) { log.emplace_back(l); };
  for (std::int64_t step : {10, 20, 30, 40}) save_sequential(dir.str(), step, test_model(), test_layout(2), opt);
  EXPECT_EQ(steps_on_disk(dir.str()), (std::vector<std::int64_t>{30, 40}));
  EXPECT_TRUE(std::any_of(log.begin(), log.end(), [](const std::string& l) {
    return l.find("removed") != std::string::npos && l.find("step-000010") != std::string::npos;
  }));
}

TEST(CheckpointCommit, RotationNeverDeletesTheOnlyGoodCheckpoint) {
  ScratchDir dir("onlygood");
  for (std::int64_t step : {10, 20, 30}) save_sequential(dir.str(), step, test_model(), test_layout(2));
  // 20 and 30 are damaged (a shard truncated, COMMITTED lost): 10 is the only good one.
  const fs::path s20 = dir.path / "step-000020" / "shard-00001.h5";
  fs::resize_file(s20, fs::file_size(s20) - 100);
  fs::remove(dir.path / "step-000030" / "COMMITTED");
  rotate_checkpoints(dir.str(), 1);
  EXPECT_EQ(steps_on_disk(dir.str()), (std::vector<std::int64_t>{10, 20, 30}));
  EXPECT_EQ(find_resumable_checkpoint(dir.str()).step, 10);
  // With a new good checkpoint, the older ones go (keep = 1).
  SaveOptions opt;
  opt.keep = 1;
  save_sequential(dir.str(), 40, test_model(), test_layout(2), opt);
  EXPECT_EQ(steps_on_disk(dir.str()), (std::vector<std::int64_t>{40}));
}

TEST(CheckpointCommit, SavingAStepThatExistsReplacesIt) {
  // Resumed from 100 because 200 was damaged; the job reaches 200 again and saves it.
  ScratchDir dir("resave");
  save_sequential(dir.str(), 100, test_model(1), test_layout(2));
  const std::string p200 = save_sequential(dir.str(), 200, test_model(1), test_layout(2));
  fs::remove(fs::path(p200) / "shard-00001.h5");
  const auto fresh = test_model(3);
  save_sequential(dir.str(), 200, fresh, test_layout(4));
  CheckpointReader reader(p200, "model-A");
  EXPECT_EQ(reader.manifest().layout.world, 4);
  for (const GlobalTensor& t : fresh) EXPECT_EQ(reader.read(t.name), t.values);
  EXPECT_TRUE(verify_checkpoint(p200, full_check()).ok());
  EXPECT_EQ(steps_on_disk(dir.str()), (std::vector<std::int64_t>{100, 200}));
}

TEST(CheckpointCommit, StaleShardsOfALargerWorldAreNotCommitted) {
  // An attempt at step 50 with 4 ranks died; the retry runs with 2.
  ScratchDir dir("shrink");
  for (int r = 0; r < 4; ++r) {
    RankSlices rs = rank_slices(test_model(), r, 4);
    write_shard({dir.str(), 50, r, test_layout(4), rs.slices, rs.state});
  }
  const std::string path = save_sequential(dir.str(), 50, test_model(), test_layout(2));
  EXPECT_FALSE(fs::exists(fs::path(path) / "shard-00002.h5"));
  EXPECT_FALSE(fs::exists(fs::path(path) / "shard-00003.h5"));
  EXPECT_TRUE(verify_checkpoint(path, full_check()).ok());
}

TEST(CheckpointCommit, ListIgnoresStagingAndOtherNames) {
  ScratchDir dir("list");
  save_sequential(dir.str(), 7, test_model(), test_layout(1));
  fs::create_directories(dir.path / "step-000009.staging");
  fs::create_directories(dir.path / "step-x");
  fs::create_directories(dir.path / "step-000008");  // no COMMITTED
  const auto all = list_checkpoints(dir.str());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].step, 7);
  EXPECT_TRUE(all[0].committed);
  EXPECT_EQ(all[1].step, 8);
  EXPECT_FALSE(all[1].committed);
  EXPECT_EQ(find_resumable_checkpoint(dir.str()).step, 7);
  EXPECT_TRUE(list_checkpoints((dir.path / "nope").string()).empty());
}

}  // namespace
}  // namespace duet::ckpt
