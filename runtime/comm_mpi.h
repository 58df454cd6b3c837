#pragma once
// The communication interface over Open MPI (runtime/comm.h). Each Communicator owns its
// MPI communicator (COMM_WORLD is borrowed, never freed); every call is checked with
// MPI_CHECK, so a failure names the call, file, line, rank and host and aborts the job.

#include <memory>

#include "runtime/comm.h"

namespace duet::runtime {

// COMM_WORLD of an initialised MPI (MpiSession, runtime/mpi.h).
std::unique_ptr<Communicator> mpi_world();

}  // namespace duet::runtime
