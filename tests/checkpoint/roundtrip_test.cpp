// checkpoint/: what one layout saves, any layout reads back exactly — whole tensors, any
// re-slicing, through the shards or through index.h5 — and standard HDF5 tools open it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "checkpoint/checkpoint.h"
#include "tests/checkpoint/test_util.h"

namespace duet::ckpt {
namespace {
using namespace duet::ckpt::test;

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

TEST(CheckpointRoundTrip, FourRanksSaveAndEveryTensorReadsBackWhole) {
  ScratchDir dir("roundtrip");
  const auto model = test_model();
  const std::string path = save_sequential(dir.str(), 100, model, test_layout(4));
  EXPECT_EQ(path, (dir.path / "step-000100").string());

  CheckpointReader reader(path, "model-A");
  EXPECT_EQ(reader.step(), 100);
  EXPECT_EQ(reader.manifest().layout, test_layout(4));
  ASSERT_EQ(reader.manifest().tensors.size(), model.size());
  for (const GlobalTensor& t : model) {
    EXPECT_EQ(reader.tensor(t.name).shape, t.shape) << t.name;
    EXPECT_EQ(reader.read(t.name), t.values) << t.name;
  }
  for (const char* f : {"shard-00000.h5", "shard-00003.h5", "index.h5", "manifest.json", "COMMITTED"})
    EXPECT_TRUE(fs::is_regular_file(dir.path / "step-000100" / f)) << f;
  EXPECT_FALSE(fs::exists(dir.path / "step-000100" / "shard-00000.json")) << "sidecars are merged and removed";
  EXPECT_EQ(fs::read_symlink(dir.path / "latest"), "step-000100");
}

TEST(CheckpointRoundTrip, EveryRanksStateComesBack) {
  ScratchDir dir("state");
  const auto model = test_model();
  const std::string path = save_sequential(dir.str(), 7, model, test_layout(3));
  CheckpointReader reader(path);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(reader.state(r), rank_slices(model, r, 3).state) << "rank " << r;
  EXPECT_THROW(reader.state(3), std::invalid_argument);
}

// Saved as 4 slices; read back as 1, 2, 3 or 5 pieces along either dimension, and as boxes
// that straddle shard boundaries: every value exact.
TEST(CheckpointRoundTrip, ReslicesIntoAnyOtherLayout) {
  ScratchDir dir("reslice");
  const auto model = test_model();
  CheckpointReader reader(save_sequential(dir.str(), 1, model, test_layout(4)));
  for (const GlobalTensor& t : model)
    for (std::size_t dim = 0; dim < t.shape.size(); ++dim)
      for (int parts : {1, 2, 3, 5}) {
        for (int p = 0; p < parts; ++p) {
          auto [b, e] = cut(t.shape[dim], parts, p);
          std::vector<std::int64_t> off(t.shape.size(), 0), shape = t.shape;
          off[dim] = b;
          shape[dim] = e - b;
          std::vector<float> got(static_cast<std::size_t>(element_count(shape)), -99.f);
          reader.read(t.name, off, shape, got);
          ASSERT_EQ(got, extract_box(t, off, shape)) << t.name << " dim " << dim << " part " << p << "/" << parts;
        }
      }
  // An odd box across the row boundaries of "embed" (rows 4|8|12) and columns of wqkv.
  const GlobalTensor& embed = model[0];
  std::vector<float> box(static_cast<std::size_t>(9 * 3));
  reader.read("embed", std::vector<std::int64_t>{3, 2}, std::vector<std::int64_t>{9, 3}, box);
  EXPECT_EQ(box, extract_box(embed, {3, 2}, {9, 3}));
  const GlobalTensor& wqkv = model[1];
  std::vector<float> box2(static_cast<std::size_t>(3 * 7));
  reader.read("layers.0.attn.wqkv", std::vector<std::int64_t>{5, 2}, std::vector<std::int64_t>{3, 7}, box2);
  EXPECT_EQ(box2, extract_box(wqkv, {5, 2}, {3, 7}));
}

TEST(CheckpointRoundTrip, BadReadRequestsAreRefusedNamingTheTensor) {
  ScratchDir dir("badread");
  CheckpointReader reader(save_sequential(dir.str(), 1, test_model(), test_layout(2)));
  std::vector<float> out(4);
  EXPECT_THROW(reader.read("nope"), std::runtime_error);
  try {
    reader.read("embed", std::vector<std::int64_t>{15, 0}, std::vector<std::int64_t>{2, 2}, out);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'embed' [16, 8]: the box at [15, 0] of shape [2, 2] does not fit"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(reader.read("embed", std::vector<std::int64_t>{0, 0}, std::vector<std::int64_t>{1, 2}, out),
               std::invalid_argument);  // 4 floats for a box of 2
}

TEST(CheckpointRoundTrip, OneProcessCheckpointLoadsIntoManyAndBack) {
  ScratchDir dir("world1");
  const auto model = test_model(5);
  CheckpointReader one(save_sequential(dir.str(), 3, model, test_layout(1)));
  for (const GlobalTensor& t : model) EXPECT_EQ(one.read(t.name), t.values);
  EXPECT_EQ(one.manifest().shards.size(), 1u);
}

TEST(CheckpointRoundTrip, IndexPresentsWholeTensorsThroughVirtualDatasets) {
  ScratchDir dir("index");
  const auto model = test_model();
  const std::string path = save_sequential(dir.str(), 100, model, test_layout(4));
  for (const GlobalTensor& t : model) EXPECT_EQ(read_tensor_via_index(path, t.name), t.values) << t.name;
  const auto entries = read_index(path + "/index.h5");
  ASSERT_EQ(entries.size(), model.size());
  for (const IndexEntry& e : entries) {
    if (e.name == "embed") {
      EXPECT_EQ(e.shape, (std::vector<std::int64_t>{16, 8}));
      EXPECT_EQ(e.sources.size(), 4u);
      EXPECT_EQ(e.sources[2], "shard-00002.h5:/embed");
    }
    if (e.name == "norm") EXPECT_EQ(e.sources.size(), 1u) << "replicas map once";
  }
}

TEST(CheckpointRoundTrip, ThreadedRanksRunTheWholeProtocol) {
  ScratchDir dir("threads");
  const auto model = test_model(9);
  const auto results = save_threaded(dir.str(), 200, model, test_layout(4));
  for (const SaveResult& r : results) {
    EXPECT_TRUE(r.committed) << r.error;
    EXPECT_EQ(r.path, (dir.path / "step-000200").string());
  }
  CheckpointReader reader(results[0].path);
  for (const GlobalTensor& t : model) EXPECT_EQ(reader.read(t.name), t.values);
  EXPECT_TRUE(verify_checkpoint(results[0].path, {VerifyLevel::full, "model-A", {}}).ok());
}

TEST(CheckpointRoundTrip, StandardHdf5ToolsOpenTheFiles) {
  if (std::system("command -v h5ls >/dev/null 2>&1 && command -v h5dump >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "h5ls/h5dump not installed (apt-get install hdf5-tools)";
  ScratchDir dir("h5tools");
  const auto model = test_model();
  const std::string path = save_sequential(dir.str(), 100, model, test_layout(4));
  // From another working directory: the index finds its shards relative to itself.
  const std::string ls = run("cd / && h5ls -r '" + path + "/index.h5'");
  for (const char* name : {"/embed", "/layers.0.attn.wqkv", "/opt.m/layers.0.attn.wqkv", "/norm",
                           "/layers.1.moe.experts.3.w13"})
    EXPECT_NE(ls.find(std::string(name) + " "), std::string::npos) << name << " not listed by h5ls -r:\n" << ls;
  EXPECT_NE(ls.find("{16, 8}"), std::string::npos) << ls;
  const std::string shard_ls = run("h5ls -r '" + path + "/shard-00001.h5'");
  EXPECT_NE(shard_ls.find("/embed                   Dataset {4, 8}"), std::string::npos) << shard_ls;
  EXPECT_NE(shard_ls.find("/_duet/rng_state"), std::string::npos) << shard_ls;
  // h5dump reads real values through the virtual dataset (the last element of "norm").
  const std::string dump = run("cd / && h5dump -d /norm -s 7 -c 1 '" + path + "/index.h5'");
  char expect[64];
  std::snprintf(expect, sizeof expect, "%g", static_cast<double>(model[3].values[7]));
  EXPECT_NE(dump.find(std::string(expect).substr(0, 6)), std::string::npos) << "expected " << expect << " in\n" << dump;
}

TEST(CheckpointRoundTrip, BadSlicesAreRefusedBeforeAnythingIsWritten) {
  ScratchDir dir("badslice");
  std::vector<float> data(6, 1.f);
  auto try_save = [&](TensorSlice s) -> std::string {
    try {
      write_shard({dir.str(), 1, 0, test_layout(1), std::span(&s, 1), {}});
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(try_save({"w", {4}, {2}, {3}, data}).find("tensor 'w': slice at [2] of shape [3] does not fit in [4]"),
            std::string::npos);
  EXPECT_NE(try_save({"w", {6}, {0}, {6}, std::span(data).first(5)}).find("data has 5 values"), std::string::npos);
  EXPECT_NE(try_save({"w x", {6}, {0}, {6}, data}).find("bad tensor name 'w x'"), std::string::npos);
  EXPECT_NE(try_save({"w", {}, {}, {}, {}}).find("at least one dimension"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir.path / "step-000001.staging" / "shard-00000.h5"));
}

TEST(CheckpointRoundTrip, EmptyAndLargeChunkedTensorsRoundTrip) {
  ScratchDir dir("shapes");
  // 3 MiB rows force several chunks with a partial last one; a zero-size tensor has no chunks.
  std::vector<GlobalTensor> model = {make_tensor("big", {5, 300000}, 3), make_tensor("empty", {0, 4}, 4)};
  CheckpointLayout l = test_layout(1);
  std::vector<TensorSlice> slices;
  for (const auto& t : model) slices.push_back({t.name, t.shape, std::vector<std::int64_t>(2, 0), t.shape, t.values});
  write_shard({dir.str(), 1, 0, l, slices, {}});
  CheckpointReader reader(commit_checkpoint(dir.str(), 1, l));
  EXPECT_EQ(reader.read("big"), model[0].values);
  EXPECT_TRUE(reader.read("empty").empty());
  EXPECT_TRUE(verify_checkpoint(reader.path(), {VerifyLevel::full, "", {}}).ok());
  EXPECT_EQ(read_tensor_via_index(reader.path(), "big"), model[0].values);
}

}  // namespace
}  // namespace duet::ckpt
