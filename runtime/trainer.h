#pragma once
// Training on one process: the whole model as one stage, gradients accumulated over
// global_batch / micro_batch_size micro-batches per step. The reference every pipelined
// layout is checked against.

#include <string>

#include "io/config.h"
#include "io/metrics.h"

namespace duet::runtime {

struct TrainSummary {
  int steps = 0;
  double last_loss = 0;       // training loss of the last step
  double first_val_loss = 0;  // before the first step
  double last_val_loss = 0;   // after the last step
  double tokens_per_s = 0;    // training tokens over training time (evaluation excluded)
  double model_flops_per_s = 0;
  double seconds = 0;
};

// Trains as the config says, writing metrics.jsonl into run_dir and progress to `log`.
TrainSummary train_local(const io::RunConfig& cfg, const std::string& run_dir, io::RunLog& log);

}  // namespace duet::runtime
