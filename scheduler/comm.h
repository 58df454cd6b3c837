#pragma once
// Point-to-point communication derived from stage placement. A forward of (rank, dir)
// consumes the activation of its previous stage and produces one for the next stage; a
// backward (B, I, or the backward half of FB) consumes the gradient from the next stage and
// produces one for the previous stage; W moves nothing. The first stage reads data and the
// last stage computes the loss, so they have no input activation / input gradient.
//
// Engine contract: the receives of op k complete before op k starts; the sends of op k
// start after it ends. Sends never wait for the receiver (a progress thread drives them),
// which is also the model the validator's deadlock check and the simulator use.
#include <string>
#include <vector>

#include "scheduler/schedule.h"

namespace duet::sched {

enum class DataKind { Activation, Gradient };

// One tensor moving from a producing slot to a consuming slot. Local when both slots are on
// the same rank (DualPipeV's turn on rank N-1): nothing goes over the wire.
struct Transfer {
  DataKind kind;
  Slot from, to;
  int microbatch;
  bool local() const { return from.rank == to.rank; }
};

// The transfers one compute op waits for (inputs) and produces (outputs). At most two of
// each (an FB pair has a forward and a backward half).
struct OpIo {
  Transfer inputs[2];
  int num_inputs = 0;
  Transfer outputs[2];
  int num_outputs = 0;
};
OpIo op_io(const Placement& placement, int rank, const Op& op);

enum class CommKind { RecvActivation, RecvGradient, SendActivation, SendGradient };

// One point-to-point message as seen by one rank.
struct CommOp {
  CommKind kind;
  int peer;        // the rank at the other end
  int dir;         // direction of the compute op on this rank
  int peer_dir;    // direction of the matching compute op on the peer
  int microbatch;  // the same on both ends
  int op_index;    // the compute op on this rank it belongs to
  bool is_send() const { return kind == CommKind::SendActivation || kind == CommKind::SendGradient; }
  friend bool operator==(const CommOp&, const CommOp&) = default;
};

// For each rank, its messages in program order: for each compute op its receives, then its
// sends. Local transfers are left out. Every send has exactly one matching receive
// (same data kind and micro-batch, peers and directions swapped) on a valid schedule.
std::vector<std::vector<CommOp>> derive_comm(const Schedule& schedule);

// A tag both ends compute alike, unique per (data kind, receiving direction, micro-batch)
// between one pair of ranks: in [0, 4 * microbatches_per_dir).
int comm_tag(const CommOp& c, int microbatches_per_dir);

// "send activation F0:3 -> rank 1 (dir 0)" - for logs and error messages.
std::string format_comm(const CommOp& c);

}  // namespace duet::sched
