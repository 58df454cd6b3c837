#pragma once
// Expert parallelism: the model's ExpertExchange as an all-to-all of counts and an
// all-to-all(v) of rows on the expert-parallel communicator (runtime/comm.h).

#include <vector>

#include "kernels/buffer.h"
#include "model/expert_exchange.h"
#include "runtime/comm.h"
#include "runtime/progress.h"

namespace duet::runtime {

class CommExpertExchange : public model::ExpertExchange {
 public:
  // comm: the expert-parallel group, this direction's own (ProcessGroups::expert_exchange),
  // so each direction's all-to-alls have their own ordering. With a baton, the baton is handed over for the duration of every collective (the other
  // half of an F&B pair, or deferred work, computes meanwhile); delay_us is each dispatch's
  // and combine's network latency: rows are usable delay_us after they were sent.
  CommExpertExchange(Communicator& comm, int experts, Baton* baton = nullptr, int delay_us = 0,
                     io::TraceRecorder* trace = nullptr);
  int group_size() const override { return size_; }
  int group_rank() const override { return rank_; }
  void plan(model::ExpertPlan& plan, const int32_t* rows_per_expert, int experts) override;
  void dispatch(const model::ExpertPlan& plan, const float* in, kernels::Buffer<float>& out, int width) override;
  void combine(const model::ExpertPlan& plan, const float* in, kernels::Buffer<float>& out, int width) override;

  double seconds() const { return seconds_; }  // time spent in the all-to-alls
  long collectives() const { return collectives_; }  // dispatches and combines so far

 private:
  // Posts a collective and waits for it with the baton handed over. delayed: whether
  // runtime.comm_delay_us applies — then the wait lasts until until() + the delay. The counts
  // exchange is the header of a dispatch, not a message of its own: only dispatch and combine
  // carry the latency.
  template <class Post, class Until>
  void collective(const char* name, bool delayed, Post&& post, Until&& until);
  // All-to-all of rows by send_/recv_ counts and displacements (floats), stamped with their
  // send time when a latency is modelled.
  void exchange_rows(const char* name, const float* send, float* recv);

  Communicator& comm_;
  Baton* baton_;
  int delay_us_;
  io::TraceRecorder* trace_;
  int size_, rank_, local_experts_;
  std::vector<float> staging_;
  std::vector<int> send_counts_, send_displs_, recv_counts_, recv_displs_;
  std::vector<float> stamped_send_, stamped_recv_;
  std::vector<int> stamped_send_counts_, stamped_send_displs_, stamped_recv_counts_, stamped_recv_displs_;
  double seconds_ = 0;
  long collectives_ = 0;
};

}  // namespace duet::runtime
