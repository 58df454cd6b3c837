// Lineages sharing a checkpoint folder: rotation, resume and step-name collisions keep to the
// run's own checkpoints; another run's are never deleted, replaced or loaded.
#include <gtest/gtest.h>

#include "checkpoint/checkpoint.h"
#include "tests/checkpoint/test_util.h"

namespace duet::ckpt {
namespace {
using namespace duet::ckpt::test;

CheckpointLayout of_run(const std::string& lineage) {
  CheckpointLayout l = test_layout(2);
  l.lineage = lineage;
  return l;
}

std::vector<std::string> names_on_disk(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : list_checkpoints(dir)) out.push_back(fs::path(e.path).filename().string());
  return out;
}

TEST(CheckpointLineage, ManifestRecordsTheLineage) {
  ScratchDir dir("lineage-manifest");
  const std::string p = save_sequential(dir.str(), 3, test_model(), of_run("aaaa"));
  EXPECT_EQ(checkpoint_lineage(p), "aaaa");
  EXPECT_EQ(CheckpointReader(p).manifest().layout.lineage, "aaaa");
  const std::string q = save_sequential(dir.str(), 4, test_model(), test_layout(2));  // none recorded
  EXPECT_EQ(checkpoint_lineage(q), "");
  EXPECT_EQ(checkpoint_lineage((dir.path / "nope").string()), std::nullopt);
}

// Issue 11, defect 1: an older run's step-2 and step-4 in the folder; a new run saving every
// step with keep 2 must not lose its own step 1, must not replace the old step 2, and must
// resume from its own newest checkpoint, not the old run's step 4.
TEST(CheckpointLineage, AnotherRunsCheckpointsAreNeverTouched) {
  ScratchDir dir("lineage-mix");
  const auto old_model = test_model(1), new_model = test_model(2);
  SaveOptions keep2;
  keep2.keep = 2;
  for (std::int64_t step : {2, 4}) save_sequential(dir.str(), step, old_model, of_run("old"), keep2);
  const std::string old2 = fs::read_symlink(dir.path / "latest").string();
  std::vector<std::string> log;
  keep2.log = [&](std::string_view l) { log.emplace_back(l); };
  save_sequential(dir.str(), 1, new_model, of_run("new"), keep2);
  EXPECT_TRUE(fs::exists(dir.path / "step-000001")) << "the new run's only checkpoint was rotated away";
  const std::string p2 = save_sequential(dir.str(), 2, new_model, of_run("new"), keep2);
  EXPECT_EQ(fs::path(p2).filename(), "step-000002.new");
  EXPECT_EQ(checkpoint_lineage((dir.path / "step-000002").string()), "old");
  save_sequential(dir.str(), 3, new_model, of_run("new"), keep2);
  EXPECT_EQ(names_on_disk(dir.str()),
            (std::vector<std::string>{"step-000002", "step-000002.new", "step-000003", "step-000004"}));
  EXPECT_EQ(fs::read_symlink(dir.path / "latest"), "step-000003");

  VerifyOptions mine = full_check("model-A");
  mine.lineage = "new";
  const ResumePoint rp = find_resumable_checkpoint(dir.str(), mine);
  EXPECT_EQ(rp.step, 3);
  EXPECT_EQ(rp.foreign, (std::vector<std::string>{"step-000004 (run old)", "step-000002 (run old)"}));
  CheckpointReader reader(rp.path, "model-A");
  for (const GlobalTensor& t : new_model) EXPECT_EQ(reader.read(t.name), t.values) << t.name;
  // The old run still resumes from its own step 4, which verifies.
  mine.lineage = "old";
  EXPECT_EQ(find_resumable_checkpoint(dir.str(), mine).step, 4);
  // The new run saving step 2 again replaces its own step-000002.new, not the old run's.
  save_sequential(dir.str(), 2, new_model, of_run("new"), keep2);  // same step again: replaces its own
  EXPECT_EQ(checkpoint_lineage((dir.path / "step-000002").string()), "old");
  EXPECT_EQ(checkpoint_lineage((dir.path / "step-000002.new").string()), "new");
}

TEST(CheckpointLineage, ListAcceptsLineageSuffixesOnly) {
  ScratchDir dir("lineage-list");
  save_sequential(dir.str(), 5, test_model(), of_run("a"));
  save_sequential(dir.str(), 5, test_model(), of_run("b"));
  fs::create_directories(dir.path / "step-000006.b.staging");
  fs::create_directories(dir.path / "step-000006.staging");
  fs::create_directories(dir.path / "step-000007.");
  EXPECT_EQ(names_on_disk(dir.str()), (std::vector<std::string>{"step-000005", "step-000005.b"}));
}

// A run resumes at the step its checkpoint's name says: a copy or rename whose name disagrees
// with its manifest is refused, the name with a run's suffix (step-N.<id>) as well as the plain
// one. (step-000009.b holding step 5 was loaded as step 9: training went on from step 10 with
// step 5's weights and optimizer.)
TEST(CheckpointLineage, ANameThatDisagreesWithItsStepIsRefused) {
  ScratchDir dir("lineage-renamed");
  save_sequential(dir.str(), 5, test_model(), of_run("a"));
  const std::string p5b = save_sequential(dir.str(), 5, test_model(), of_run("b"));
  ASSERT_EQ(fs::path(p5b).filename(), "step-000005.b");
  EXPECT_NO_THROW(CheckpointReader{p5b});
  fs::copy(p5b, dir.path / "step-000009.b", fs::copy_options::recursive);
  fs::copy(dir.path / "step-000005", dir.path / "step-000008", fs::copy_options::recursive);
  for (const char* renamed : {"step-000009.b", "step-000008"}) {
    try {
      CheckpointReader reader((dir.path / renamed).string());
      ADD_FAILURE() << renamed << " was loaded";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("holds step 5 (renamed by hand?)"), std::string::npos) << e.what();
    }
  }
  VerifyOptions mine = full_check();
  mine.lineage = "b";
  const ResumePoint rp = find_resumable_checkpoint(dir.str(), mine);
  EXPECT_EQ(rp.step, 5) << rp.path;
  EXPECT_EQ(fs::path(rp.path).filename(), "step-000005.b");
}

