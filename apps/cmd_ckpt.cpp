// `duet ckpt`: look into and check checkpoints.
//
//   duet ckpt inspect DIR [--json]        tensors, shapes, dtypes, sizes, layout, shards, and
//                                         what the structure check finds wrong, if anything
//   duet ckpt verify DIR [--level L] [--model-hash H] [--all]
//
// DIR is one checkpoint (…/step-000100) or a checkpoint folder (…/checkpoints), which means
// its newest committed checkpoint (every committed one with verify --all).
// Exit codes: 0 fine, 1 verification failed (each problem on stderr, naming the shard and
// tensor), 2 a usage error or a checkpoint that cannot be read at all (thrown, reported by main).
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/config_options.h"
#include "checkpoint/checkpoint.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace duet::app {
namespace {

const char* kUsage =
    "usage: duet ckpt inspect DIR [--json]\n"
    "       duet ckpt verify DIR [--level structure|checksums|full] [--model-hash H] [--all]\n\n"
    "DIR is a checkpoint (…/step-000100) or a folder of them (its newest committed one).\n";

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", b, units[u]);
  return buf;
}

bool is_checkpoint(const fs::path& p) {
  return fs::exists(p / "manifest.json") || fs::exists(p / "COMMITTED");
}

// The checkpoints DIR stands for: itself, or the newest committed one(s) in it.
std::vector<std::string> resolve(const std::string& dir, bool all) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw std::runtime_error("'" + dir + "' is not a directory");
  if (is_checkpoint(dir)) return {dir};
  std::vector<std::string> out;
  for (const auto& e : ckpt::list_checkpoints(dir))
    if (e.committed) out.push_back(e.path);
  if (out.empty())
    throw std::runtime_error("'" + dir + "' is neither a checkpoint (no manifest.json) nor a folder holding a "
                             "committed one (no step-N/COMMITTED inside)");
  if (!all) out.erase(out.begin(), out.end() - 1);
  return out;
}

ckpt::VerifyLevel parse_level(const std::string& s) {
  if (s == "structure") return ckpt::VerifyLevel::structure;
  if (s == "checksums") return ckpt::VerifyLevel::checksums;
  if (s == "full") return ckpt::VerifyLevel::full;
  throw std::invalid_argument("--level must be structure, checksums or full, got '" + s + "'");
}

void print_folder(const std::string& dir) {
  if (is_checkpoint(dir)) return;
  std::error_code ec;
  const fs::path latest = fs::read_symlink(fs::path(dir) / "latest", ec);
  std::printf("folder     %s\n", dir.c_str());
  for (const auto& e : ckpt::list_checkpoints(dir)) {
    const bool is_latest = !ec && fs::path(e.path).filename() == latest;
    std::printf("           %s%s%s\n", fs::path(e.path).filename().c_str(), e.committed ? "" : "  (not committed)",
                is_latest ? "  <- latest" : "");
  }
}

