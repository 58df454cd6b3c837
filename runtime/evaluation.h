#pragma once
// Validation loss: fixed held-out sequences pushed through model copy 0 of each data-parallel
// replica's pipeline (forwards only), the replicas splitting the sequences between them.

#include <functional>

#include "io/data.h"
#include "runtime/comm.h"
#include "runtime/progress.h"
#include "runtime/stages.h"
#include "scheduler/placement.h"

namespace duet::runtime {

struct EvalShape {
  int batch = 1, seq_len = 1;  // micro-batch size and sequence length
  int sequences = 0;           // validation sequences in all (eval_batches × global_batch)
};

// Mean token loss over the validation sequences. Collective over `world`; `pipeline` is
// this replica's pipeline group (the evaluation communicator: no step traffic on it). The
// expert exchanges hand the baton over inside a forward, so with overlap on this thread
// takes it for the duration (pass nullptr when overlap is off). batch_done runs after each
// micro-batch of this rank (progress for the supervisor: a long validation is not a hang).
double validation_loss(std::vector<RankStage>& stages, const sched::Placement& placement, int pp_rank, int dp_rank,
                       int dp, const EvalShape& shape, const io::TokenDataset& data, Communicator& pipeline,
                       Communicator& world, Baton* baton, const std::function<void()>& batch_done = {});

}  // namespace duet::runtime
