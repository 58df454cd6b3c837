#pragma once
// Communication that runs while the main thread computes.
//
// Baton: one compute token per rank. The two halves of an overlapped F&B pair run on two
// threads; a half holds the baton while it computes and hands it over while it waits on
// communication, so the forward of one micro-batch computes while the backward of the other
// waits on its all-to-all, and the other way round — DualPipe's overlapped chunk pair. A
// thread that waits while the baton is free (the other half waits too, or there is none)
// takes it to run deferred weight passes, so the rank computes whenever it has work.
//
// SendQueue: a progress thread that owns this rank's outgoing point-to-point messages: it
// posts each send on the communicator and tests them to completion, so sends never hold up
// the compute thread.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "io/trace.h"
#include "kernels/cpu/thread_pool.h"
#include "runtime/comm.h"

namespace duet::runtime {

// Which thread an event belongs to in the trace (core/trace_event.h).
inline thread_local io::TraceThread t_trace_thread = io::TraceThread::Compute;

class Baton {
 public:
  void acquire() {
    ++wanted_;
    m_.lock();
    --wanted_;
  }
  // The releasing thread's compute helpers sleep at once: the thread that takes the baton
  // next computes with helpers of its own, which need the cores.
  void release() {
    cpu::park_compute_threads();
    m_.unlock();
  }

  // Deferred work that fills communication waits: fill() runs one small unit (the engine's
  // deferred weight passes, a layer at a time) with the baton held, and returns false when
  // there is none. Set once, before any thread waits.
  void set_filler(std::function<bool()> fill) { fill_ = std::move(fill); }

  // Waits, without the baton, until done() is true: polled 5 µs doubling to 200 µs, or, with
  // a deadline (done() means it has passed), asleep until then. Meanwhile, whenever the baton is free and no thread is asking for it, takes it and runs
  // one unit of deferred work — so a rank whose halves both wait still computes. A thread
  // that asks for the baton waits at most one unit.
  template <class Done>
  void idle_until(Done&& done, std::chrono::steady_clock::time_point deadline = {}) {
    auto pause = std::chrono::microseconds(5);
    for (;;) {
      if (done()) return;
      if (fill_ && wanted_.load() == 0 && m_.try_lock()) {
        const bool did = fill_();
        cpu::park_compute_threads();
        m_.unlock();
        if (did) continue;
      }
      if (deadline != std::chrono::steady_clock::time_point{}) {
        std::this_thread::sleep_until(deadline);
        continue;
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(200));
    }
  }

 private:
  std::mutex m_;
  std::atomic<int> wanted_{0};
  std::function<bool()> fill_;
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

// Waits for a request. With a baton (overlap on) the caller has handed it over
// (BatonRelease) and the wait is filled with deferred work; without, it waits quietly.
void wait_request(Baton* baton, Request& req);
// Waits, the same way, until `until` (the modelled network latency's end).
void wait_until(Baton* baton, std::chrono::steady_clock::time_point until);

// runtime.comm_delay_us is applied where a network applies latency: on the wire. A message
// carries the time it was sent as a stamp (kStampFloats trailing floats; the steady clock is
// one per machine, as delay emulation is) and is usable comm_delay_us after that, however
// early its bytes arrived — so no thread has to wake up to send it late.
constexpr int kStampFloats = 2;
void write_stamp(float* at);
std::chrono::steady_clock::time_point read_stamp(const float* at);

class SendQueue {
 public:
  explicit SendQueue(Communicator& comm, io::TraceRecorder* trace = nullptr);
  ~SendQueue();
  SendQueue(const SendQueue&) = delete;
  SendQueue& operator=(const SendQueue&) = delete;

  // Queues a message, sent over `via` (nullptr: the queue's communicator) in the order
  // queued; `buf` must stay valid until wait_all() returns. Over a communicator that orders
  // sends by device work (NCCL), the send waits on the device for what the calling thread's
  // stream has queued so far (Communicator::mark_device_work), not on the host.
  void send(const float* buf, int count, int peer, int tag, Communicator* via = nullptr);
  // Blocks until every queued message has been sent and completed; raises what a send raised
  // (the queue then dropped what it held).
  void wait_all();

 private:
  struct Pending {
    const float* buf;
    int count, peer, tag;
    Communicator* via;
    Communicator::DeviceMark after;  // empty over host communicators
  };
  void loop();

  Communicator& comm_;
  std::mutex mu_;
  std::condition_variable cv_;       // wakes the progress thread
  std::condition_variable done_cv_;  // wakes wait_all
  std::deque<Pending> pending_;
  std::vector<Request> active_;
  struct Posted {
    double t0;
    int peer;
  };
  std::vector<Posted> posted_;  // parallel to active_
  io::TraceRecorder* trace_;
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace duet::runtime
