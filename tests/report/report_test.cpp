// report/report: the three renderings of one Report carry the same facts; JSON reads back
// (yaml-cpp parses JSON), HTML is self-contained and escaped, files land where asked.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "report/report.h"

namespace duet::report {
namespace {

Report sample() {
  Report r;
  r.title = "Throughput <test> & \"quotes\"";
  r.source = "simulated";
  r.subtitle = "16 × H800";
  r.headline = {ReportField::num("step_time_s", "step time", 19.25, "s"),
                ReportField::num("tokens_per_s", "tokens per second", 3268000),
                ReportField::str("mfu_convention", "MFU convention", "3 x forward, causal"),
                ReportField::grp("memory_per_gpu_gib", "memory per GPU",
                                 {{"weights", 6.5}, {"gradients", 13}, {"total", 19.5}}, "GiB")};
  r.published = {"gpu_hours_per_trillion_tokens", "DeepSeek-V3 report", 180000, 171000, 0.15, "a note"};
  r.breakdown = {{"GEMMs", 10}, {"bubble", 2.5}};
  r.bubble_per_rank = {1, 2};
  r.busy_per_rank = {9, 8};
  r.exposed_comm_per_rank = {0.5, 0.25};
  r.timeline = {{0, "F", "F0:0", 0, 1}, {0, "B", "B1:0", 1, 3}, {1, "a2a", "exposed all-to-all", 0.5, 0.75},
                {1, "dp", "DP sync", 3, 3.5}};
  r.timeline_title = "pipeline 0";
  r.tables = {{"Stages", {"stage", "layers"}, {{"0", "0–3"}, {"1", "4–7"}}}};
  r.notes = {"balanced routing"};
  return r;
}

TEST(Report, JsonHoldsEveryField) {
  const YAML::Node j = YAML::Load(render_json(sample()));
  EXPECT_EQ(j["title"].as<std::string>(), "Throughput <test> & \"quotes\"");
  EXPECT_EQ(j["source"].as<std::string>(), "simulated");
  EXPECT_DOUBLE_EQ(j["step_time_s"].as<double>(), 19.25);
  EXPECT_DOUBLE_EQ(j["tokens_per_s"].as<double>(), 3268000);
  EXPECT_EQ(j["mfu_convention"].as<std::string>(), "3 x forward, causal");
  EXPECT_DOUBLE_EQ(j["memory_per_gpu_gib"]["gradients"].as<double>(), 13);
  EXPECT_DOUBLE_EQ(j["published"]["published"].as<double>(), 180000);
  EXPECT_DOUBLE_EQ(j["published"]["predicted_over_published"].as<double>(), 0.95);
  EXPECT_TRUE(j["published"]["within_tolerance"].as<bool>());
  EXPECT_DOUBLE_EQ(j["breakdown_s"]["bubble"].as<double>(), 2.5);
  EXPECT_DOUBLE_EQ(j["per_rank"]["bubble_s"][1].as<double>(), 2);
  EXPECT_DOUBLE_EQ(j["per_rank"]["exposed_comm_s"][1].as<double>(), 0.25);
  ASSERT_EQ(j["timeline"].size(), 4u);
  EXPECT_EQ(j["timeline"][2]["kind"].as<std::string>(), "a2a");
  EXPECT_DOUBLE_EQ(j["timeline"][1]["t1"].as<double>(), 3);
  EXPECT_EQ(j["tables"][0]["rows"][1][1].as<std::string>(), "4–7");
}

TEST(Report, PerRankCoreWaitShownOnlyWhenMeasured) {
  Report r = sample();
  EXPECT_EQ(render_markdown(r).find("waiting for a core"), std::string::npos);  // simulated: not known
  EXPECT_EQ(render_json(r).find("core_wait_s"), std::string::npos);
  r.core_wait_per_rank = {0.75, 1.5};
  const std::string md = render_markdown(r);
  EXPECT_NE(md.find("| rank | busy | waiting for a core | bubble | exposed comm |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 1 | 8 | 1.5 | 2 | 0.25 |"), std::string::npos) << md;
  const YAML::Node j = YAML::Load(render_json(r));
  EXPECT_DOUBLE_EQ(j["per_rank"]["core_wait_s"][1].as<double>(), 1.5);
  EXPECT_NE(render_html(r).find("<th>waiting for a core s</th>"), std::string::npos);
}

TEST(Report, PublishedToleranceIsEnforced) {
  PublishedComparison p{"x", "src", 100, 116, 0.15, ""};
  EXPECT_FALSE(p.within_tolerance());
  p.predicted = 114;
  EXPECT_TRUE(p.within_tolerance());
  p.predicted = 84;
  EXPECT_FALSE(p.within_tolerance());
  Report r = sample();
  r.published.metric.clear();  // no comparison: no block
  EXPECT_FALSE(YAML::Load(render_json(r))["published"].IsDefined());
}

TEST(Report, MarkdownHasTheTables) {
  const std::string md = render_markdown(sample());
  EXPECT_NE(md.find("# Throughput <test>"), std::string::npos);
  EXPECT_NE(md.find("| step time | 19.25 s |"), std::string::npos) << md;
  EXPECT_NE(md.find("| tokens per second | 3,268,000 |"), std::string::npos) << md;
  EXPECT_NE(md.find("weights 6.5, gradients 13, total 19.5 GiB"), std::string::npos) << md;
  EXPECT_NE(md.find("| simulated / published | 0.95 (within ±15.0%) |"), std::string::npos) << md;
  EXPECT_NE(md.find("| GEMMs | 10 | 80.0% |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 1 | 8 | 2 | 0.25 |"), std::string::npos) << md;
  EXPECT_NE(md.find("## Stages"), std::string::npos);
  EXPECT_NE(md.find("- balanced routing"), std::string::npos);
}

TEST(Report, HtmlIsSelfContainedAndEscaped) {
  const std::string h = render_html(sample());
  EXPECT_EQ(h.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(h.find("Throughput &lt;test&gt; &amp; &quot;quotes&quot;"), std::string::npos);
  EXPECT_EQ(h.find("<test>"), std::string::npos);  // nothing unescaped
  EXPECT_EQ(h.find("<script"), std::string::npos);
  EXPECT_EQ(h.find("src=\"http"), std::string::npos);
  EXPECT_EQ(h.find("href=\"http"), std::string::npos);
  // One timeline cell per event, plus the breakdown bar's slices.
  size_t cells = 0;
  for (size_t at = 0; (at = h.find("<title>", at)) != std::string::npos; ++at) ++cells;
  EXPECT_EQ(cells, 1 /* page */ + 2 /* bar */ + 4 /* timeline */);
  EXPECT_NE(h.find("fill=\"#E74C3C\""), std::string::npos);  // the all-to-all colour
  EXPECT_NE(h.find("class=ok"), std::string::npos);
}

TEST(Report, WriteReportWritesThreeFiles) {
  const auto dir = std::filesystem::temp_directory_path() / ("duet-report-test-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  write_report(sample(), (dir / "nested").string());
  for (const char* name : {"report.json", "report.md", "report.html"}) {
    std::ifstream in(dir / "nested" / name);
    std::stringstream s;
    s << in.rdbuf();
    EXPECT_GT(s.str().size(), 100u) << name;
  }
  std::filesystem::remove_all(dir);
  try {
    write_report(sample(), "/proc/no-such-dir/x");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/proc/no-such-dir/x"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace duet::report
