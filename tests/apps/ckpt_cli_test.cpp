// `duet ckpt inspect|verify` end to end: checkpoints written by the library, checked by the
// binary as a user would, including a damaged shard that verify must name.
#include <gtest/gtest.h>

#include "tests/apps/cli_util.h"
#include "tests/checkpoint/test_util.h"

namespace duet::test {
namespace {
using ckpt::test::GlobalTensor;

class CkptCli : public ::testing::Test {
 protected:
  CkptCli() : dir(scratch_dir("ckpt-cli")), model(ckpt::test::test_model()) {
    ckpt::test::save_sequential(dir.string(), 100, model, ckpt::test::test_layout(4));
    path = ckpt::test::save_sequential(dir.string(), 200, model, ckpt::test::test_layout(4));
  }
  ~CkptCli() override { std::filesystem::remove_all(dir); }
  std::filesystem::path dir;
  std::vector<GlobalTensor> model;
  std::string path;
};

TEST_F(CkptCli, InspectListsTensorsShapesLayoutAndShards) {
  const auto r = run_duet("ckpt inspect " + path);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* text : {"step       200", "status     committed;", "world 4: pp 4, dp 1, ep 1, schedule dualpipe",
                           "model model-A, config cfg-1", "embed", "[16, 8]", "opt.m/layers.0.attn.wqkv", "[96]",
                           "float32", "shard-00003.h5", "tensors    5,"})
    EXPECT_NE(r.output.find(text), std::string::npos) << "missing '" << text << "' in:\n" << r.output;
}

TEST_F(CkptCli, InspectOfAFolderShowsItsCheckpointsAndTheNewest) {
  const auto r = run_duet("ckpt inspect " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("step-000100"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("step-000200  <- latest"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("checkpoint " + path), std::string::npos) << r.output;
}

TEST_F(CkptCli, InspectShowsWhatIsWrongWithADamagedCheckpoint) {
  std::filesystem::remove(std::filesystem::path(path) / "shard-00003.h5");
  const auto r = run_duet("ckpt inspect " + path);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("status     PROBLEM shard-00003.h5: missing"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("layers.1.moe.experts.3.w13"), std::string::npos) << r.output;
}

TEST_F(CkptCli, InspectJsonIsTheManifest) {
  const auto r = run_duet("ckpt inspect " + path + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(ckpt::parse_manifest(r.output, "stdout").step, 200);
}

TEST_F(CkptCli, VerifyPassesAGoodCheckpoint) {
  const auto r = run_duet("ckpt verify " + dir.string() + " --all --model-hash model-A");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("step-000100: OK (step 100)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("step-000200: OK (step 200)"), std::string::npos) << r.output;
}

TEST_F(CkptCli, VerifyNamesTheDamagedShardAndTensor) {
  const auto shard = std::filesystem::path(path) / "shard-00002.h5";
  std::string bytes = ckpt::test::slurp(shard);
  const std::size_t at = ckpt::test::find_values(bytes, ckpt::test::extract_box(model[0], {8, 0}, {4, 8}));
  ASSERT_NE(at, std::string::npos);
  bytes[at + 9] ^= 0x04;
  ckpt::test::spit(shard, bytes);
  const auto r = run_duet("ckpt verify " + path);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("shard-00002.h5: tensor 'embed': checksum mismatch"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("FAILED (1 problem)"), std::string::npos) << r.output;
  // The folder's other checkpoint is fine; --all reports both and still fails.
  const auto all = run_duet("ckpt verify " + dir.string() + " --all");
  EXPECT_EQ(all.exit_code, 1) << all.output;
  EXPECT_NE(all.output.find("step-000100: OK"), std::string::npos) << all.output;
}

TEST_F(CkptCli, VerifyNamesAMissingShardAndAnotherModel) {
  std::filesystem::remove(std::filesystem::path(path) / "shard-00001.h5");
  const auto r = run_duet("ckpt verify " + path + " --level structure");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("shard-00001.h5: missing (No such file or directory): lost with it are tensors 'embed'"), std::string::npos) << r.output;
  const auto other = run_duet("ckpt verify " + dir.string() + "/step-000100 --model-hash model-B");
  EXPECT_EQ(other.exit_code, 1) << other.output;
  EXPECT_NE(other.output.find("written for model hash 'model-A', this model's hash is 'model-B'"), std::string::npos)
      << other.output;
}

TEST_F(CkptCli, UsageErrorsExitTwoWithAMessage) {
  auto r = run_duet("ckpt inspect " + dir.string() + "/nope");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("is not a directory"), std::string::npos) << r.output;
  r = run_duet("ckpt frobnicate " + path);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("unknown action 'frobnicate'"), std::string::npos) << r.output;
  r = run_duet("ckpt verify " + path + " --level quick");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--level must be structure, checksums or full"), std::string::npos) << r.output;
  r = run_duet("ckpt verify /tmp");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("neither a checkpoint"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace duet::test
