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

// A duplicate of an in-process communicator whose point-to-point follows NCCL's rules
// (p2p_matches_tags() false, runtime/comm.h): what checks, without a GPU, that code written
// for the NCCL data plane issues its sends and receives in an order that meets. Its dups
// and splits follow the same rules. Collective over `local`.
std::unique_ptr<Communicator> ordered_p2p_dup(Communicator& local);

}  // namespace duet::runtime
