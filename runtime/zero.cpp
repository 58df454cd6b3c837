#include "runtime/zero.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace duet::runtime {

namespace {

// Slot indices in stage order: every member of a group holds the same stages, so creating
// communicators in stage order lines the collective MPI_Comm_split calls up.
std::vector<int> by_stage(const std::vector<StageSlot>& slots) {
  std::vector<int> v(slots.size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = (int)i;
  std::sort(v.begin(), v.end(), [&](int a, int b) { return slots[a].stage < slots[b].stage; });
  return v;
}

}  // namespace

ZeroOptimizer::ZeroOptimizer(const core::Topology& topo, int world_rank, const sched::Schedule& schedule,
                             std::vector<StageSlot>& slots, const model::OptimizerConfig& cfg, int64_t bucket_floats)
    : slots_(slots), state_(slots.size()) {
  const auto c = topo.coords(world_rank);
  std::vector<int> pp_ranks = {c.pp_rank};
  if (schedule.kind == sched::ScheduleKind::DualPipe && topo.pp() - 1 - c.pp_rank != c.pp_rank)
    pp_ranks.push_back(topo.pp() - 1 - c.pp_rank);
  std::vector<int> dense, experts;
  for (int p : pp_ranks) {
    for (int d = 0; d < topo.dp(); ++d) dense.push_back(topo.rank_of(p, d));
    for (int j = 0; j < topo.dp() / topo.ep(); ++j) experts.push_back(topo.rank_of(p, j * topo.ep() + c.ep_rank));
  }
  std::sort(dense.begin(), dense.end());
  std::sort(experts.begin(), experts.end());

  stage_order_ = by_stage(slots);
  for (int i : stage_order_) {
    SlotState& st = state_[i];
    st.dense = Comm::from_members(dense);
    st.experts = Comm::from_members(experts);
    st.dense_size = st.dense.size(), st.expert_size = st.experts.size();
    // Buckets: runs of dense or of expert tensors, cut at bucket_floats; each cut into one
    // near-equal shard per member of its group.
    const auto& specs = slots[i].arena->specs();
    model::ArenaRanges owned;
    for (size_t a = 0; a < specs.size();) {
      const bool expert = specs[a].expert >= 0;
      size_t b = a;
      while (b < specs.size() && (specs[b].expert >= 0) == expert) ++b;
      const int64_t run_begin = specs[a].offset, run_end = specs[b - 1].offset + specs[b - 1].numel();
      for (int64_t lo = run_begin; lo < run_end; lo += bucket_floats) {
        Bucket bk;
        bk.begin = lo, bk.end = std::min(run_end, lo + bucket_floats), bk.expert = expert;
        const Comm& comm = expert ? st.experts : st.dense;
        bk.comm = comm.get();
        const int P = comm.size();
        bk.me = comm.rank();
        const int64_t n = bk.end - bk.begin;
        for (int m = 0, off = 0; m < P; ++m) {
          const int cnt = (int)(n * (m + 1) / P - n * m / P);
          bk.counts.push_back(cnt), bk.displs.push_back(off), off += cnt;
        }
        owned.push_back({bk.begin + bk.displs[bk.me], bk.begin + bk.displs[bk.me] + bk.counts[bk.me]});
        st.buckets.push_back(std::move(bk));
      }
      a = b;
    }
    st.adam = std::make_unique<model::AdamW>(*slots[i].arena, cfg, owned);
  }
}

ZeroOptimizer::~ZeroOptimizer() {
  for (auto& st : state_)
    for (auto& b : st.buckets)
      if (b.req != MPI_REQUEST_NULL) MPI_Wait(&b.req, MPI_STATUS_IGNORE);
}

void ZeroOptimizer::start_reduce(int i) {
  SlotState& st = state_[i];
  if (st.started) return;
  st.started = true;
  float* g = slots_[i].arena->grads().data();
  for (auto& b : st.buckets) {
    b.shard.resize(b.counts[b.me]);
    if (b.counts.size() == 1) {
      std::memcpy(b.shard.data(), g + b.begin, sizeof(float) * b.shard.size());
      continue;
    }
    MPI_CHECK(MPI_Ireduce_scatter(g + b.begin, b.shard.data(), b.counts.data(), MPI_FLOAT, MPI_SUM, b.comm, &b.req));
  }
}

double ZeroOptimizer::finish_reduce(io::TraceRecorder* trace) {
  io::TraceScope event(trace, io::TraceCategory::Dp, "gradient reduce-scatter");
  // Starting order is fixed by each slot's stage communicators, so any order is safe here.
  for (size_t i = 0; i < state_.size(); ++i) start_reduce((int)i);
  double dense = 0, experts = 0;
  for (int i : stage_order_) {  // the load all-reduce below blocks: stage order on every copy
    SlotState& st = state_[i];
    float* g = slots_[i].arena->grads().data();
    for (auto& b : st.buckets) {
      wait_quietly(&b.req);
      std::memcpy(g + b.begin + b.displs[b.me], b.shard.data(), sizeof(float) * b.shard.size());
    }
    double d = 0, e = 0;
    st.adam->grad_sum_squares(*slots_[i].arena, d, e);
    dense += d, experts += e;
    // The router is dense: its load counts are summed over every copy of the stage.
    auto load = slots_[i].stage_model->expert_load();
    std::vector<int64_t> sum(load.begin(), load.end());
    if (!sum.empty() && st.dense_size > 1)
      MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sum.data(), (int)sum.size(), MPI_INT64_T, MPI_SUM, st.dense.get()));
    slots_[i].stage_model->reset_expert_load();
    slots_[i].reduced_load = std::move(sum);
    st.started = false;
  }
  // Owned shards partition every stage's elements across the world: summing them counts
  // each gradient element exactly once.
  double ss = dense + experts;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &ss, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
  return std::sqrt(ss);
}

void ZeroOptimizer::step(double lr, float clip_scale, io::TraceRecorder* trace) {
  for (size_t i = 0; i < state_.size(); ++i) state_[i].adam->step(*slots_[i].arena, lr, clip_scale);
  io::TraceScope event(trace, io::TraceCategory::Dp, "parameter all-gather");
  std::vector<MPI_Request> reqs;
  for (size_t i = 0; i < state_.size(); ++i) {
    float* p = slots_[i].arena->params().data();
    for (auto& b : state_[i].buckets) {
      if (b.counts.size() == 1) continue;
      reqs.emplace_back();
      MPI_CHECK(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, p + b.begin, b.counts.data(), b.displs.data(), MPI_FLOAT,
                                b.comm, &reqs.back()));
    }
  }
  wait_quietly((int)reqs.size(), reqs.data());
}

int64_t ZeroOptimizer::moment_floats() const {
  int64_t n = 0;
  for (const auto& st : state_)
    for (auto [b, e] : st.adam->owned()) n += 2 * (e - b);
  return n;
}

}  // namespace duet::runtime
