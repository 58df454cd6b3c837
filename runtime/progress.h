#pragma once
// Communication that runs while the main thread computes.
//
// Baton: one compute token per rank. The two halves of an overlapped F&B pair run on two
// threads; a half holds the baton while it computes and hands it over while it waits on
// communication, so the forward of one micro-batch computes while the backward of the other
// waits on its all-to-all, and the other way round — DualPipe's overlapped chunk pair.
//
// SendQueue: a progress thread that owns this rank's outgoing point-to-point messages: it
// posts each MPI_Isend (after runtime.comm_delay_us, the knob that makes local communication
// as costly as a network's) and drives them to completion with MPI_Testsome, so sends never
// hold up the compute thread.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "io/trace.h"
#include "runtime/mpi.h"

namespace duet::runtime {

// Which thread an event belongs to in the trace: 0 compute, 1 forward half of an F&B pair,
// 2 progress thread.
inline thread_local int t_trace_tid = 0;

class Baton {
 public:
  void acquire() { m_.lock(); }
  void release() { m_.unlock(); }

 private:
  std::mutex m_;
};

// Hands the baton over for the lifetime of the object (no-op without a baton).
class BatonRelease {
 public:
  explicit BatonRelease(Baton* b) : b_(b) {
    if (b_) b_->release();
  }
  ~BatonRelease() {
    if (b_) b_->acquire();
  }
  BatonRelease(const BatonRelease&) = delete;
  BatonRelease& operator=(const BatonRelease&) = delete;

 private:
  Baton* b_;
};

class SendQueue {
 public:
  SendQueue(MPI_Comm comm, int delay_us, io::TraceRecorder* trace = nullptr);
  ~SendQueue();
  SendQueue(const SendQueue&) = delete;
  SendQueue& operator=(const SendQueue&) = delete;

  // Queues a message; `buf` must stay valid until wait_all() returns.
  void send(const float* buf, int count, int peer, int tag);
  // Blocks until every queued message has been sent and completed.
  void wait_all();

 private:
  struct Pending {
    std::chrono::steady_clock::time_point ready;
    const float* buf;
    int count, peer, tag;
  };
  void loop();

  MPI_Comm comm_;
  std::chrono::microseconds delay_;
  std::mutex mu_;
  std::condition_variable cv_;       // wakes the progress thread
  std::condition_variable done_cv_;  // wakes wait_all
  std::deque<Pending> pending_;
  std::vector<MPI_Request> active_;
  struct Posted {
    double t0;
    int peer;
  };
  std::vector<Posted> posted_;  // parallel to active_
  io::TraceRecorder* trace_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace duet::runtime
