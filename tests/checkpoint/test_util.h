#pragma once
// Shared by the checkpoint tests: a small "model" of tensors, its slicing over simulated
// ranks, and ways to run the save protocol with ranks as loop iterations or as threads.
#include <unistd.h>

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/checkpoint.h"

namespace duet::ckpt::test {
namespace fs = std::filesystem;

// Verification at the full level (every checksum read back); model_hash "" accepts any model.
inline VerifyOptions full_check(std::string model_hash = "") {
  VerifyOptions o;
  o.level = VerifyLevel::full;
  o.model_hash = std::move(model_hash);
  return o;
}

// A fresh, empty directory for one test, removed by the destructor.
struct ScratchDir {
  fs::path path;
  explicit ScratchDir(const std::string& name)
      : path(fs::temp_directory_path() / ("duet-ckpt-" + name + "-" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

struct GlobalTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> values;  // row-major
};

inline GlobalTensor make_tensor(std::string name, std::vector<std::int64_t> shape, unsigned seed) {
  GlobalTensor t{std::move(name), std::move(shape), {}};
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1, 1);
  t.values.resize(static_cast<std::size_t>(element_count(t.shape)));
  for (float& v : t.values) v = dist(gen);
  return t;
}

// The box [offset, offset + shape) of a row-major tensor.
inline std::vector<float> extract_box(const GlobalTensor& t, const std::vector<std::int64_t>& offset,
                                      const std::vector<std::int64_t>& shape) {
  std::vector<float> out(static_cast<std::size_t>(element_count(shape)));
  const std::size_t nd = shape.size();
  std::vector<std::int64_t> idx(nd, 0);
  for (std::size_t k = 0; k < out.size(); ++k) {
    std::int64_t flat = 0;
    for (std::size_t d = 0; d < nd; ++d) flat = flat * t.shape[d] + offset[d] + idx[d];
    out[k] = t.values[static_cast<std::size_t>(flat)];
    for (std::size_t d = nd; d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

// [begin, end) of part p when n items are cut into `parts` nearly equal pieces.
inline std::pair<std::int64_t, std::int64_t> cut(std::int64_t n, int parts, int p) {
  return {n * p / parts, n * (p + 1) / parts};
}

// The test model: tensors cut in different ways over the ranks.
//   embed                       [16, 8]     rows over all ranks
//   layers.0.attn.wqkv          [8, 12]     columns over all ranks
//   opt.m/layers.0.attn.wqkv    [96]        flat 1-D ZeRO-style ranges, uneven
//   norm                        [8]         replicated on every rank
//   layers.1.moe.experts.3.w13  [4, 6, 5]   whole, on the last rank only
inline std::vector<GlobalTensor> test_model(unsigned seed = 1) {
  return {make_tensor("embed", {16, 8}, seed), make_tensor("layers.0.attn.wqkv", {8, 12}, seed + 1),
          make_tensor("opt.m/layers.0.attn.wqkv", {96}, seed + 2), make_tensor("norm", {8}, seed + 3),
          make_tensor("layers.1.moe.experts.3.w13", {4, 6, 5}, seed + 4)};
}

// One rank's slices of the test model; `data` spans point into `storage`.
struct RankSlices {
  std::vector<std::vector<float>> storage;
  std::vector<TensorSlice> slices;
  ShardState state;
};

inline RankSlices rank_slices(const std::vector<GlobalTensor>& model, int rank, int world) {
  RankSlices rs;
  auto add = [&](const GlobalTensor& t, std::vector<std::int64_t> off, std::vector<std::int64_t> shape) {
    rs.storage.push_back(extract_box(t, off, shape));
    rs.slices.push_back({t.name, t.shape, std::move(off), std::move(shape), {}});
  };
  for (const GlobalTensor& t : model) {
    if (t.name == "embed") {
      auto [b, e] = cut(t.shape[0], world, rank);
      add(t, {b, 0}, {e - b, t.shape[1]});
    } else if (t.name == "layers.0.attn.wqkv") {
      auto [b, e] = cut(t.shape[1], world, rank);
      add(t, {0, b}, {t.shape[0], e - b});
    } else if (t.name.starts_with("opt.m/")) {
      // Uneven: the last rank gets a short tail, as a flat ZeRO buffer cut would.
      const std::int64_t chunk = (t.shape[0] + world - 1) / world + 1;
      const std::int64_t b = std::min<std::int64_t>(t.shape[0], chunk * rank);
      const std::int64_t e = rank == world - 1 ? t.shape[0] : std::min<std::int64_t>(t.shape[0], b + chunk);
      if (e > b) add(t, {b}, {e - b});
    } else if (t.name == "norm") {
      add(t, {0}, t.shape);
    } else if (rank == world - 1) {
      add(t, std::vector<std::int64_t>(t.shape.size(), 0), t.shape);
    }
  }
  for (std::size_t i = 0; i < rs.slices.size(); ++i) rs.slices[i].data = rs.storage[i];
  rs.state.data_position = 1000 + rank;
  rs.state.rng_state = {std::uint8_t(rank), 1, 2, 3, 0, 255};
  rs.state.attributes = {{"rank", std::to_string(rank)}, {"note", "rank " + std::to_string(rank) + " state"}};
  return rs;
}

inline CheckpointLayout test_layout(int world, std::string model_hash = "model-A") {
  CheckpointLayout l;
  l.world = world;
  l.pp = world;
  l.dp = 1;
  l.ep = 1;
  l.schedule = "dualpipe";
  l.config_hash = "cfg-1";
  l.model_hash = std::move(model_hash);
  return l;
}

// Every rank's write_shard in turn, then rank 0's commit: the protocol with ranks as loop
// iterations (the agreement is trivially "everyone wrote").
inline std::string save_sequential(const std::string& dir, std::int64_t step, const std::vector<GlobalTensor>& model,
                                   const CheckpointLayout& layout, const SaveOptions& opt = {}) {
  for (int r = 0; r < layout.world; ++r) {
    RankSlices rs = rank_slices(model, r, layout.world);
    write_shard({dir, step, r, layout, rs.slices, rs.state}, opt);
  }
  return commit_checkpoint(dir, step, layout, opt);
}

// all_agree for ranks that are threads of one process: a reusable barrier that ANDs.
class ThreadAgreement {
 public:
  explicit ThreadAgreement(int ranks) : ranks_(ranks) {}
  bool operator()(bool ok) {
    std::unique_lock lk(mu_);
    const std::int64_t gen = generation_;
    acc_ = acc_ && ok;
    if (++arrived_ == ranks_) {
      result_ = acc_;
      acc_ = true;
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return result_;
    }
    cv_.wait(lk, [&] { return generation_ != gen; });
    return result_;
  }

 private:
  int ranks_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  bool acc_ = true, result_ = true;
  std::int64_t generation_ = 0;
};

// Runs save_checkpoint on `world` threads, one per rank; returns each rank's result.
inline std::vector<SaveResult> save_threaded(const std::string& dir, std::int64_t step,
                                             const std::vector<GlobalTensor>& model, const CheckpointLayout& layout,
                                             const SaveOptions& opt = {}) {
  ThreadAgreement agree(layout.world);
  std::vector<SaveResult> results(static_cast<std::size_t>(layout.world));
  std::vector<std::thread> threads;
  for (int r = 0; r < layout.world; ++r)
    threads.emplace_back([&, r] {
      RankSlices rs = rank_slices(model, r, layout.world);
      results[static_cast<std::size_t>(r)] = save_checkpoint({dir, step, r, layout, rs.slices, rs.state}, std::ref(agree), opt);
    });
  for (auto& t : threads) t.join();
  return results;
}

inline std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline void spit(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Offset of the first occurrence of a tensor's leading values in a file: where its data lies.
inline std::size_t find_values(const std::string& file_bytes, const std::vector<float>& values, std::size_t count = 4) {
  const std::string needle(reinterpret_cast<const char*>(values.data()), count * sizeof(float));
  return file_bytes.find(needle);
}

}  // namespace duet::ckpt::test
