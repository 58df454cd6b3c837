#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "runtime/topology.h"

using duet::runtime::Topology;

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
