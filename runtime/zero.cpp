#include "runtime/zero.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace duet::runtime {

ZeroOptimizer::ZeroOptimizer(std::vector<RankStage>& stages, ProcessGroups& groups, const model::OptimizerConfig& cfg,
                             int64_t bucket_floats)
    : stages_(stages), groups_(groups), state_(stages.size()) {
  for (size_t i = 0; i < stages.size(); ++i) {
    StageState& st = state_[i];
    StageGroups& g = groups.stage_of_dir(stages[i].dir);
    // Buckets: whole tensors, dense and expert ones apart, gathered while they fit in
    // bucket_floats (a larger tensor is a bucket of its own); each bucket is cut into one
    // near-equal shard per member of its group. Never cutting a tensor keeps each rank's
    // share of a tensor one contiguous piece, which is what a checkpoint saves.
    const auto& specs = stages[i].arena->specs();
    model::ArenaRanges owned;
    for (size_t a = 0; a < specs.size();) {
      const bool expert = specs[a].expert >= 0;
      size_t b = a + 1;
      const auto end_of = [&](size_t t) { return specs[t].offset + specs[t].numel(); };
      while (b < specs.size() && (specs[b].expert >= 0) == expert && end_of(b) - specs[a].offset <= bucket_floats) ++b;
      Bucket bk;
      bk.begin = specs[a].offset, bk.end = end_of(b - 1);
      bk.comm = expert ? g.expert_copies.get() : g.copies.get();
      const int P = bk.comm->size();
      bk.me = bk.comm->rank();
      const int64_t n = bk.end - bk.begin;
      for (int m = 0, off = 0; m < P; ++m) {
        const int cnt = (int)(n * (m + 1) / P - n * m / P);
        bk.counts.push_back(cnt), bk.displs.push_back(off), off += cnt;
      }
      owned.push_back({bk.begin + bk.displs[bk.me], bk.begin + bk.displs[bk.me] + bk.counts[bk.me]});
      st.buckets.push_back(std::move(bk));
      a = b;
    }
    st.adam = std::make_unique<model::AdamW>(*stages[i].arena, cfg, owned);
  }
}

void ZeroOptimizer::start_reduce(int dir) {
  StageState& st = state_[dir];
  if (st.started) return;
  st.started = true;
  float* g = stages_[dir].arena->grads().data();
  for (auto& b : st.buckets) {
    b.shard.resize(b.counts[b.me]);
    if (b.counts.size() == 1) {
      std::memcpy(b.shard.data(), g + b.begin, sizeof(float) * b.shard.size());
      continue;
    }
    b.req = b.comm->ireduce_scatter_sum(g + b.begin, b.shard.data(), b.counts.data());
  }
}

double ZeroOptimizer::finish_reduce(io::TraceRecorder* trace) {
  io::TraceScope event(trace, io::TraceCategory::Dp, "gradient reduce-scatter");
  // Starting order is fixed by each stage's own communicators, so any order is safe here.
  for (size_t i = 0; i < state_.size(); ++i) start_reduce((int)i);
  double dense = 0, experts = 0;
  for (int i : by_stage(stages_)) {
    StageState& st = state_[i];
    float* g = stages_[i].arena->grads().data();
    for (auto& b : st.buckets) {
      wait(b.req);
      std::memcpy(g + b.begin + b.displs[b.me], b.shard.data(), sizeof(float) * b.shard.size());
    }
    double d = 0, e = 0;
    st.adam->grad_sum_squares(*stages_[i].arena, d, e);
    dense += d, experts += e;
    st.started = false;
  }
  // Owned shards partition every stage's elements across the world: summing them counts
  // each gradient element exactly once.
  return std::sqrt(groups_.world->allreduce(dense + experts, ReduceOp::Sum));
}

void ZeroOptimizer::step(double lr, float clip_scale, io::TraceRecorder* trace) {
  for (size_t i = 0; i < state_.size(); ++i) state_[i].adam->step(*stages_[i].arena, lr, clip_scale);
  io::TraceScope event(trace, io::TraceCategory::Dp, "parameter all-gather");
  std::vector<Request> reqs;
  for (size_t i = 0; i < state_.size(); ++i) {
    float* p = stages_[i].arena->params().data();
    for (auto& b : state_[i].buckets)
      if (b.counts.size() > 1) reqs.push_back(b.comm->iallgatherv_inplace(p + b.begin, b.counts.data(), b.displs.data()));
  }
  wait_all(reqs);
}

int64_t ZeroOptimizer::moment_floats() const {
  int64_t n = 0;
  for (const auto& st : state_)
    for (auto [b, e] : st.adam->owned()) n += 2 * (e - b);
  return n;
}

}  // namespace duet::runtime