// Two runs sharing a checkpoint folder take their attempt generations from fences of their
// own (each in its run directory), so both are generation 1 at first. Their saves of the same
// step staged in one folder, step-N.g1.staging, writing the same shard paths; and each commit
// removed every staging folder but its own, the other run's save in progress included. Now
// each stages under its lineage, and a commit removes only its own run's leftovers of its
// generation or an older one.
TEST(CheckpointLineage, RunsSharingAFolderStageApartAndRemoveOnlyTheirOwnLeftovers) {
  ScratchDir dir("lineage-staging");
  const auto model_a = test_model(1), model_b = test_model(2);
  SaveOptions gen1;
  gen1.fence.generation = 1;  // no fence file: the generation names the staging folder only
  // Both runs write every shard of step 4 before either commits.
  for (const auto& [lineage, model] : {std::pair{"a", &model_a}, std::pair{"b", &model_b}})
    for (int r = 0; r < 2; ++r) {
      RankSlices rs = rank_slices(*model, r, 2);
      write_shard({dir.str(), 4, r, of_run(lineage), rs.slices, rs.state}, gen1);
    }
  EXPECT_TRUE(fs::is_directory(staging_path(dir.str(), 4, 1, "a")));
  EXPECT_TRUE(fs::is_directory(staging_path(dir.str(), 4, 1, "b")));
  // Leftovers: b's interrupted save of step 2, a's own of step 3 (generation 1) and a newer
  // attempt's of a (generation 2, not a generation-1 commit's to remove).
  for (const auto& [step, gen, lineage] : std::vector<std::tuple<int, int, std::string>>{{2, 1, "b"}, {3, 1, "a"}, {7, 2, "a"}})
    fs::create_directories(staging_path(dir.str(), step, gen, lineage));
  // Saves staged before stagings were named by run (any run removes them, as before), a
  // replaced checkpoint whose deletion was cut short (its manifest gone: removed) and b's
  // replaced checkpoint (kept).
  for (const char* name : {"step-000001.g1.staging", "step-000001.staging", "step-000005.replaced", "step-000006.b.replaced"})
    fs::create_directories(dir.path / name);
  const std::string pa = commit_checkpoint(dir.str(), 4, of_run("a"), gen1);
  for (const char* gone : {"step-000001.g1.staging", "step-000001.staging", "step-000005.replaced"})
    EXPECT_FALSE(fs::exists(dir.path / gone)) << gone;
  EXPECT_TRUE(fs::exists(dir.path / "step-000006.b.replaced"));
  EXPECT_FALSE(fs::exists(staging_path(dir.str(), 3, 1, "a")));
  EXPECT_TRUE(fs::exists(staging_path(dir.str(), 7, 2, "a")));
  EXPECT_TRUE(fs::exists(staging_path(dir.str(), 2, 1, "b")));
  EXPECT_TRUE(fs::is_directory(staging_path(dir.str(), 4, 1, "b")));  // b's save in progress
  const std::string pb = commit_checkpoint(dir.str(), 4, of_run("b"), gen1);
  EXPECT_FALSE(fs::exists(staging_path(dir.str(), 2, 1, "b")));
  EXPECT_EQ(fs::path(pa).filename(), "step-000004");
  EXPECT_EQ(fs::path(pb).filename(), "step-000004.b");
  for (const auto& [path, model] : {std::pair{pa, &model_a}, std::pair{pb, &model_b}}) {
    EXPECT_TRUE(verify_checkpoint(path, full_check("model-A")).ok()) << path;
    CheckpointReader reader(path, "model-A");
    for (const GlobalTensor& t : *model) EXPECT_EQ(reader.read(t.name), t.values) << path << " " << t.name;
  }
}

}  // namespace
}  // namespace duet::ckpt
