#pragma once
// The exit codes of `duet train` and `duet launch`, one table for the code and the docs
// (docs/runtime.md, "Exit codes"). A supervisor or a batch script decides from the code alone
// whether to rerun, requeue or stop, so each code means one thing.

namespace duet::core {

enum class ExitCode : int {
  Done = 0,                // trained to train.steps (or stopped at train.stop_at with its checkpoint saved)
  Failed = 1,              // a rank failed while running (an error, a killed rank); MPI_Abort uses it too
  Usage = 2,               // config or command-line error, or the job does not fit: nothing was trained
  CheckpointNotSaved = 3,  // training ran, but the checkpoint it was asked to end with was not saved
  GaveUp = 4,              // the supervisor stopped restarting: fault.max_restarts failures without a new checkpoint
  RequeueRequested = 5,    // stopped by SIGUSR1 with a checkpoint: the scheduler should run it again
  Interrupted = 6,         // a second SIGINT stopped the job at once, during its stop's save
};

constexpr int exit_code(ExitCode c) { return static_cast<int>(c); }

// What a code means, for messages: "checkpoint not saved"; "" for codes not in the table.
constexpr const char* exit_code_meaning(int code) {
  switch (code) {
    case 0: return "done";
    case 1: return "a rank failed";
    case 2: return "config or usage error";
    case 3: return "checkpoint not saved";
    case 4: return "gave up";
    case 5: return "requeue requested";
    case 6: return "interrupted";
    default: return "";
  }
}

}  // namespace duet::core
