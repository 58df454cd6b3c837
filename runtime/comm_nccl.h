#pragma once
// The NCCL implementation of the communication interface (runtime/comm.h): the data plane
// between GPUs, under the MPI control plane — the NCCL unique id travels over a control
// communicator, and MPI keeps bootstrap, agreement and the supervisor's traffic.
//
// One process drives one GPU: the CUDA runtime's current device of the creating thread
// (bind a rank to its GPU with CUDA_VISIBLE_DEVICES, as Slurm's --gpus-per-task=1 does, so
// that every thread of the process sees the same device 0).
//
// What differs from MPI:
//   - point-to-point has no tags (p2p_matches_tags() is false): the n-th send to a peer meets
//     that peer's n-th receive from this rank, counts must be equal, and a send completes
//     only once met. Each communicator has one CUDA stream, so a rank's operations on it run
//     in the order issued — the engine gives every message stream its own duplicate
//     (runtime/engine.h), and runtime/comm_local.h's ordered mode checks such code on CPUs;
//   - buffers of sends, receives and the large collectives must be device memory (cudaMalloc
//     or managed; runtime.device: cuda puts every model buffer there). All-reduce, broadcast
//     and barrier also take host memory (staged through device scratch): they carry a few
//     values (losses, flags);
//   - all-to-all(v) is grouped sends and receives; reduce-scatter and all-gather with unequal
//     blocks are grouped reduces and broadcasts;
//   - ReduceOp::LogicalAnd is NCCL's minimum: its values must be 0 or 1 flags.
// Communicators are non-blocking (ncclCommInitRankConfig, blocking = 0), so a request's
// test() returns at once and wait(deadline) returns at its deadline; a hang then ends with
// abort() (ncclCommAbort), after which every request of the communicator is complete (its
// buffers' contents undefined) and nothing waits for the GPU forever. An asynchronous NCCL
// error (a peer gone, unequal counts) is raised from test() as std::runtime_error naming the
// rank, and aborts the communicator first, so no other request waits on it.
//
// Without a GPU, this file's code runs over host stand-ins of NCCL and the CUDA runtime
// (tests/nccl_emu/nccl_emu.h): every operation, the engine's training over it, abort.
//
// NCCL refuses two ranks on one GPU; several ranks on a one-GPU machine keep the staged
// path (device memory is managed, MPI carries it: docs/gpu.md).

#include <memory>
#include <string>

#include "runtime/comm.h"

namespace duet::runtime {

// "" when this build and machine can create NCCL communicators, else why not.
std::string nccl_absent_reason();

// A communicator of the same members as `control` (ranked alike) over NCCL, on this
// process's current CUDA device. Collective over `control` (rank 0 makes the unique id and
// broadcasts it). Gives up after `init_timeout` (aborting the half-made communicator).
// Throws std::runtime_error when NCCL is absent (nccl_absent_reason()) or fails.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& control,
                                                     Clock::duration init_timeout = std::chrono::minutes(5));

// Ends every operation of an NCCL communicator made above (ncclCommAbort): what a rank does
// when a wait passed its deadline. The communicator then completes every request and fails
// every new one. Throws std::logic_error for any other communicator.
void abort_nccl_communicator(Communicator& nccl);

}  // namespace duet::runtime
