#pragma once
// Per-rank event traces in the Chrome trace-event JSON format (opens in Perfetto and
// chrome://tracing): one complete event ("ph":"X") per compute op, wait, send, all-to-all,
// data-parallel reduction. Every rank writes its own file; timestamps come from the
// machine's monotonic clock, so files of ranks on one machine line up when loaded together.
// What an event is (category, thread, op) is core/trace_event.h, shared with the readers;
// an event of a schedule op carries the op in its args: {"step":3,"op":"F","dir":0,"mb":5}.
// report/trace_reader.h reads the files back.

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "core/trace_event.h"

namespace duet::io {

using core::TraceCategory;
using core::TraceEvent;
using core::TraceOpRef;
using core::TraceThread;

class TraceRecorder {
 public:
  explicit TraceRecorder(size_t max_events = 500000) : max_events_(max_events) {}
  static double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  // Thread-safe. Events past max_events are counted, not kept.
  void add(std::string name, TraceCategory cat, TraceThread thread, double t0, double t1, TraceOpRef op = {});
  void set_step(int step) { step_ = step; }
  // Writes {"traceEvents": [...]} with pid = rank; throws std::runtime_error naming the path.
  void write(const std::string& path, int rank) const;
  std::vector<TraceEvent> events() const;
  size_t dropped() const { return dropped_; }

 private:
  mutable std::mutex mu_;
  std::vector<TraceEvent> events_;
  size_t max_events_, dropped_ = 0;
  int step_ = 0;
};

// Records [construction, destruction) as one event, when a recorder is given.
class TraceScope {
 public:
  TraceScope(TraceRecorder* r, TraceCategory cat, std::string name, TraceThread thread = TraceThread::Compute,
             TraceOpRef op = {})
      : r_(r), cat_(cat), name_(r ? std::move(name) : std::string()), thread_(thread), op_(op),
        t0_(r ? TraceRecorder::now() : 0) {}
  ~TraceScope() {
    if (r_) r_->add(std::move(name_), cat_, thread_, t0_, TraceRecorder::now(), op_);
  }
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;

 private:
  TraceRecorder* r_;
  TraceCategory cat_;
  std::string name_;
  TraceThread thread_;
  TraceOpRef op_;
  double t0_;
};

}  // namespace duet::io
