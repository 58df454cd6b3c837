#pragma once
// Per-rank event traces in the Chrome trace-event JSON format (opens in Perfetto and
// chrome://tracing): one complete event ("ph":"X") per compute op, wait, send, all-to-all,
// data-parallel reduction. Every rank writes its own file; timestamps come from the
// machine's monotonic clock, so files of ranks on one machine line up when loaded together.
// What an event is (category, thread, op) is core/trace_event.h, shared with the readers;
// an event of a schedule op carries the op in its args: {"step":3,"op":"F","dir":0,"mb":5},
// and an event during which its thread waited for a core says for how long, in µs, not
// counting the events nested in it: {"step":3,"core_wait_us":412.0} (io/core_wait.h). On a
// GPU each op also has an event on the "GPU" thread, from its first kernel's start to its
// last kernel's end (CUDA events), saying how long its kernels ran: {"gpu_busy_us":812.5}.
// report/trace_reader.h reads the files back.
//
// Events are streamed: the file is created with its header when the recorder is, and every
// `chunk_events` events — or, sooner, the events of the last second — are appended and
// flushed, so memory stays bounded however long the run, and a killed run leaves a file that
// holds its events up to about a second before the kill (one complete event a line; the
// closing "]}" is missing, which the reader tolerates).

#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/trace_event.h"
#include "io/core_wait.h"

namespace duet::io {

using core::TraceCategory;
using core::TraceEvent;
using core::TraceOpRef;
using core::TraceThread;

class TraceRecorder {
 public:
  // Creates `path` (its folder must exist) with the metadata lines for `rank`; throws
  // std::runtime_error naming the path when it cannot.
  TraceRecorder(const std::string& path, int rank, size_t chunk_events = 4096);
  ~TraceRecorder();  // close(), errors swallowed: destructors never throw
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  static double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  // Thread-safe. The thread that fills a chunk writes it out (outside the lock that add()
  // takes, so other threads keep recording meanwhile).
  // core_wait, device_busy: TraceEvent's.
  void add(std::string name, TraceCategory cat, TraceThread thread, double t0, double t1, TraceOpRef op = {},
           double core_wait = 0, double device_busy = 0);
  void set_step(int step) { step_ = step; }
  // Writes what is buffered and flushes; the file stays open for more.
  void flush();
  // Writes the rest and ends the JSON. Idempotent. Throws std::runtime_error naming the path
  // on a write error (also one from an earlier chunk).
  void close();
  const std::string& path() const { return path_; }
  size_t events_written() const;

 private:
  struct Close {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  void write_chunk(const std::vector<TraceEvent>& events);  // holds file_mu_

  std::string path_;
  int rank_;
  size_t chunk_;
  mutable std::mutex mu_;       // buffer_
  std::vector<TraceEvent> buffer_;
  mutable std::mutex file_mu_;  // the file: chunks go out whole and in order
  std::unique_ptr<std::FILE, Close> file_;
  static constexpr double kMaxAgeSeconds = 1.0;
  double last_out_ = now();  // when events last went to the file (under mu_)
  size_t written_ = 0;
  bool write_failed_ = false, closed_ = false;
  int step_ = 0;
};

// Records [construction, destruction) as one event, when a recorder is given, with the time
// its thread waited for a core meanwhile less what the scopes nested in it on this thread
// recorded: so a wait's figure excludes the deferred weight pass it ran, and an op's the
// all-to-all inside it, and the figures of one thread add up without double counting.
class TraceScope {
 public:
  TraceScope(TraceRecorder* r, TraceCategory cat, std::string name, TraceThread thread = TraceThread::Compute,
             TraceOpRef op = {})
      : r_(r), cat_(cat), name_(r ? std::move(name) : std::string()), thread_(thread), op_(op) {
    if (!r_) return;
    outer_nested_ = t_nested_core_wait_;
    t_nested_core_wait_ = 0;
    core_wait0_ = thread_core_wait_s();
    t0_ = TraceRecorder::now();
  }
  ~TraceScope() {
    if (!r_) return;
    const double t1 = TraceRecorder::now();
    const double total = thread_core_wait_s() - core_wait0_;
    const double own = total - t_nested_core_wait_;
    t_nested_core_wait_ = outer_nested_ + total;
    r_->add(std::move(name_), cat_, thread_, t0_, t1, op_, own > 0 ? own : 0);
  }
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;

 private:
  // Core wait recorded by the scopes nested in the innermost open scope of this thread.
  static inline thread_local double t_nested_core_wait_ = 0;
  TraceRecorder* r_;
  TraceCategory cat_;
  std::string name_;
  TraceThread thread_;
  TraceOpRef op_;
  double t0_ = 0, core_wait0_ = 0, outer_nested_ = 0;
};

}  // namespace duet::io
