#include "runtime/progress.h"

#include <cstring>

namespace duet::runtime {

void wait_requests(Baton* baton, int n, MPI_Request* reqs) {
  if (!baton) return wait_quietly(n, reqs);
  baton->idle_until([&] {
    int done = 0;
    MPI_CHECK(MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE));
    return done != 0;
  });
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

SendQueue::SendQueue(MPI_Comm comm, io::TraceRecorder* trace) : comm_(comm), trace_(trace), thread_([this] { loop(); }) {}

SendQueue::~SendQueue() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void SendQueue::send(const float* buf, int count, int peer, int tag) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back({buf, count, peer, tag});
  }
  cv_.notify_all();
}

void SendQueue::wait_all() {
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return pending_.empty() && active_.empty(); });
}

void SendQueue::loop() {
  t_trace_thread = io::TraceThread::Progress;
  std::unique_lock<std::mutex> lock(mu_);
  std::vector<int> done;
  auto backoff = std::chrono::microseconds(20);
  for (;;) {
    if (stop_ && pending_.empty() && active_.empty()) return;
    if (pending_.empty() && active_.empty()) {
      cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    bool progressed = false;
    while (!pending_.empty()) {
      progressed = true;
      const Pending p = pending_.front();
      pending_.pop_front();
      active_.emplace_back();
      posted_.push_back({io::TraceRecorder::now(), p.peer});
      MPI_CHECK(MPI_Isend(p.buf, p.count, MPI_FLOAT, p.peer, p.tag, comm_, &active_.back()));
    }
    if (!active_.empty()) {
      int n = 0;
      done.resize(active_.size());
      MPI_CHECK(MPI_Testsome((int)active_.size(), active_.data(), &n, done.data(), MPI_STATUSES_IGNORE));
      if (n > 0) {
        progressed = true;
        const double t1 = io::TraceRecorder::now();
        std::vector<MPI_Request> keep;
        std::vector<Posted> keep_posted;
        for (size_t i = 0; i < active_.size(); ++i) {
          if (active_[i] != MPI_REQUEST_NULL) {
            keep.push_back(active_[i]), keep_posted.push_back(posted_[i]);
          } else if (trace_) {
            trace_->add("send to rank " + std::to_string(posted_[i].peer), io::TraceCategory::P2p, io::TraceThread::Progress, posted_[i].t0, t1);
          }
        }
        active_.swap(keep);
        posted_.swap(keep_posted);
      }
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
