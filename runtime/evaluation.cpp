#include "runtime/evaluation.h"

#include <cstring>

namespace duet::runtime {

namespace {

// Σ token losses of validation sequences [first, first+count), on the rank holding the last
// stage of model copy 0 (0 elsewhere).
double eval_loss_sum(std::vector<RankStage>& stages, const sched::Placement& pl, int pp_rank, const EvalShape& shape,
                     int first, int count, const io::TokenDataset& data, Communicator& comm,
                     const std::function<void()>& batch_done) {
  const int B = shape.batch, T = shape.seq_len;
  const int n = B * T * stages[0].model->config().d_model;
  constexpr int kTag = 0;
  std::vector<float> in(n), carry;
  std::vector<int32_t> window(T + 1), tok((size_t)B * T), tgt((size_t)B * T);
  double sum = 0;
  for (int seq = first; seq < first + count; seq += B) {
    for (int j = 0; j < B; ++j) {
      data.val_sequence(seq + j, T, window.data());
      for (int t = 0; t < T; ++t) tok[(size_t)j * T + t] = window[t], tgt[(size_t)j * T + t] = window[t + 1];
    }
    const float* local = nullptr;  // output of this rank's previous stage, if it was local
    for (int st = 0; st < pl.num_stages(); ++st) {
      const sched::Slot me = pl.slot_of(0, st);
      if (me.rank != pp_rank) continue;
      RankStage& s = stages[me.dir];
      const sched::Slot prev = pl.prev(pp_rank, me.dir), next = pl.next(pp_rank, me.dir);
      if (prev.valid() && prev.rank != pp_rank) {
        Request r = comm.irecv(in, prev.rank, kTag);
        wait(r);
      } else if (prev.valid()) {
        std::memcpy(in.data(), local, sizeof(float) * n);
      }
      auto& a = s.activations[0];
      s.model->forward(a, {B, T, tok.data(), tgt.data(), false}, s.first ? nullptr : in.data());
      if (s.last) {
        sum += s.model->loss_sum(a);
      } else if (next.rank != pp_rank) {
        Request r = comm.isend({s.model->output(a), (size_t)n}, next.rank, kTag);
        wait(r);
      } else {
        carry.assign(s.model->output(a), s.model->output(a) + n);
        local = carry.data();
      }
    }
    if (batch_done) batch_done();
  }
  return sum;
}

}  // namespace

double validation_loss(std::vector<RankStage>& stages, const sched::Placement& placement, int pp_rank, int dp_rank,
                       int dp, const EvalShape& shape, const io::TokenDataset& data, Communicator& pipeline,
                       Communicator& world, Baton* baton, const std::function<void()>& batch_done) {
  const int per_replica = shape.sequences / dp;
  double sum;
  {
    if (baton) baton->acquire();
    struct Release {
      Baton* b;
      ~Release() {
        if (b) b->release();
      }
    } release{baton};
    sum = eval_loss_sum(stages, placement, pp_rank, shape, dp_rank * per_replica, per_replica, data, pipeline,
                         batch_done);
  }
  sum = world.allreduce(sum, ReduceOp::Sum);
  return sum / ((double)per_replica * dp * shape.seq_len);
}

}  // namespace duet::runtime
