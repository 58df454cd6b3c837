#pragma once
// The communication interface with ranks as threads of one process (runtime/comm.h): what
// lets the engine, ZeRO and the trainer's reductions be unit-tested without mpirun. Sends
// are buffered (an isend completes at once); a collective completes when its last member
// arrives, which then computes it for everyone — reductions add in rank order, so results
// are deterministic.
//
//   run_local_ranks(4, [](Communicator& world) { ... one rank's code ... });

#include <functional>
#include <memory>

#include "runtime/comm.h"

namespace duet::runtime {

// Runs fn on `ranks` threads, each with its rank's world communicator, and joins them.
// Rethrows the first exception a rank threw (after every thread has ended; a rank that
// throws while others wait on it would hang them, so tests keep collectives in step).
void run_local_ranks(int ranks, const std::function<void(Communicator& world)>& fn);

}  // namespace duet::runtime
