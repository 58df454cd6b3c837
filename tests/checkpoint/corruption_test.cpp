// checkpoint/ against damage: a missing, truncated or bit-flipped shard, a changed manifest,
// a checkpoint of another model. Each is a clear error naming the file (and the tensor where
// it can be found), never data; resume falls back to the previous good checkpoint.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "checkpoint/checkpoint.h"
#include "tests/checkpoint/test_util.h"

namespace duet::ckpt {
namespace {
using namespace duet::ckpt::test;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

VerifyOptions level(VerifyLevel l, std::string model_hash = "") {
  VerifyOptions o;
  o.level = l;
  o.model_hash = std::move(model_hash);
  return o;
}

class CheckpointDamage : public ::testing::Test {
 protected:
  CheckpointDamage() : dir("damage"), model(test_model()) {
    good = save_sequential(dir.str(), 100, model, test_layout(4));
    path = save_sequential(dir.str(), 200, model, test_layout(4));
  }
  fs::path shard(int r) const { return fs::path(path) / shard_file_name(r); }
  ScratchDir dir;
  std::vector<GlobalTensor> model;
  std::string good, path;
};

TEST_F(CheckpointDamage, MissingShardIsAnErrorNeverZeros) {
  fs::remove(shard(2));
  const std::string err = error_of([&] { CheckpointReader r(path); });
  EXPECT_NE(err.find("shard-00002.h5"), std::string::npos) << err;
  EXPECT_NE(err.find("missing"), std::string::npos) << err;
  // Through the index: the virtual dataset would silently answer with fill values.
  const std::string via_index = error_of([&] { read_tensor_via_index(path, "embed"); });
  EXPECT_NE(via_index.find("source shard '" + shard(2).string() + "' is missing"), std::string::npos) << via_index;
  const VerifyReport rep = verify_checkpoint(path, level(VerifyLevel::checksums));
  ASSERT_FALSE(rep.ok());
  EXPECT_EQ(rep.problems[0].file, "shard-00002.h5");
  EXPECT_NE(rep.summary().find("shard-00002.h5"), std::string::npos) << rep.summary();
}

TEST_F(CheckpointDamage, MissingSourceWouldReadAsNaNFillWithoutTheCheck) {
  // Why read_tensor_via_index checks sources: a plain VDS read (h5dump here) shows the fill
  // value, NaN, for the missing part instead of failing.
  if (std::system("command -v h5dump >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "h5dump not installed (apt-get install hdf5-tools)";
  fs::remove(shard(0));
  FILE* p = popen(("cd / && h5dump -d /embed -c 1,1 '" + path + "/index.h5' 2>&1").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  pclose(p);
  EXPECT_NE(out.find("nan"), std::string::npos) << out;
}

TEST_F(CheckpointDamage, TruncatedShardFailsVerifyNamingShardAndTensors) {
  fs::resize_file(shard(1), fs::file_size(shard(1)) / 2);
  const VerifyReport rep = verify_checkpoint(path, level(VerifyLevel::structure));
  ASSERT_FALSE(rep.ok());
  EXPECT_EQ(rep.problems[0].file, "shard-00001.h5");
  EXPECT_NE(rep.summary().find("(truncated)"), std::string::npos) << rep.summary();
  // HDF5 cannot open a truncated file at all: every tensor in it is named as lost.
  EXPECT_NE(rep.summary().find("lost with it are tensors 'embed', 'layers.0.attn.wqkv'"), std::string::npos)
      << rep.summary();
  EXPECT_THROW(CheckpointReader r(path), std::runtime_error);
}

TEST_F(CheckpointDamage, FlippedDataByteFailsVerifyNamingShardAndTensor) {
  // Find the bytes of rank 3's slice of "embed" (rows 12..15) in its shard and flip one.
  std::string bytes = slurp(shard(3));
  const auto values = extract_box(model[0], {12, 0}, {4, 8});
  const std::size_t at = find_values(bytes, values);
  ASSERT_NE(at, std::string::npos);
  bytes[at + 5] ^= 0x10;
  spit(shard(3), bytes);

  const VerifyReport rep = verify_checkpoint(path, level(VerifyLevel::checksums));
  ASSERT_FALSE(rep.ok());
  EXPECT_EQ(rep.problems[0].file, "shard-00003.h5");
  EXPECT_EQ(rep.problems[0].tensor, "embed");
  EXPECT_NE(rep.problems[0].message.find("checksum mismatch"), std::string::npos) << rep.summary();
  EXPECT_NE(rep.problems[0].message.find("Fletcher32"), std::string::npos) << rep.summary();
  // The structure is intact, so the reader opens; reading the damaged chunk fails loudly.
  CheckpointReader reader(path);
  const std::string err = error_of([&] { reader.read("embed"); });
  EXPECT_NE(err.find("shard-00003.h5"), std::string::npos) << err;
  EXPECT_NE(err.find("Fletcher32"), std::string::npos) << err;
  EXPECT_EQ(reader.read("norm"), model[3].values) << "undamaged tensors still read";
}

TEST_F(CheckpointDamage, FlippedByteAnywhereFailsTheChecksum) {
  std::string bytes = slurp(shard(0));
  for (std::size_t at : {std::size_t{100}, bytes.size() / 3, bytes.size() - 7}) {
    std::string copy = bytes;
    copy[at] ^= 0x01;
    spit(shard(0), copy);
    const VerifyReport rep = verify_checkpoint(path, level(VerifyLevel::checksums));
    ASSERT_FALSE(rep.ok()) << "flip at " << at;
    EXPECT_EQ(rep.problems[0].file, "shard-00000.h5");
  }
  spit(shard(0), bytes);
  EXPECT_TRUE(verify_checkpoint(path, level(VerifyLevel::full)).ok());
}

TEST_F(CheckpointDamage, DamagedIndexIsCaughtBeforeHdf5ReadsIt) {
  const fs::path index = fs::path(path) / "index.h5";
  std::string bytes = slurp(index);
  bytes[bytes.size() / 2] ^= 0x20;
  spit(index, bytes);
  const VerifyReport rep = verify_checkpoint(path, level(VerifyLevel::checksums));
  ASSERT_FALSE(rep.ok());
  EXPECT_EQ(rep.problems[0].file, "index.h5");
  EXPECT_NE(rep.problems[0].message.find("checksum mismatch"), std::string::npos) << rep.summary();
  const std::string err = error_of([&] { read_tensor_via_index(path, "embed"); });
  EXPECT_NE(err.find("index.h5' does not match the manifest"), std::string::npos) << err;
  fs::remove(index);
  EXPECT_NE(verify_checkpoint(path, level(VerifyLevel::structure)).summary().find("index.h5: missing"),
            std::string::npos);
}

TEST_F(CheckpointDamage, ChangedManifestNoLongerMatchesCommitted) {
  const fs::path m = fs::path(path) / "manifest.json";
  std::string text = slurp(m);
  text.replace(text.find("\"config_hash\": \"cfg-1\""), 22, "\"config_hash\": \"cfg-2\"");
  spit(m, text);
  const VerifyReport rep = verify_checkpoint(path, level(VerifyLevel::structure));
  ASSERT_FALSE(rep.ok());
  EXPECT_NE(rep.summary().find("does not match COMMITTED"), std::string::npos) << rep.summary();
}

TEST_F(CheckpointDamage, ManifestOfAnotherModelIsRefusedNamingBothHashes) {
  const std::string other = save_sequential(dir.str(), 300, test_model(7), test_layout(4, "model-B"));
  const std::string err = error_of([&] { CheckpointReader r(other, "model-A"); });
  EXPECT_NE(err.find("written for model hash 'model-B', this model's hash is 'model-A'"), std::string::npos) << err;
  // Resume skips it (and says why) and takes the newest checkpoint of this model.
  std::vector<std::string> log;
  const ResumePoint rp = find_resumable_checkpoint(dir.str(), level(VerifyLevel::checksums, "model-A"),
                                                   [&](std::string_view l) { log.emplace_back(l); });
  EXPECT_EQ(rp.step, 200);
  ASSERT_EQ(rp.rejected.size(), 1u);
  EXPECT_NE(rp.rejected[0].find("step-000300"), std::string::npos);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("rejected"), std::string::npos) << log[0];
}

TEST_F(CheckpointDamage, ResumeFallsBackToThePreviousGoodCheckpoint) {
  std::string bytes = slurp(shard(1));
  bytes[bytes.size() / 2] ^= 0x40;
  spit(shard(1), bytes);
  std::vector<std::string> log;
  const ResumePoint rp = find_resumable_checkpoint(dir.str(), level(VerifyLevel::checksums, "model-A"),
                                                   [&](std::string_view l) { log.emplace_back(l); });
  ASSERT_TRUE(rp.found());
  EXPECT_EQ(rp.path, good);
  EXPECT_EQ(rp.step, 100);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("step-000200"), std::string::npos) << log[0];
  EXPECT_NE(log[0].find("shard-00001.h5"), std::string::npos) << log[0];
  EXPECT_NE(log[0].find("trying an older one"), std::string::npos) << log[0];
  CheckpointReader reader(rp.path, "model-A");
  for (const GlobalTensor& t : model) EXPECT_EQ(reader.read(t.name), t.values);
}

TEST_F(CheckpointDamage, NothingVerifiesMeansNothingFound) {
  fs::remove(fs::path(good) / "COMMITTED");
  fs::remove(shard(0));
  const ResumePoint rp = find_resumable_checkpoint(dir.str());
  EXPECT_FALSE(rp.found());
  EXPECT_EQ(rp.rejected.size(), 2u);
}

TEST_F(CheckpointDamage, ShardFromAnotherStepIsCaught) {
  // A shard swapped for the same rank's shard of another checkpoint: same tensors, same
  // shape, different bytes. The size may even match; the checksum does not.
  fs::copy_file(fs::path(good) / shard_file_name(2), shard(2), fs::copy_options::overwrite_existing);
  const VerifyReport rep = verify_checkpoint(path, level(VerifyLevel::checksums));
  ASSERT_FALSE(rep.ok());
  EXPECT_EQ(rep.problems[0].file, "shard-00002.h5");
  // Said as what it is (it used to read "the damage is in HDF5 metadata or unused space").
  EXPECT_NE(rep.summary().find("the file is the shard of step 100, not 200 (a shard copied from another checkpoint"),
            std::string::npos)
      << rep.summary();
  EXPECT_EQ(rep.summary().find("HDF5 metadata"), std::string::npos) << rep.summary();
  // Another rank's shard of the same checkpoint in its place.
  fs::copy_file(fs::path(path) / shard_file_name(1), shard(2), fs::copy_options::overwrite_existing);
  const VerifyReport other = verify_checkpoint(path, level(VerifyLevel::checksums));
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.summary().find("the file is the shard of rank 1, not 2"), std::string::npos) << other.summary();
}

}  // namespace
}  // namespace duet::ckpt
