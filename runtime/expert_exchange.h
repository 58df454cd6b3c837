#pragma once
// Expert parallelism over MPI: the model's ExpertExchange with MPI_Alltoall (counts) and
// MPI_Alltoallv (rows) on the expert-parallel communicator.

#include <vector>

#include "model/expert_exchange.h"
#include "runtime/mpi.h"
#include "runtime/progress.h"

namespace duet::runtime {

class MpiExpertExchange : public model::ExpertExchange {
 public:
  // Owns a duplicate of ep_comm, so each direction's all-to-alls have their own ordering.
  // With a baton, the baton is handed over for the duration of every collective (the other
  // half of an F&B pair, or deferred work, computes meanwhile); delay_us is added to each
  // dispatch and combine as network latency, waited out the same way.
  MpiExpertExchange(MPI_Comm ep_comm, int experts, Baton* baton = nullptr, int delay_us = 0,
                    io::TraceRecorder* trace = nullptr);
  int group_size() const override { return size_; }
  int group_rank() const override { return rank_; }
  void plan(model::ExpertPlan& plan, const int32_t* rows_per_expert, int experts) override;
  void dispatch(const model::ExpertPlan& plan, const float* in, std::vector<float>& out, int width) override;
  void combine(const model::ExpertPlan& plan, const float* in, std::vector<float>& out, int width) override;

  double seconds() const { return seconds_; }  // time spent in the all-to-alls
  long collectives() const { return collectives_; }  // dispatches and combines so far

 private:
  // delayed: whether runtime.comm_delay_us applies. The counts exchange is the header of a
  // dispatch, not a message of its own: only dispatch and combine carry the latency.
  template <class F>
  void collective(const char* name, bool delayed, F&& f);

  Comm comm_;
  Baton* baton_;
  int delay_us_;
  io::TraceRecorder* trace_;
  int size_, rank_, local_experts_;
  std::vector<float> staging_;
  std::vector<int> counts_a_, displs_a_, counts_b_, displs_b_;
  double seconds_ = 0;
  long collectives_ = 0;
};

}  // namespace duet::runtime
