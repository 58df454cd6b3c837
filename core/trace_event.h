#pragma once
// What a trace event is, for the code that writes traces (io/trace.h, the engine) and the
// code that reads them back (report/): categories, the threads of a rank, and which compute
// op an event was. Writer and reader share these enums and name functions, so no reader
// parses an op out of an event's display name or guesses what a thread number means.

#include <optional>
#include <string>
#include <string_view>

namespace duet::core {

enum class TraceCategory { Compute, P2p, All2all, Dp, Ckpt, Idle };
const char* trace_category_name(TraceCategory c);  // "compute", "p2p", "all2all", "dp", "ckpt", "idle"
std::optional<TraceCategory> parse_trace_category(std::string_view name);

// The threads of one rank, as trace "tid"s.
enum class TraceThread {
  Compute = 0,         // the main thread: runs ops, the optimizer, checkpoints
  SecondExecutor = 1,  // the other half of an overlapped F&B pair (runtime.overlap)
  Progress = 2,        // drives point-to-point sends; its events overlap everything by design
  DeferredWeight = 3,  // deferred weight passes, run by whichever thread was waiting
  Device = 4,          // the GPU: an op's kernels, from the first one's start to the last one's end
                       // (CUDA events); not host time, so host accounting leaves it out
  Device2 = 5,         // the same for the second executor's ops: its own stream (kernels/cuda/streams.h)
  NcclStreams = 6,     // the GPU: the data plane's NCCL operations on their communicators' streams, each
                       // from its stream reaching it to its completion (CUDA events; runtime/comm_nccl.h)
};
constexpr int kTraceThreads = 7;
inline bool is_device_thread(TraceThread t) {
  return t == TraceThread::Device || t == TraceThread::Device2 || t == TraceThread::NcclStreams;
}
const char* trace_thread_name(TraceThread t);  // "compute", "second executor", ...

// The compute op an event belongs to (Compute events of the schedule's ops; None otherwise).
enum class TraceOp { None, F, B, I, W };
char trace_op_letter(TraceOp op);  // 'F', 'B', 'I', 'W'; '\0' for None
std::optional<TraceOp> parse_trace_op(std::string_view letter);

struct TraceOpRef {
  TraceOp op = TraceOp::None;
  int dir = -1;         // the rank's stage direction
  int microbatch = -1;  // within the direction
  friend bool operator==(const TraceOpRef&, const TraceOpRef&) = default;
  friend auto operator<=>(const TraceOpRef&, const TraceOpRef&) = default;
};
// "F0:3": the op's name in the schedule text format (scheduler/text_format.h).
std::string trace_op_name(const TraceOpRef& op);

struct TraceEvent {
  std::string name;  // for people: "F0:3", "wait activation 0:3", "all-to-all dispatch"
  TraceCategory cat = TraceCategory::Compute;
  TraceThread thread = TraceThread::Compute;
  double t0 = 0, t1 = 0;  // seconds on the machine's monotonic clock
  int step = 0;
  TraceOpRef op;  // which op (Compute events of schedule ops)
  // Time the recording thread was runnable but not running (waiting for a core) during the
  // event, seconds, not counting the events nested in it on the same thread (io/core_wait.h).
  // 0 for events recorded without it (the progress thread's sends, older traces).
  double core_wait = 0;
  // Device events: the time the GPU ran the op's kernels, seconds (≤ t1 − t0; the rest of the
  // span the GPU waited for the host). 0 elsewhere.
  double device_busy = 0;
};

}  // namespace duet::core
