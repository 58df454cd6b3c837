// supervisor/nodes.h: which nodes an attempt uses, and the layout it runs on them.
#include "supervisor/nodes.h"

#include <gtest/gtest.h>

namespace duet::supervisor {
namespace {

core::LayoutRules tiny_rules() {  // configs/tiny.yaml: global batch 16 of 1, 8 experts, DualPipe
  core::LayoutRules r;
  r.schedule = core::ScheduleKind::DualPipe, r.global_batch = 16, r.micro_batch_size = 1, r.experts = 8;
  return r;
}

TEST(ElasticLayout, KeepsPpShrinksDpAndEpWhereItStillDivides) {
  const core::Layout full{4, 2, 2};
  EXPECT_EQ(elastic_layout(8, full, tiny_rules()), (core::Layout{4, 2, 2}));   // nothing lost
  EXPECT_EQ(elastic_layout(7, full, tiny_rules()), (core::Layout{4, 1, 1}));   // EP 2 cannot divide DP 1
  EXPECT_EQ(elastic_layout(4, full, tiny_rules()), (core::Layout{4, 1, 1}));
  EXPECT_FALSE(elastic_layout(3, full, tiny_rules()));                        // not one pipeline
  // Never more than configured, even with room to spare.
  EXPECT_EQ(elastic_layout(16, full, tiny_rules()), (core::Layout{4, 2, 2}));
}

TEST(ElasticLayout, TheGlobalBatchStaysWholeAndTheScheduleRuleHolds) {
  core::LayoutRules r = tiny_rules();
  r.global_batch = 24;  // DP 4 → 6 micro-batches; DP 3 → 8; DualPipe on PP 2 needs >= 4, even
  EXPECT_EQ(elastic_layout(8, {2, 4, 4}, r), (core::Layout{2, 4, 4}));
  EXPECT_EQ(elastic_layout(7, {2, 4, 4}, r), (core::Layout{2, 3, 1}));  // DP 3: 24 / 3 = 8 ✓, EP 1
  r.global_batch = 20;  // DP 3 would cut the batch: skip to DP 2 (10 micro-batches)
  EXPECT_EQ(elastic_layout(7, {2, 4, 2}, r), (core::Layout{2, 2, 2}));
}

TEST(NodePool, ALostNodeIsExcludedAndComesBack) {
  NodePool p({"node0", "node1", "node2"}, 4, 600);
  EXPECT_EQ(p.healthy().size(), 3u);
  EXPECT_TRUE(p.lost("node1", "silent"));
  EXPECT_FALSE(p.lost("node1", "again"));
  EXPECT_FALSE(p.lost("nodeX", "not ours"));
  EXPECT_EQ(p.healthy(), (std::vector<std::string>{"node0", "node2"}));
  EXPECT_EQ(p.excluded().at("node1"), "silent");
  EXPECT_TRUE(p.restore("node1"));
  EXPECT_EQ(p.healthy().size(), 3u);
}

TEST(NodePool, SingleRankFailuresExcludeOnTheSecondWithinTheWindow) {
  NodePool p({"a", "b"}, 2, 100);
  EXPECT_FALSE(p.rank_failed("a", 0));
  EXPECT_FALSE(p.rank_failed("a", 150));  // the first is out of the window by now
  EXPECT_TRUE(p.rank_failed("a", 200));   // 50 s after the last
  EXPECT_EQ(p.healthy(), std::vector<std::string>{"b"});
}

// The same failure (a rank dying at step 3) on node a twice, then on node b: it follows the
// work, not a node. Node a comes back, b is not charged, and no node is excluded for it again;
// another failure still counts as before.
TEST(NodePool, AFailureThatFollowsTheWorkExcludesNoNode) {
  NodePool p({"a", "b"}, 2, 600);
  EXPECT_FALSE(p.rank_failed("a", 0, "a rank died in step 3"));
  EXPECT_TRUE(p.rank_failed("a", 10, "a rank died in step 3"));  // a: twice, excluded
  EXPECT_EQ(p.healthy(), std::vector<std::string>{"b"});
  std::vector<std::string> back;
  EXPECT_FALSE(p.rank_failed("b", 20, "a rank died in step 3", &back));
  EXPECT_EQ(back, std::vector<std::string>{"a"});
  EXPECT_EQ(p.healthy(), (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(p.rank_failed("b", 30, "a rank died in step 3"));
  EXPECT_FALSE(p.rank_failed("a", 40, "a rank died in step 3"));
  EXPECT_TRUE(p.excluded().empty());
  EXPECT_FALSE(p.rank_failed("b", 50, "a rank died in step 9"));
  EXPECT_TRUE(p.rank_failed("b", 60, "a rank hung in step 12"));  // b's own trouble: two others
  // Set-up failures (no signature) always count against their node.
  NodePool q({"a", "b"}, 2, 600);
  EXPECT_FALSE(q.rank_failed("b", 0, ""));
  EXPECT_FALSE(q.rank_failed("a", 1, ""));
  EXPECT_TRUE(q.rank_failed("a", 2, ""));
  // A signature seen on another node longer ago than the window is forgotten.
  NodePool w({"a", "b"}, 2, 100);
  EXPECT_FALSE(w.rank_failed("b", 0, "a rank died in step 3"));
  EXPECT_FALSE(w.rank_failed("a", 500, "a rank died in step 3"));
  EXPECT_TRUE(w.rank_failed("a", 510, "a rank died in step 3"));
}

TEST(NodePool, RanksArePlacedInOrderOnTheNodesAnAttemptUses) {
  NodePool p({"n0", "n1", "n2"}, 4, 600);
  const std::vector<std::string> used = {"n0", "n2"};
  EXPECT_EQ(p.node_of(0, used), "n0");
  EXPECT_EQ(p.node_of(3, used), "n0");
  EXPECT_EQ(p.node_of(4, used), "n2");
  EXPECT_EQ(p.node_of(8, used), "");
}

}  // namespace
}  // namespace duet::supervisor
