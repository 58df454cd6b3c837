#include "runtime/progress.h"

#include <utility>

#include <cstring>

namespace duet::runtime {

void wait_request(Baton* baton, Request& req) {
  if (!baton) {
    wait(req);
    return;
  }
  baton->idle_until([&] { return req.test(); });
}

void wait_until(Baton* baton, std::chrono::steady_clock::time_point until) {
  if (std::chrono::steady_clock::now() >= until) return;
  if (!baton) return std::this_thread::sleep_until(until);
  baton->idle_until([&] { return std::chrono::steady_clock::now() >= until; }, until);
}

void write_stamp(float* at) {
  const int64_t ns = std::chrono::steady_clock::now().time_since_epoch().count();
  static_assert(sizeof ns == kStampFloats * sizeof(float));
  std::memcpy(at, &ns, sizeof ns);
}

std::chrono::steady_clock::time_point read_stamp(const float* at) {
  int64_t ns;
  std::memcpy(&ns, at, sizeof ns);
  return std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(ns));
}

SendQueue::SendQueue(Communicator& comm, io::TraceRecorder* trace) : comm_(comm), trace_(trace), thread_([this] { loop(); }) {}

SendQueue::~SendQueue() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void SendQueue::send(const float* buf, int count, int peer, int tag, Communicator* via) {
  Communicator* c = via ? via : &comm_;
  // Here, on the producer's thread: its stream is the one the send must wait for.
  Communicator::DeviceMark after = c->orders_sends_by_device() ? c->mark_device_work() : nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back({buf, count, peer, tag, c, std::move(after)});
  }
  cv_.notify_all();
}

void SendQueue::wait_all() {
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return pending_.empty() && active_.empty(); });
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void SendQueue::loop() {
  t_trace_thread = io::TraceThread::Progress;
  std::unique_lock<std::mutex> lock(mu_);
  auto backoff = std::chrono::microseconds(20);
  for (;;) {
    if (stop_ && pending_.empty() && active_.empty()) return;
    if (pending_.empty() && active_.empty()) {
      cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    bool progressed = false;
    try {
      while (!pending_.empty()) {
        progressed = true;
        const Pending p = pending_.front();
        pending_.pop_front();
        posted_.push_back({io::TraceRecorder::now(), p.peer});
        active_.push_back(p.after ? p.via->isend_after({p.buf, (size_t)p.count}, p.peer, p.tag, p.after)
                                  : p.via->isend({p.buf, (size_t)p.count}, p.peer, p.tag));
      }
      if (!active_.empty()) {
        bool any = false;
        for (auto& r : active_) any = r.test() || any;
        if (any) {
          progressed = true;
          const double t1 = io::TraceRecorder::now();
          std::vector<Request> keep;
          std::vector<Posted> keep_posted;
          for (size_t i = 0; i < active_.size(); ++i) {
            if (active_[i].pending()) {
              keep.push_back(std::move(active_[i])), keep_posted.push_back(posted_[i]);
            } else if (trace_) {
              trace_->add("send to rank " + std::to_string(posted_[i].peer), io::TraceCategory::P2p, io::TraceThread::Progress, posted_[i].t0, t1);
            }
          }
          active_.swap(keep);
          posted_.swap(keep_posted);
        }
      }
    } catch (...) {  // the communicator failed (its operations ended): wait_all raises it
      error_ = std::current_exception();
      pending_.clear(), active_.clear(), posted_.clear();
    }
    if (pending_.empty() && active_.empty()) {
      done_cv_.notify_all();
      continue;
    }
    // Back off between polls, 20 µs doubling to 1 ms while nothing happens: ranks share
    // cores, and a spinning progress thread would steal them from computation. A send is
    // complete for the receiver as soon as it is matched; polling only tells this side.
    // Woken early when a new message is queued.
    backoff = progressed ? std::chrono::microseconds(20) : std::min(backoff * 2, std::chrono::microseconds(1000));
    cv_.wait_until(lock, now + backoff);
  }
}

}  // namespace duet::runtime
