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
  for (const RankMessage& m : {hello, beat, time, commit, nan}) {
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
  }
}

TEST(SupervisionProtocol, GarbageIsDropped) {
  for (const char* bad : {"", "beat", "beat 1 2 running", "hello 0 0 1 h", "hello -1 5 1 h", "steptime 3 nan",
                          "steptime 3 -1", "committed x", "beat 1 2 step extra", "stop", "\x01\x02"})
    EXPECT_FALSE(duet::core::decode_rank_message(bad)) << bad;
  EXPECT_FALSE(duet::core::decode_rank_message(std::string(500, 'a')));
}
