#include "scheduler/comm.h"

namespace duet::sched {
namespace {

// The forward half of an op on (rank, dir): activation in from prev, out to next.
void add_forward_io(const Placement& p, int rank, int dir, int mb, OpIo& io) {
  Slot self{rank, dir};
  Slot prev = p.prev(rank, dir), next = p.next(rank, dir);
  if (prev.valid()) io.inputs[io.num_inputs++] = {DataKind::Activation, prev, self, mb};
  if (next.valid()) io.outputs[io.num_outputs++] = {DataKind::Activation, self, next, mb};
}

// The backward half: gradient in from next, out to prev.
void add_backward_io(const Placement& p, int rank, int dir, int mb, OpIo& io) {
  Slot self{rank, dir};
  Slot prev = p.prev(rank, dir), next = p.next(rank, dir);
  if (next.valid()) io.inputs[io.num_inputs++] = {DataKind::Gradient, next, self, mb};
  if (prev.valid()) io.outputs[io.num_outputs++] = {DataKind::Gradient, self, prev, mb};
}

}  // namespace

OpIo op_io(const Placement& placement, int rank, const Op& op) {
  OpIo io;
  switch (op.kind) {
    case OpKind::F: add_forward_io(placement, rank, op.dir, op.microbatch, io); break;
    case OpKind::B:
    case OpKind::I: add_backward_io(placement, rank, op.dir, op.microbatch, io); break;
    case OpKind::W: break;
    case OpKind::FB:
      add_forward_io(placement, rank, op.dir, op.microbatch, io);
      add_backward_io(placement, rank, op.dir2, op.microbatch2, io);
      break;
  }
  return io;
}

std::vector<std::vector<CommOp>> derive_comm(const Schedule& schedule) {
  const Placement placement = schedule.placement();
  std::vector<std::vector<CommOp>> comm(schedule.ranks);
  for (int rank = 0; rank < schedule.ranks; ++rank) {
    const auto& ops = schedule.ops[rank];
    for (int k = 0; k < static_cast<int>(ops.size()); ++k) {
      OpIo io = op_io(placement, rank, ops[k]);
      for (int i = 0; i < io.num_inputs; ++i) {
        const Transfer& t = io.inputs[i];
        if (t.local()) continue;
        comm[rank].push_back({t.kind == DataKind::Activation ? CommKind::RecvActivation : CommKind::RecvGradient,
                              t.from.rank, t.to.dir, t.from.dir, t.microbatch, k});
      }
      for (int i = 0; i < io.num_outputs; ++i) {
        const Transfer& t = io.outputs[i];
        if (t.local()) continue;
        comm[rank].push_back({t.kind == DataKind::Activation ? CommKind::SendActivation : CommKind::SendGradient,
                              t.to.rank, t.from.dir, t.to.dir, t.microbatch, k});
      }
    }
  }
  return comm;
}

int comm_tag(const CommOp& c, int microbatches_per_dir) {
  bool gradient = c.kind == CommKind::RecvGradient || c.kind == CommKind::SendGradient;
  int receiving_dir = c.is_send() ? c.peer_dir : c.dir;
  return ((gradient ? 2 : 0) + receiving_dir) * microbatches_per_dir + c.microbatch;
}

std::string format_comm(const CommOp& c) {
  const char* what = "";
  switch (c.kind) {
    case CommKind::RecvActivation: what = "recv activation"; break;
    case CommKind::RecvGradient: what = "recv gradient"; break;
    case CommKind::SendActivation: what = "send activation"; break;
    case CommKind::SendGradient: what = "send gradient"; break;
  }
  return std::string(what) + " dir " + std::to_string(c.dir) + " micro-batch " + std::to_string(c.microbatch) +
         (c.is_send() ? " -> rank " : " <- rank ") + std::to_string(c.peer) + " dir " + std::to_string(c.peer_dir) +
         " (op " + std::to_string(c.op_index) + ")";
}

}  // namespace duet::sched
