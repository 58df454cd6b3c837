#pragma once
#include <cstdint>
#include <vector>

#include "kernels/buffer.h"

// Expert parallelism from the model's side: routed-expert rows leave the rank that routed
// them for the rank that owns the expert, and come back. The model only sees this
// interface; runtime/ implements it with MPI all-to-all (model/ stays free of MPI).
//
// Layouts. The *sender* layout is the permuted buffer of a MoE layer: one row per (token, k)
// assignment, grouped by global expert 0..E-1. The *owner* layout is what the owner of
// experts [e0, e0+El) computes on: rows grouped by local expert, and within an expert by
// source rank. dispatch() maps sender → owner, combine() owner → sender, for any row width
// (activations going out, expert outputs coming back, and the same for gradients).

namespace duet::model {

struct ExpertPlan {
  std::vector<int32_t> local_counts;  // rows per local expert (owner layout)
  std::vector<int32_t> send_counts;   // rows to each rank of the group (sender layout)
  std::vector<int32_t> recv_counts;   // rows from each rank of the group
  std::vector<int32_t> recv_expert_counts;  // [source rank][local expert] rows
  int owner_rows() const {
    int n = 0;
    for (int c : local_counts) n += c;
    return n;
  }
};

class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;
  virtual int group_size() const = 0;
  virtual int group_rank() const = 0;
  // Collective over the expert-parallel group: from this rank's rows per global expert
  // (E values) to the plan every later call of this layer and micro-batch uses.
  virtual void plan(ExpertPlan& plan, const int32_t* rows_per_expert, int experts) = 0;
  // Collective: sender layout (plan.send_counts rows) → owner layout (owner_rows()).
  virtual void dispatch(const ExpertPlan& plan, const float* in, kernels::Buffer<float>& out, int width) = 0;
  // Collective: owner layout → sender layout.
  virtual void combine(const ExpertPlan& plan, const float* in, kernels::Buffer<float>& out, int width) = 0;
};

}  // namespace duet::model
