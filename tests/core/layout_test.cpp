#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "core/layout.h"

using duet::core::Topology;

TEST(Topology, WorkedExample) {
  const Topology t(8, 2, 4, 2);
  const auto c = t.coords(5);
  EXPECT_EQ(c.pp_rank, 1);
  EXPECT_EQ(c.dp_rank, 1);
  EXPECT_EQ(c.ep_rank, 1);
  EXPECT_EQ(c.edp_rank, 0);
  const auto g = t.groups(1);
  EXPECT_EQ(g.pipeline, (std::vector<int>{1, 5}));
  EXPECT_EQ(g.data_parallel, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(g.expert_parallel, (std::vector<int>{0, 1}));
  EXPECT_EQ(g.expert_data_parallel, (std::vector<int>{1, 3}));
}

// Invariants over many layouts: groups partition the world, a rank is in each of its own
// groups, members agree on the group, sizes are right.
TEST(Topology, GroupsPartitionTheWorld) {
  struct L { int pp, dp, ep; };
  for (L l : {L{1, 1, 1}, L{4, 1, 1}, L{1, 8, 4}, L{4, 2, 2}, L{2, 2, 2}, L{3, 6, 3}, L{16, 128, 64}, L{8, 16, 1}}) {
    const Topology t(l.pp * l.dp, l.pp, l.dp, l.ep);
    std::set<std::vector<int>> pipes, dps, eps, edps;
    for (int r = 0; r < t.world(); ++r) {
      const auto g = t.groups(r);
      ASSERT_EQ((int)g.pipeline.size(), l.pp);
      ASSERT_EQ((int)g.data_parallel.size(), l.dp);
      ASSERT_EQ((int)g.expert_parallel.size(), l.ep);
      ASSERT_EQ((int)g.expert_data_parallel.size(), l.dp / l.ep);
      for (const auto* grp : {&g.pipeline, &g.data_parallel, &g.expert_parallel, &g.expert_data_parallel}) {
        ASSERT_NE(std::find(grp->begin(), grp->end(), r), grp->end());
        for (int m : *grp) ASSERT_EQ(*grp, [&] {  // every member sees the same group
          const auto h = t.groups(m);
          if (grp == &g.pipeline) return h.pipeline;
          if (grp == &g.data_parallel) return h.data_parallel;
          if (grp == &g.expert_parallel) return h.expert_parallel;
          return h.expert_data_parallel;
        }());
      }
      // Pipeline order follows pp_rank; expert groups are the same pipeline stage.
      for (int p = 0; p < l.pp; ++p) ASSERT_EQ(t.coords(g.pipeline[p]).pp_rank, p);
      for (int m : g.expert_parallel) ASSERT_EQ(t.coords(m).pp_rank, t.coords(r).pp_rank);
      for (int m : g.expert_data_parallel) ASSERT_EQ(t.coords(m).ep_rank, t.coords(r).ep_rank);
      pipes.insert(g.pipeline), dps.insert(g.data_parallel), eps.insert(g.expert_parallel);
      edps.insert(g.expert_data_parallel);
    }
    EXPECT_EQ((int)pipes.size(), l.dp);
    EXPECT_EQ((int)dps.size(), l.pp);
    EXPECT_EQ((int)eps.size(), l.pp * l.dp / l.ep);
    EXPECT_EQ((int)edps.size(), l.pp * l.ep);
  }
}

TEST(Topology, DeepSeekLayoutKeepsExpertGroupsOnEightNodes) {
  const Topology t(2048, 16, 128, 64);
  const auto g = t.groups(1000);
  // 64 consecutive ranks: 8 nodes of 8 GPUs.
  EXPECT_EQ(g.expert_parallel.back() - g.expert_parallel.front(), 63);
  EXPECT_EQ(g.expert_parallel.front() % 64, 0);
  EXPECT_EQ(g.expert_data_parallel.size(), 2u);
}

TEST(Topology, RejectsInvalidLayouts) {
  auto msg = [](int w, int pp, int dp, int ep) {
    try {
      Topology(w, pp, dp, ep);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(msg(8, 4, 4, 1).find("pp × dp"), std::string::npos);
  EXPECT_NE(msg(8, 2, 4, 3).find("ep must divide dp"), std::string::npos);
  EXPECT_NE(msg(0, 1, 1, 1).find("≥ 1"), std::string::npos);
}

// ---- valid_layouts: the one rule set every layout check uses ------------------------------

namespace {
duet::core::LayoutRules tiny_rules() {  // configs/tiny.yaml: global batch 16 of 1, 8 experts
  duet::core::LayoutRules r;
  r.schedule = duet::core::ScheduleKind::DualPipe;
  r.global_batch = 16, r.micro_batch_size = 1, r.experts = 8;
  return r;
}
}  // namespace

TEST(ValidLayouts, EightRanksOfTinyDualPipe) {
  using duet::core::Layout;
  const auto v = duet::core::valid_layouts(8, tiny_rules());
  // pp 1 runs 1F1B (any dp); DualPipe needs an even pp and ≥ 2·pp micro-batches per pipeline:
  // pp 2 × dp 4 gives 4 (= 2·2), pp 4 × dp 2 gives 8 (= 2·4), pp 8 × dp 1 gives 16 (= 2·8).
  const std::vector<Layout> want = {{1, 8, 1}, {1, 8, 2}, {1, 8, 4}, {1, 8, 8}, {2, 4, 1}, {2, 4, 2},
                                    {2, 4, 4}, {4, 2, 1}, {4, 2, 2}, {8, 1, 1}};
  EXPECT_EQ(v, want);
  for (const Layout& l : v) EXPECT_EQ(duet::core::layout_violation(8, l, tiny_rules()), "");
}

TEST(ValidLayouts, EveryRejectedLayoutSaysWhy) {
  const auto rules = tiny_rules();
  const auto why = [&](int world, int pp, int dp, int ep) {
    return duet::core::layout_violation(world, {pp, dp, ep}, rules);
  };
  EXPECT_NE(why(8, 4, 4, 1).find("must equal the number of ranks (8)"), std::string::npos);
  EXPECT_NE(why(8, 2, 4, 3).find("parallel.ep (3) must divide parallel.dp (4)"), std::string::npos);
  EXPECT_NE(why(6, 1, 6, 1).find("must be divisible by parallel.dp × train.micro_batch_size (6 × 1)"), std::string::npos);
  EXPECT_NE(why(12, 3, 4, 1).find("dualpipe: ranks must be even"), std::string::npos);
  // pp 8 × dp 2 leaves 8 micro-batches per pipeline; DualPipe at pp 8 needs 16.
  EXPECT_NE(why(16, 8, 2, 1).find("micro-batches per pipeline"), std::string::npos);
  auto r16 = rules;
  r16.experts = 6;
  EXPECT_NE(duet::core::layout_violation(8, {2, 4, 4}, r16).find("must divide model.moe.experts (6)"),
            std::string::npos);
  EXPECT_THROW(duet::core::microbatches_per_pipeline(8, {4, 4, 1}, rules), std::invalid_argument);
  EXPECT_EQ(duet::core::microbatches_per_pipeline(8, {4, 2, 2}, rules), 8);
}

TEST(ValidLayouts, AgreeWithTopologyAndTheScheduleGenerators) {
  // Every layout valid_layouts returns can be laid out; the schedule rule is the generators'.
  for (int world : {1, 2, 4, 6, 8, 12, 16}) {
    for (const auto& l : duet::core::valid_layouts(world, tiny_rules())) {
      EXPECT_NO_THROW(duet::core::Topology(world, l.pp, l.dp, l.ep));
    }
  }
  EXPECT_EQ(duet::core::effective_schedule(duet::core::ScheduleKind::DualPipe, 1), duet::core::ScheduleKind::OneFOneB);
}

TEST(Topology, StageCopiesFollowTheSchedule) {
  const duet::core::Topology t(8, 4, 2, 2);  // the default job: PP 4 × DP 2, EP 2
  // 1F1B: a stage's copies are its data-parallel group.
  EXPECT_EQ(t.groups(2).stage_copies, (std::vector<int>{2, 3}));
  EXPECT_EQ(t.groups(2).expert_copies, (std::vector<int>{2}));
  // DualPipe: pp_rank 1 holds stages 1 and 2, as does its mirror pp_rank 2 (ranks 4, 5).
  const auto g = t.groups(2, duet::core::ScheduleKind::DualPipe);
  EXPECT_EQ(g.stage_copies, (std::vector<int>{2, 3, 4, 5}));
  EXPECT_EQ(g.expert_copies, (std::vector<int>{2, 4}));
  EXPECT_EQ(t.groups(3, duet::core::ScheduleKind::DualPipe).expert_copies, (std::vector<int>{3, 5}));
}
