// `duet simulate` end to end, as a user runs it: the shipped DeepSeek-V3 config writes the
// three report files with the fields, the published comparison holds the targets,
// sweeps and schedule comparisons print their tables, errors exit 2, and report.html renders
// in headless Chromium (scripts/install-deps.sh installs it, so its absence fails the test).
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <regex>
#include <string>

#include "io/config.h"
#include "scheduler/cost_model.h"
#include "tests/apps/cli_util.h"

namespace duet::test {
namespace {

const std::string kConfig = std::string(DUET_SOURCE_DIR) + "/configs/deepseek-v3-2048xh800.yaml";

TEST(SimulateCli, ShippedConfigWritesTheReport) {
  const auto dir = scratch_dir("simulate");
  const CommandResult r = run_duet("simulate --config " + kConfig + " --out " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("predicted/published"), std::string::npos) << r.output;
  for (const char* f : {"report.json", "report.md", "report.html"})
    ASSERT_TRUE(std::filesystem::exists(dir / f)) << f;

  const YAML::Node j = YAML::Load(read_file(dir / "report.json"));
  for (const char* key : {"step_time_s", "bubble_s", "bubble_fraction", "exposed_comm_s", "tokens_per_step",
                          "tokens_per_s", "tokens_per_s_per_gpu", "tokens_per_day", "model_flops_per_token", "mfu",
                          "mfu_convention", "gpu_hours_per_trillion_tokens", "days_per_trillion_tokens"})
    EXPECT_TRUE(j[key].IsDefined()) << key;
  for (const char* part : {"weights", "gradients", "optimizer", "peak_activations", "total"})
    EXPECT_TRUE(j["memory_per_gpu_gib"][part].IsDefined()) << part;
  EXPECT_DOUBLE_EQ(j["tokens_per_step"].as<double>(), 15360.0 * 4096);
  EXPECT_NE(j["mfu_convention"].as<std::string>().find("causal"), std::string::npos);

  // The targets: within ±15% of 180K GPU-hours per trillion tokens, and fits 80 GB.
  const YAML::Node p = j["published"];
  EXPECT_DOUBLE_EQ(p["published"].as<double>(), 180000);
  EXPECT_DOUBLE_EQ(p["predicted"].as<double>(), j["gpu_hours_per_trillion_tokens"].as<double>());
  EXPECT_NEAR(p["predicted_over_published"].as<double>(), 1.0, 0.15);
  EXPECT_LE(j["memory_per_gpu_gib"]["total"].as<double>(), 80.0);

  // Units agree with each other.
  const double step = j["step_time_s"].as<double>();
  EXPECT_NEAR(j["tokens_per_s"].as<double>() * step, 15360.0 * 4096, 1);
  EXPECT_NEAR(j["tokens_per_s_per_gpu"].as<double>() * 2048, j["tokens_per_s"].as<double>(), 1e-6 * step);
  double parts = 0;
  for (const auto& kv : j["breakdown_s"]) parts += kv.second.as<double>();
  EXPECT_NEAR(parts, step, 1e-6 * step);
  EXPECT_EQ(j["per_rank"]["bubble_s"].size(), 16u);  // one pipeline's ranks
  EXPECT_GT(j["timeline"].size(), 16u * 120);         // every chunk of every rank drawn

  const std::string md = read_file(dir / "report.md");
  EXPECT_NE(md.find("| GPU-hours per trillion tokens |"), std::string::npos);
  EXPECT_NE(md.find("## Where the step time goes"), std::string::npos);
}

TEST(SimulateCli, HtmlRendersInHeadlessChromium) {
  const CommandResult which = run_command("command -v chromium || command -v chromium-browser");
  ASSERT_EQ(which.exit_code, 0) << "chromium is missing: scripts/install-deps.sh installs it";
  std::string browser = which.output.substr(0, which.output.find('\n'));
  const auto dir = scratch_dir("simulate-html");
  ASSERT_EQ(run_duet("simulate --config " + kConfig + " --out " + dir.string()).exit_code, 0);
  const auto png = dir / "report.png";
  const CommandResult r = run_command("timeout 120 " + browser +
                                      " --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1450,2200"
                                      " --screenshot=" + png.string() + " file://" + (dir / "report.html").string());
  ASSERT_TRUE(std::filesystem::exists(png)) << r.output;
  // A blank page compresses to a few kB; the timeline alone is thousands of coloured cells.
  EXPECT_GT(std::filesystem::file_size(png), 50'000u) << r.output;
  const std::string head = read_file(png).substr(0, 8);
  EXPECT_EQ(head, "\x89PNG\r\n\x1a\n");
}

TEST(SimulateCli, SweepPrintsOneRowPerValue) {
  const CommandResult r = run_duet("simulate --config " + kConfig + " --sweep parallel.pp=8,16,32");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* row : {"parallel.pp=8 ", "parallel.pp=16 ", "parallel.pp=32 "})
    EXPECT_NE(r.output.find(row), std::string::npos) << row << "\n" << r.output;
  EXPECT_NE(r.output.find("GPU-h/T"), std::string::npos);
  EXPECT_NE(r.output.find("3/3"), std::string::npos);  // the progress bar finished
  EXPECT_EQ(r.output.find("error"), std::string::npos) << r.output;  // dp followed pp: 2048 GPUs each time
}

// The failure rate swept: one step simulated, a goodput per rate; more failures, less of it.
TEST(SimulateCli, SweepOverTheFailureRate) {
  const CommandResult r =
      run_duet("simulate --config " + kConfig + " --sweep goodput.interruptions_per_gpu_day=0,0.0005,0.005");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<double> ettr;
  const std::regex row("goodput.interruptions_per_gpu_day=[0-9.]+ +(?:[-0-9.,]+%? +){8}([0-9.]+)%");
  for (std::sregex_iterator it(r.output.begin(), r.output.end(), row), end; it != end; ++it)
    ettr.push_back(std::stod((*it)[1]));
  ASSERT_EQ(ettr.size(), 3u) << r.output;
  EXPECT_DOUBLE_EQ(ettr[0], 100.0);  // no failures, checkpoint.every 0: never saves
  EXPECT_LT(ettr[1], ettr[0]);
  EXPECT_LT(ettr[2], ettr[1]);
  EXPECT_NE(r.output.find("ETTR"), std::string::npos);
}

TEST(SimulateCli, ExpectedGoodputInTheReport) {
  const auto dir = scratch_dir("simulate-goodput");
  const CommandResult r = run_duet("simulate --config " + kConfig + " --out " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("effective training time"), std::string::npos) << r.output;
  const YAML::Node j = YAML::Load(read_file(dir / "report.json"));
  const double ettr = j["expected_effective_training_time"].as<double>();
  EXPECT_GT(ettr, 0.5);
  EXPECT_LT(ettr, 1.0);
  // Young/Daly: sqrt(2 x save x MTBF); the cluster fails 2048 x 419 / (16384 x 54) times a day.
  const double mtbf = 86400 / (2048 * 419.0 / (16384 * 54));
  const double interval = j["optimal_checkpoint_interval_s"].as<double>();
  EXPECT_GT(interval, std::sqrt(2 * 1.0 * mtbf));    // the save takes more than 1 s
  EXPECT_LT(interval, std::sqrt(2 * 60.0 * mtbf));   // and less than a minute
  EXPECT_NEAR(j["tokens_per_day_with_failures"].as<double>(), j["tokens_per_day"].as<double>() * ettr,
              1e-6 * j["tokens_per_day"].as<double>());
  // A bad key value names the key and what is allowed.
  const CommandResult bad = run_duet("simulate --config " + kConfig + " --set goodput.restart_s=-1 --out " + dir.string());
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("goodput.restart_s: expected a number ≥ 0"), std::string::npos) << bad.output;
}

TEST(SimulateCli, CompareSchedulesPrintsAllFour) {
  const CommandResult r = run_duet("simulate --config " + kConfig + " --compare-schedules");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* k : {"\n1f1b ", "\nzb1p ", "\ndualpipe ", "\ndualpipev "})
    EXPECT_NE(r.output.find(k), std::string::npos) << k << "\n" << r.output;
}

