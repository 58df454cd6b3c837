// report/simulated: the report of one simulated step carries the simulator's numbers, one
// pipeline's ranks and timeline, and the labels it was given; the comparison with the
// published DeepSeek-V3 figure appears only for a DeepSeek-V3-shaped model.
#include <gtest/gtest.h>

#include "report/simulated.h"

namespace duet::report {
namespace {

double headline(const Report& r, const std::string& key) {
  for (const auto& f : r.headline)
    if (f.key == key) return f.number;
  ADD_FAILURE() << "no headline field " << key;
  return 0;
}

SimOutcome small_outcome() {  // the cost model's default model on 4 GPUs = PP 2 × DP 2, DualPipe
  SimOutcome o;
  o.in.layout.pp = 2, o.in.layout.dp = 2, o.in.layout.ep = 1;
  o.in.layout.global_batch = 16;
  o.in.cluster.gpus = 4;
  const sched::Layout& l = o.in.layout;
  o.schedule = sched::make_schedule(l.schedule, l.pp, l.microbatches());
  o.job = sched::build_job_cost(o.in.model, o.in.cluster, o.in.efficiencies, l);
  o.result = sched::simulate(o.schedule, o.job.sim);
  o.summary = sched::summarize_step(o.job, o.schedule, o.result, o.in.cluster, l);
  return o;
}

TEST(Simulated, ReportCarriesTheSimulation) {
  const SimOutcome o = small_outcome();
  const Report r = simulated_report(o, {"small", "H800"});
  EXPECT_EQ(r.title, "Throughput report: small");
  EXPECT_EQ(r.source, "simulated");
  EXPECT_EQ(r.subtitle.rfind("4 × H800, PP 2 (dualpipe) × DP 2, EP 1, 8 micro-batches of 128 tokens", 0), 0u) << r.subtitle;
  EXPECT_EQ(headline(r, "step_time_s"), o.summary.step_time_s);
  EXPECT_EQ(headline(r, "tokens_per_s"), o.summary.tokens_per_s);
  EXPECT_EQ(headline(r, "hbm_gib"), 80);
  EXPECT_TRUE(r.published.metric.empty());  // not DeepSeek-V3: nothing to compare with
  ASSERT_EQ(r.busy_per_rank.size(), 2u);    // one pipeline's ranks
  EXPECT_EQ(r.busy_per_rank[1], o.result.rank_stats[1].busy);
  EXPECT_FALSE(r.timeline.empty());
  for (const auto& e : r.timeline) EXPECT_LT(e.rank, 2);
  ASSERT_EQ(r.tables.size(), 2u);
  EXPECT_EQ(r.tables[0].rows.size(), o.job.stages.size());
  EXPECT_EQ(r.tables[1].rows[0][1], "112 of 132");  // compute SMs
}

}  // namespace
}  // namespace duet::report
