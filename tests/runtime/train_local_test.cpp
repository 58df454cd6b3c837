// The trainer, engine, ZeRO-1 and expert exchange on ranks that are threads of this process
// (runtime/comm_local.h): no mpirun. Pipelined layouts agree with one rank on the same
// global batch (first loss to 1e-6, every loss to 1e-4, as under MPI), and the same layout
// twice is bit-identical.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <vector>

#include "io/config.h"
#include "io/metrics.h"
#include "runtime/comm_local.h"
#include "runtime/trainer.h"

namespace fs = std::filesystem;
using namespace duet;

namespace {

std::vector<double> losses(const fs::path& metrics) {
  std::ifstream in(metrics);
  std::vector<double> out;
  const std::regex re("\"loss\":([-0-9.eE+]+)");
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, re)) out.push_back(std::stod(m[1]));
  }
  return out;
}

// Trains `layout` (config overrides) on pp·dp threads; returns the losses of its steps.
std::vector<double> train_local(const std::string& name, const std::vector<std::string>& layout) {
  std::vector<std::string> o = {"train.steps=6", "train.log_every=6", "train.eval_batches=1", "runtime.trace=false",
                                "run.dir=" + (fs::temp_directory_path() / "duet-train-local").string(),
                                "run.name=" + name};
  o.insert(o.end(), layout.begin(), layout.end());
  const io::RunConfig cfg = io::parse_config(io::default_config_text(), o, "<test>");
  fs::remove_all(fs::temp_directory_path() / "duet-train-local" / name);
  const std::string dir = io::make_run_dir(cfg);
  runtime::run_local_ranks(cfg.parallel.pp * cfg.parallel.dp, [&](runtime::Communicator& world) {
    io::RunLog log("", /*echo=*/false);
    runtime::train(cfg, dir, log, world.dup());
  });
  return losses(fs::path(dir) / "metrics.jsonl");
}

}  // namespace

TEST(TrainLocal, PipelinedLayoutsAgreeWithOneRank) {
  const auto ref = train_local("one", {"parallel.pp=1", "parallel.dp=1", "parallel.ep=1"});
  ASSERT_EQ(ref.size(), 6u);
  for (const auto& [name, layout] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"dualpipe-pp2dp2ep2", {"parallel.pp=2", "parallel.dp=2", "parallel.ep=2", "parallel.schedule=dualpipe"}},
           {"zb1p-pp2", {"parallel.pp=2", "parallel.dp=1", "parallel.ep=1", "parallel.schedule=zb1p"}},
           {"dualpipev-pp2-no-overlap",
            {"parallel.pp=2", "parallel.dp=1", "parallel.ep=1", "parallel.schedule=dualpipev", "runtime.overlap=false"}}}) {
    SCOPED_TRACE(name);
    const auto got = train_local(name, layout);
    ASSERT_EQ(got.size(), ref.size());
    EXPECT_LE(std::abs(got[0] - ref[0]) / ref[0], 1e-6);
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_LE(std::abs(got[i] - ref[i]) / ref[i], 1e-4) << "step " << i + 1;
  }
  EXPECT_LT(ref.back(), ref.front());
}

TEST(TrainLocal, SameLayoutTwiceIsBitIdentical) {
  const std::vector<std::string> layout = {"parallel.pp=2", "parallel.dp=2", "parallel.ep=2"};
  const auto a = train_local("twice-a", layout), b = train_local("twice-b", layout);
  ASSERT_EQ(a.size(), 6u);
  EXPECT_EQ(a, b);
}