// The table modes write their table into --out too (the README's `--out sim/ --compare-schedules`).
TEST(SimulateCli, TableModesWriteTheirTableIntoOut) {
  const auto dir = scratch_dir("simulate-tables");
  CommandResult r = run_duet("simulate --config " + kConfig + " --out " + dir.string() + " --compare-schedules");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string schedules = read_file(dir / "schedules.txt");
  for (const char* k : {"\n1f1b ", "\nzb1p ", "\ndualpipe ", "\ndualpipev "})
    EXPECT_NE(schedules.find(k), std::string::npos) << k << "\n" << schedules;
  EXPECT_NE(r.output.find(schedules), std::string::npos);  // what was printed
  r = run_duet("simulate --config " + kConfig + " --out " + dir.string() + " --sweep cluster.ib_gbps=25,50");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(read_file(dir / "sweep.txt").find("cluster.ib_gbps=25 "), std::string::npos);
  std::filesystem::remove_all(dir);
}

// The embedded default (tiny.yaml: DualPipe, PP 1) trains as 1F1B, and simulates as it trains.
TEST(SimulateCli, TheDefaultConfigSimulatesAsItTrains) {
  const auto dir = scratch_dir("simulate-default");
  const CommandResult r = run_duet("simulate --out " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(read_file(dir / "report.md").find("1f1b"), std::string::npos);
  // What its MFU counts is said of this model (MHA, no MTP), not of DeepSeek-V3.
  const YAML::Node j = YAML::Load(read_file(dir / "report.json"));
  const std::string convention = j["mfu_convention"].as<std::string>();
  EXPECT_NE(convention.find("attention projections"), std::string::npos) << convention;
  for (const char* not_here : {"MLA", "MTP", "DeepSeek"})
    EXPECT_EQ(convention.find(not_here), std::string::npos) << not_here << ": " << convention;
  // Compared at PP 1, the other schedules say they would be 1F1B, not four rows of its numbers.
  const CommandResult c = run_duet("simulate --compare-schedules");
  ASSERT_EQ(c.exit_code, 0) << c.output;
  EXPECT_NE(c.output.find("dualpipe"), std::string::npos);
  EXPECT_NE(c.output.find("error: parallel.pp 1 trains 1f1b whatever the schedule"), std::string::npos) << c.output;
  std::filesystem::remove_all(dir);
}

// The note under the published comparison follows the sign of the gap, and a stage holding
// no transformer layer (DualPipeV's last: MTP and the head) shows "-", not a reversed range.
TEST(SimulateCli, TheReportSaysWhatItsNumbersShow) {
  const auto dir = scratch_dir("simulate-note");
  CommandResult r = run_duet("simulate --config " + kConfig + " --set cluster.ib_gbps=25 --out " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  YAML::Node j = YAML::Load(read_file(dir / "report.json"));
  ASSERT_GT(j["published"]["predicted_over_published"].as<double>(), 1.0);
  EXPECT_NE(j["published"]["note"].as<std::string>().find("it comes out above"), std::string::npos);
  r = run_duet("simulate --config " + kConfig + " --out " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  j = YAML::Load(read_file(dir / "report.json"));
  ASSERT_LT(j["published"]["predicted_over_published"].as<double>(), 1.0);
  EXPECT_EQ(j["published"]["note"].as<std::string>().find("it comes out above"), std::string::npos);
  r = run_duet("simulate --config " + kConfig + " --set parallel.schedule=dualpipev --out " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string md = read_file(dir / "report.md");
  EXPECT_EQ(md.find("| 61–60 |"), std::string::npos);
  EXPECT_NE(md.find("| 31 | - |"), std::string::npos) << md.substr(md.find("## Stages"), 3000);
  std::filesystem::remove_all(dir);
}

TEST(SimulateCli, UserErrorsExitTwoWithAMessage) {
  CommandResult r = run_duet("simulate --config " + kConfig);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--out DIR is required"), std::string::npos) << r.output;
  r = run_duet("simulate --config " + kConfig + " --sweep cluster.ib_gbs=20,40");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("did you mean 'cluster.ib_gbps'"), std::string::npos) << r.output;
  const auto dir = scratch_dir("simulate-bad");
  r = run_duet("simulate --config " + kConfig + " --set parallel.dp=64 --out " + dir.string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("must equal cluster.gpus (2048)"), std::string::npos) << r.output;
}

// The config keys' defaults and the cost model's must not drift apart.
TEST(SimulateCli, ClusterDefaultsMatchTheCostModel) {
  const io::ClusterSection c;
  const sched::Efficiencies e;
  const sched::ClusterSpec h;
  EXPECT_DOUBLE_EQ(c.gemm_efficiency, e.gemm);
  EXPECT_DOUBLE_EQ(c.wgrad_efficiency, e.wgrad);
  EXPECT_DOUBLE_EQ(c.attention_fwd_efficiency, e.attention_fwd);
  EXPECT_DOUBLE_EQ(c.attention_bwd_efficiency, e.attention_bwd);
  EXPECT_DOUBLE_EQ(c.hbm_efficiency, e.hbm);
  EXPECT_DOUBLE_EQ(c.ib_gbps, h.ib_gbps);
  EXPECT_DOUBLE_EQ(c.nvlink_gbps, h.nvlink_gbps);
  EXPECT_EQ(c.comm_sms, h.comm_sms);
}

}  // namespace
}  // namespace duet::test
