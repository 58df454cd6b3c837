#pragma once
// The training loop, for every layout: one process (PP 1 × DP 1 runs the 1F1B schedule on
// one rank: forward and backward of each micro-batch in turn) or many ranks — under mpirun
// (runtime/comm_mpi.h) or as threads of one process (runtime/comm_local.h, for tests).

#include <functional>
#include <memory>
#include <string>

#include "checkpoint/fence.h"
#include "io/config.h"
#include "io/metrics.h"
#include "runtime/comm.h"

namespace duet::kernels {
struct Backend;
}

namespace duet::runtime {

struct TrainSummary {
  int steps = 0;              // the step the run is at when train() returns
  int trained = 0;            // steps this call trained (0 when it resumed at the end)
  double last_loss = 0;       // training loss of the last step
  double first_val_loss = 0;  // before the first step this call trains
  double last_val_loss = 0;   // at last_val_step
  int last_val_step = 0;      // the step of the latest evaluation (that first one, when no other ran)
  double tokens_per_s = 0;    // training tokens over training time (evaluation excluded)
  double model_flops_per_s = 0;
  double seconds = 0;
  double wait_fraction = 0;   // share of step time the ranks spent blocked on communication
  bool stopped = false;       // ended at train.stop_at
  std::string checkpoint_not_saved;  // "" or why the run's last requested checkpoint is missing
  bool end_not_saved = false;        // that checkpoint was of the step the run ended at
  ckpt::Fence fence;          // this attempt's: what marks the run finished is fenced like a save
  std::string superseded;     // "" or why it stopped saving nothing: a newer attempt owns the run
};

// Trains as the config says, as rank world->rank() of world->size(). Rank 0 writes
// metrics.jsonl into run_dir and progress to `log` (other ranks pass a log that does not
// echo). The layout must match the world size. Collective over `world`. `backend`: the
// kernels to compute with; nullptr (always, outside tests) = runtime.device's.
// `data_plane`: when set, the training data (pipeline messages, expert all-to-alls, gradient
// reductions) travels over the communicators it makes from those groups (runtime/
// process_groups.h) — the NCCL data plane on GPUs, runtime/comm_local.h's ordered mode or
// emulated NCCL in tests; empty = runtime.data_plane's.
TrainSummary train(const io::RunConfig& cfg, const std::string& run_dir, io::RunLog& log,
                   std::unique_ptr<Communicator> world, const kernels::Backend* backend = nullptr,
                   const DataPlane& data_plane = {});

}  // namespace duet::runtime
