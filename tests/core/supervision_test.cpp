// The rank → supervisor wire protocol: every message round-trips; garbage is dropped.
#include <gtest/gtest.h>

#include "core/supervision.h"

using duet::core::RankMessage;

TEST(SupervisionProtocol, EveryMessageRoundTrips) {
  RankMessage hello;
  hello.kind = RankMessage::Kind::Hello, hello.rank = 3, hello.pid = 4242, hello.attempt = 2, hello.host = "node-07";
  RankMessage beat;
  beat.kind = RankMessage::Kind::Beat, beat.step = 17, beat.op = 9, beat.phase = RankMessage::Phase::Save;
  RankMessage time;
  time.kind = RankMessage::Kind::StepTime, time.step = 17, time.seconds = 0.1234567;
  RankMessage commit;
  commit.kind = RankMessage::Kind::Committed, commit.step = 20;
  RankMessage nan;
  nan.kind = RankMessage::Kind::NonFinite, nan.step = 5;
  RankMessage nan_at = nan;
  nan_at.at_rank = 6, nan_at.dir = 1, nan_at.mb = 12;
  RankMessage node_hello = hello;
  node_hello.node = "node1";
  RankMessage mark;
  mark.kind = RankMessage::Kind::Mark, mark.name = "mpi_init", mark.seconds = 0.25, mark.step = 4;
  RankMessage inject;
  inject.kind = RankMessage::Kind::Inject, inject.signal = 9, inject.step = 6;
  RankMessage stacks_done;
  stacks_done.kind = RankMessage::Kind::StacksDone;
  RankMessage done;
  done.kind = RankMessage::Kind::Done;
  for (const RankMessage& m : {hello, beat, time, commit, nan, nan_at, node_hello, mark, inject, stacks_done, done}) {
    const std::string line = duet::core::encode(m);
    ASSERT_EQ(line.back(), '\n');
    const auto back = duet::core::decode_rank_message(std::string_view(line).substr(0, line.size() - 1));
    ASSERT_TRUE(back) << line;
    EXPECT_EQ(back->kind, m.kind);
    EXPECT_EQ(back->rank, m.rank);
    EXPECT_EQ(back->pid, m.pid);
    EXPECT_EQ(back->host, m.host);
    EXPECT_EQ(back->step, m.step);
    EXPECT_EQ(back->op, m.op);
    EXPECT_EQ(back->phase, m.phase);
    EXPECT_DOUBLE_EQ(back->seconds, m.seconds);
    EXPECT_EQ(back->node, m.node);
    EXPECT_EQ(back->name, m.name);
    EXPECT_EQ(back->signal, m.signal);
    EXPECT_EQ(back->at_rank, m.at_rank);
    EXPECT_EQ(back->dir, m.dir);
    EXPECT_EQ(back->mb, m.mb);
  }
  EXPECT_EQ(duet::core::decode_stacks_request("stacks /runs/a/hang-attempt-1"), "/runs/a/hang-attempt-1");
  EXPECT_FALSE(duet::core::decode_stacks_request("stacks /a b"));
  EXPECT_EQ(duet::core::encode_stacks_request("/a\nb"), "");
}

TEST(SupervisionProtocol, SkippedStepsShiftTheDataThatFollows) {
  const auto skipped = duet::core::parse_step_list("7,x,19,-2,");
  EXPECT_EQ(skipped, (std::vector<int>{7, 19}));
  EXPECT_EQ(duet::core::format_step_list(skipped), "7,19");
  EXPECT_EQ(duet::core::data_step(6, skipped), 6);
  EXPECT_EQ(duet::core::data_step(7, skipped), 8);  // step 7's data is never used again
  EXPECT_EQ(duet::core::data_step(18, skipped), 19);
  EXPECT_EQ(duet::core::data_step(19, skipped), 21);
  EXPECT_EQ(duet::core::data_step(5, {}), 5);
}

TEST(SupervisionProtocol, GarbageIsDropped) {
  for (const char* bad : {"", "beat", "beat 1 2 running", "hello 0 0 1 h", "hello -1 5 1 h", "steptime 3 nan",
                          "steptime 3 -1", "committed x", "beat 1 2 step extra", "stop", "\x01\x02"})
    EXPECT_FALSE(duet::core::decode_rank_message(bad)) << bad;
  EXPECT_FALSE(duet::core::decode_rank_message(std::string(500, 'a')));
}
