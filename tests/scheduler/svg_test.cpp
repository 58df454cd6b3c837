// The SVG timeline: one coloured cell per op (two per pair), one outline per pair, a row
// label per rank; a well-formed document.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "scheduler/svg.h"

namespace duet::sched {
namespace {

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t pos = s.find(what); pos != std::string::npos; pos = s.find(what, pos + what.size())) ++n;
  return n;
}

// Every element opened is closed in order ("<a ...>" ... "</a>", or "<a .../>").
::testing::AssertionResult balanced_tags(const std::string& xml) {
  std::vector<std::string> open;
  for (size_t pos = xml.find('<'); pos != std::string::npos; pos = xml.find('<', pos + 1)) {
    size_t end = xml.find('>', pos);
    if (end == std::string::npos) return ::testing::AssertionFailure() << "unterminated tag at " << pos;
    std::string tag = xml.substr(pos + 1, end - pos - 1);
    if (tag.empty()) return ::testing::AssertionFailure() << "empty tag at " << pos;
    if (tag[0] == '/') {
      if (open.empty() || open.back() != tag.substr(1))
        return ::testing::AssertionFailure() << "</" << tag.substr(1) << "> closes " << (open.empty() ? "nothing" : open.back());
      open.pop_back();
    } else if (tag.back() != '/') {
      open.push_back(tag.substr(0, tag.find(' ')));
    }
  }
  if (!open.empty()) return ::testing::AssertionFailure() << "<" << open.back() << "> never closed";
  return ::testing::AssertionSuccess();
}

TEST(Svg, OneCellPerOpAndOneOutlinePerPair) {
  Schedule s = make_dualpipe_schedule(4, 10);
  SimConfig c;
  c.stages = {stage_cost(1, 2, 1, 3)};
  SimResult r = simulate(s, c);
  SvgOptions opt;
  opt.title = "DualPipe 4 ranks";
  std::string svg = render_timeline_svg(s, r, opt);
  size_t ops = 0, pairs = 0;
  for (auto& v : s.ops)
    for (const Op& op : v) ++ops, pairs += op.kind == OpKind::FB;
  ASSERT_GT(pairs, 0u);
  EXPECT_EQ(count(svg, "<title>"), ops + pairs);  // a pair draws two cells
  EXPECT_EQ(count(svg, "class=\"pair\""), pairs);
  EXPECT_EQ(count(svg, ">Rank "), 4u);
  EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  EXPECT_NE(svg.find("</svg>\n"), std::string::npos);
  EXPECT_NE(svg.find("DualPipe 4 ranks"), std::string::npos);
  EXPECT_NE(svg.find("<title>F0:0 [0, 1)</title>"), std::string::npos);
  EXPECT_TRUE(balanced_tags(svg));
}

TEST(Svg, DirectionOneIsDarkerWithWhiteLabels) {
  Schedule s = make_dualpipe_schedule(2, 4);
  SimConfig c;
  SimResult r = simulate(s, c);
  std::string svg = render_timeline_svg(s, r);
  EXPECT_NE(svg.find("fill=\"#C97A12\""), std::string::npos);  // a direction-1 forward
  EXPECT_NE(svg.find("fill=\"#fff\">"), std::string::npos);
}

TEST(Svg, RejectsAResultWithoutTimelineOrOfAnotherSchedule) {
  Schedule s = make_1f1b_schedule(2, 2);
  SimConfig c;
  c.record_timeline = false;
  EXPECT_THROW(render_timeline_svg(s, simulate(s, c)), std::invalid_argument);
  SimConfig t;
  EXPECT_THROW(render_timeline_svg(make_1f1b_schedule(3, 2), simulate(s, t)), std::invalid_argument);
  SvgOptions second;
  second.pipeline = 1;
  EXPECT_THROW(render_timeline_svg(s, simulate(s, t), second), std::invalid_argument);
}

}  // namespace
}  // namespace duet::sched
