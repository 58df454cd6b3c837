// Hostlist expressions, checked against Slurm's own reading of the same inputs
// (`scontrol show hostnames` / `show hostlist` work offline given any slurm.conf).
#include "slurm/hostlist.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "slurm/client.h"

using namespace duet::slurm;

namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

// Slurm's commands need a configuration to start; for hostlists any will do.
class SlurmHostlist : public ::testing::Test {
 protected:
  void SetUp() override {
    conf_ = std::filesystem::temp_directory_path() / ("duet-hostlist-" + std::to_string(getpid()) + ".conf");
    std::ofstream(conf_) << "ClusterName=hostlisttest\nSlurmctldHost=localhost\n";
    setenv("SLURM_CONF", conf_.c_str(), 1);
  }
  void TearDown() override { std::filesystem::remove(conf_); }
  std::vector<std::string> slurm_expand(const std::string& expr) {
    const auto r = run_command({"scontrol", "show", "hostnames", expr});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return lines(r.out);
  }
  std::string slurm_compress(const std::vector<std::string>& hosts) {
    std::string csv;
    for (const auto& h : hosts) csv += (csv.empty() ? "" : ",") + h;
    const auto r = run_command({"scontrol", "show", "hostlist", csv});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return lines(r.out).at(0);
  }
  std::filesystem::path conf_;
};

TEST_F(SlurmHostlist, ExpandsLikeScontrol) {
  for (const std::string expr :
       {"n1", "n[1-4,7]", "n[1-4,7],gpu-[001-128]", "gpu-[001-256]", "node[0001-0256]", "a[1-2]b[3-4]",
        "rack1-n[09-11],login", "n[1-256]", "x[8-12],y,z[001-002,010]"})
    EXPECT_EQ(hostlist_expand(expr), slurm_expand(expr)) << expr;
  EXPECT_EQ(hostlist_expand("gpu-[001-256]").size(), 256u);
  EXPECT_EQ(hostlist_expand("gpu-[001-256]").back(), "gpu-256");
}

TEST_F(SlurmHostlist, CompressesLikeScontrol) {
  // Names that share a prefix and a padding: Slurm's own compression, character for character.
  for (const std::string expr : {"n[1-4,7]", "gpu-[001-256]", "n[1-3],gpu-[001-003],login", "n[9-11]", "n5"}) {
    const auto hosts = hostlist_expand(expr);
    EXPECT_EQ(hostlist_compress(hosts), slurm_compress(hosts)) << expr;
  }
  // Mixed padding: Slurm may group differently, but both read back as the same hosts.
  const std::vector<std::string> mixed = {"n1", "n2", "n07", "n08", "n10"};
  auto back = slurm_expand(hostlist_compress(mixed));
  std::sort(back.begin(), back.end());
  auto want = mixed;
  std::sort(want.begin(), want.end());
  EXPECT_EQ(back, want) << hostlist_compress(mixed);
}

TEST(Hostlist, RejectsMalformedExpressionsByName) {
  for (const std::string bad : {"n[1-4", "n1-4]", "n[4-1]", "n[a-b]", "n[1-2]x[", "n [1-2]", "n[[1]]"}) {
    try {
      hostlist_expand(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("hostlist '" + bad + "'"), std::string::npos) << e.what();
    }
  }
}

TEST(Hostlist, RoundTripsLargeAllocations) {
  std::vector<std::string> hosts;
  for (int i = 1; i <= 256; ++i) hosts.push_back("n" + std::to_string(i));
  hosts.erase(hosts.begin() + 99);  // n100 lost
  EXPECT_EQ(hostlist_compress(hosts), "n[1-99,101-256]");
  EXPECT_EQ(hostlist_expand(hostlist_compress(hosts)), hosts);
}

}  // namespace