// Works on damaged checkpoints too (that is when one looks inside): the manifest is read as
// it is, and the structure check's verdict is printed, not thrown.
void inspect(const std::string& path, bool json) {
  const std::string manifest_path = (fs::path(path) / "manifest.json").string();
  std::ifstream in(manifest_path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read '" + manifest_path + "'");
  std::stringstream text;
  text << in.rdbuf();
  const ckpt::Manifest m = ckpt::parse_manifest(text.str(), manifest_path);
  if (json) {
    std::cout << ckpt::manifest_to_json(m);
    return;
  }
  ckpt::VerifyOptions quick;
  quick.level = ckpt::VerifyLevel::structure;
  const ckpt::VerifyReport rep = ckpt::verify_checkpoint(path, quick);
  std::uint64_t shard_bytes = 0;
  for (const auto& s : m.shards) shard_bytes += s.bytes;
  std::int64_t elements = 0;
  for (const auto& t : m.tensors) elements += ckpt::element_count(t.shape);
  const auto& l = m.layout;
  std::printf("checkpoint %s\n", path.c_str());
  std::printf("step       %lld\n", static_cast<long long>(m.step));
  if (rep.ok())
    std::printf("status     committed; files present with their recorded sizes (duet ckpt verify reads them)\n");
  else
    for (const auto& p : rep.problems)
      std::printf("status     PROBLEM %s%s: %s\n", p.file.c_str(), p.tensor.empty() ? "" : (": tensor '" + p.tensor + "'").c_str(),
                  p.message.c_str());
  std::printf("layout     world %d: pp %d, dp %d, ep %d, schedule %s\n", l.world, l.pp, l.dp, l.ep,
              l.schedule.empty() ? "-" : l.schedule.c_str());
  std::printf("hashes     model %s, config %s\n", l.model_hash.c_str(), l.config_hash.c_str());
  std::printf("tensors    %zu, %lld values, %s as float32\n", m.tensors.size(), static_cast<long long>(elements),
              human_bytes(4.0 * static_cast<double>(elements)).c_str());
  std::printf("shards     %zu files, %s on disk\n\n", m.shards.size(), human_bytes(static_cast<double>(shard_bytes)).c_str());

  std::size_t width = 6;
  for (const auto& t : m.tensors) width = std::max(width, t.name.size());
  std::printf("%-*s  %-7s  %-18s  %10s  %s\n", static_cast<int>(width), "tensor", "dtype", "shape", "size", "slices");
  for (const auto& t : m.tensors) {
    int slices = 0;
    for (const auto& s : m.shards)
      for (const auto& sl : s.slices) slices += sl.tensor == t.name;
    std::printf("%-*s  %-7s  %-18s  %10s  %d\n", static_cast<int>(width), t.name.c_str(), t.dtype.c_str(),
                ckpt::format_shape(t.shape).c_str(),
                human_bytes(4.0 * static_cast<double>(ckpt::element_count(t.shape))).c_str(), slices);
  }
  std::printf("\n%-16s  %10s  %-16s  %s\n", "shard", "size", "xxh64", "slices");
  for (const auto& s : m.shards) {
    char hex[20];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(s.xxh64));
    std::printf("%-16s  %10s  %-16s  %zu\n", s.file.c_str(), human_bytes(static_cast<double>(s.bytes)).c_str(), hex,
                s.slices.size());
  }
}

int verify(const std::vector<std::string>& paths, const ckpt::VerifyOptions& opt) {
  int failed = 0;
  for (const auto& path : paths) {
    const ckpt::VerifyReport rep = ckpt::verify_checkpoint(path, opt);
    if (rep.ok()) {
      std::printf("%s: OK (step %lld)\n", path.c_str(), static_cast<long long>(rep.step));
      continue;
    }
    ++failed;
    for (const auto& p : rep.problems)
      std::fprintf(stderr, "%s: %s%s: %s\n", path.c_str(), p.file.c_str(),
                   p.tensor.empty() ? "" : (": tensor '" + p.tensor + "'").c_str(), p.message.c_str());
    std::fprintf(stderr, "%s: FAILED (%zu problem%s)\n", path.c_str(), rep.problems.size(),
                 rep.problems.size() == 1 ? "" : "s");
  }
  return failed ? 1 : 0;
}

}  // namespace

int cmd_ckpt(int argc, char** argv) {
  po::options_description opts(kUsage);
  opts.add_options()("help,h", "show this help")
      ("json", "inspect: print manifest.json (the whole description, machine-readable)")
      ("level", po::value<std::string>()->default_value("full"),
       "verify: structure (files, sizes, manifest) | checksums (+ every shard's xxh64) | "
       "full (+ every dataset read, Fletcher32 per chunk)")
      ("model-hash", po::value<std::string>()->default_value(""), "verify: also require this model hash")
      ("all", "verify: every committed checkpoint in the folder, not only the newest");
  po::options_description hidden;
  hidden.add_options()("action", po::value<std::string>())("dir", po::value<std::string>());
  po::options_description all_opts;
  all_opts.add(opts).add(hidden);
  po::positional_options_description pos;
  pos.add("action", 1).add("dir", 1);
  po::variables_map vm;
  store_options(all_opts, argc, argv, vm, &pos, &opts);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << opts << "\n";
    return 0;
  }
  if (!vm.count("action") || !vm.count("dir"))
    throw std::invalid_argument(std::string("expected an action and a directory\n") + kUsage);
  const std::string action = vm["action"].as<std::string>();
  const std::string dir = vm["dir"].as<std::string>();
  if (action == "inspect") {
    const auto paths = resolve(dir, false);
    print_folder(dir);
    inspect(paths.back(), vm.count("json") > 0);
    return 0;
  }
  if (action == "verify") {
    ckpt::VerifyOptions opt;
    opt.level = parse_level(vm["level"].as<std::string>());
    opt.model_hash = vm["model-hash"].as<std::string>();
    return verify(resolve(dir, vm.count("all") > 0), opt);
  }
  throw std::invalid_argument("unknown action '" + action + "' (expected inspect or verify)\n" + kUsage);
}

}  // namespace duet::app
