#include "core/trace_event.h"

namespace duet::core {

const char* trace_category_name(TraceCategory c) {
  switch (c) {
    case TraceCategory::Compute: return "compute";
    case TraceCategory::P2p: return "p2p";
    case TraceCategory::All2all: return "all2all";
    case TraceCategory::Dp: return "dp";
    case TraceCategory::Ckpt: return "ckpt";
    case TraceCategory::Idle: return "idle";
  }
  return "?";
}

std::optional<TraceCategory> parse_trace_category(std::string_view name) {
  for (auto c : {TraceCategory::Compute, TraceCategory::P2p, TraceCategory::All2all, TraceCategory::Dp,
                 TraceCategory::Ckpt, TraceCategory::Idle})
    if (name == trace_category_name(c)) return c;
  return std::nullopt;
}

const char* trace_thread_name(TraceThread t) {
  switch (t) {
    case TraceThread::Compute: return "compute";
    case TraceThread::SecondExecutor: return "second executor";
    case TraceThread::Progress: return "progress";
    case TraceThread::DeferredWeight: return "deferred weight passes";
    case TraceThread::Device: return "GPU";
    case TraceThread::Device2: return "GPU (second executor's stream)";
    case TraceThread::NcclStreams: return "GPU (NCCL streams)";
  }
  return "?";
}

char trace_op_letter(TraceOp op) {
  switch (op) {
    case TraceOp::F: return 'F';
    case TraceOp::B: return 'B';
    case TraceOp::I: return 'I';
    case TraceOp::W: return 'W';
    case TraceOp::None: break;
  }
  return '\0';
}

std::optional<TraceOp> parse_trace_op(std::string_view letter) {
  for (auto op : {TraceOp::F, TraceOp::B, TraceOp::I, TraceOp::W})
    if (letter.size() == 1 && letter[0] == trace_op_letter(op)) return op;
  return std::nullopt;
}

std::string trace_op_name(const TraceOpRef& op) {
  return std::string(1, trace_op_letter(op.op)) + std::to_string(op.dir) + ":" + std::to_string(op.microbatch);
}

}  // namespace duet::core
