// The text format (refs/dualpipe.md) and the JSON form.
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "scheduler/text_format.h"

namespace duet::sched {
namespace {

template <class Fn>
std::string error_of(Fn f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(OpText, FormatsAndParsesEveryKind) {
  for (const char* t : {"F0:3", "B1:2", "I0:0", "W1:14", "F0:3&B1:1"}) EXPECT_EQ(format_op(parse_op(t)), t);
  EXPECT_EQ(parse_op("F0:3&B1:1"), (Op{OpKind::FB, 0, 3, 1, 1}));
  EXPECT_EQ(parse_op("W1:4"), (Op{OpKind::W, 1, 4}));
}

TEST(OpText, RejectsMalformedOps) {
  for (const char* t : {"F", "F0", "F0:", "F:1", "X0:1", "F0:1&F1:2", "B0:1&F1:2", "F0:-1", "F0:1x", "F0:1&"})
    EXPECT_NE(error_of([&] { parse_op(t); }).find(std::string("'") + t + "'"), std::string::npos) << t;
}

TEST(ScheduleText, RoundTripsEveryKind) {
  for (auto kind : {ScheduleKind::OneFOneB, ScheduleKind::ZB1P, ScheduleKind::DualPipe, ScheduleKind::DualPipeV}) {
    Schedule s = make_schedule(kind, 4, 10);
    std::string text = format_schedule_text(s);
    EXPECT_EQ(parse_schedule_text(text), s) << text;
  }
}

TEST(ScheduleText, OneLinePerRankAfterTheHeader) {
  std::string text = format_schedule_text(make_dualpipe_schedule(4, 8));
  EXPECT_EQ(text.rfind("# duet schedule kind=dualpipe ranks=4 microbatches=8\n0: F0:0 F0:1 F0:2 F1:0 I1:0", 0), 0u);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 5);
}

TEST(ScheduleText, WithoutHeaderNeedsAKindAndInfersMicroBatches) {
  const char* text = "0: F0:0 F0:1 B0:0 B0:1\n1: F0:0 B0:0 F0:1 B0:1\n";
  EXPECT_NE(error_of([&] { parse_schedule_text(text); }).find("kind is unknown"), std::string::npos);
  Schedule s = parse_schedule_text(text, ScheduleKind::OneFOneB);
  EXPECT_EQ(s.ranks, 2);
  EXPECT_EQ(s.microbatches, 2);
  EXPECT_EQ(s, make_1f1b_schedule(2, 2));
  // DualPipe counts micro-batches over both directions.
  Schedule d = parse_schedule_text("0: F0:0 F1:3\n1: F0:0\n", ScheduleKind::DualPipe);
  EXPECT_EQ(d.microbatches, 8);
}

TEST(ScheduleText, CommentsBlankLinesAndRankOrder) {
  Schedule s = parse_schedule_text("# hand-written\n\n1: F0:0 B0:0\n  # note\n0: F0:0 B0:0\n", ScheduleKind::OneFOneB);
  EXPECT_EQ(s, make_1f1b_schedule(2, 1));
}

TEST(ScheduleText, ErrorsNameTheLine) {
  EXPECT_NE(error_of([] { parse_schedule_text("0: F0:0\n1: F0:0 Q0:1\n", ScheduleKind::OneFOneB); })
                .find("line 2, op 1: bad op 'Q0:1'"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_schedule_text("0: F0:0\n0: F0:0\n", ScheduleKind::OneFOneB); }).find("line 2: rank 0 appears twice"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_schedule_text("0: F0:0\n2: F0:0\n", ScheduleKind::OneFOneB); }).find("must be 0..1"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_schedule_text("F0:0 F0:1\n", ScheduleKind::OneFOneB); }).find("line 1: expected"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_schedule_text("# duet schedule kind=zb1p\n0: F0:0\n", ScheduleKind::OneFOneB); })
                .find("kind=zb1p but kind 1f1b"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_schedule_text("# duet schedule kind=1f1b ranks=3\n0: F0:0\n"); }).find("ranks=3"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_schedule_text("# duet schedule speed=3\n0: F0:0\n"); }).find("unknown header key 'speed'"),
            std::string::npos);
}

TEST(ScheduleJson, HasPlacementAndOps) {
  std::string j = schedule_to_json(make_dualpipe_schedule(4, 8));
  EXPECT_EQ(j.rfind("{\"kind\": \"dualpipe\", \"ranks\": 4, \"microbatches\": 8, \"microbatches_per_dir\": 4, ", 0), 0u);
  EXPECT_NE(j.find("{\"rank\": 1, \"stages\": [1, 2], \"next\": [2, 0], \"prev\": [0, 2]}"), std::string::npos) << j;
  EXPECT_NE(j.find("{\"kind\": \"FB\", \"dir\": 0, \"mb\": 3, \"dir2\": 1, \"mb2\": 1}"), std::string::npos);
  EXPECT_NE(j.find("{\"kind\": \"I\", \"dir\": 1, \"mb\": 0}"), std::string::npos);
  EXPECT_EQ(std::count(j.begin(), j.end(), '{'), std::count(j.begin(), j.end(), '}'));
  EXPECT_EQ(std::count(j.begin(), j.end(), '['), std::count(j.begin(), j.end(), ']'));
}

}  // namespace
}  // namespace duet::sched
