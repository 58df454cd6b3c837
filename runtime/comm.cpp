#include "runtime/comm.h"

#include <algorithm>
#include <stdexcept>
#include <thread>

namespace duet::runtime {

namespace {
// Waits for a request being dropped. An implementation that raises an error from test()
// (NCCL: its communicator failed) has ended the operation first, so the buffers are free;
// the error reached whoever tested it, and a destructor has nobody to raise it to.
void wait_dropped(Request& r) noexcept {
  try {
    wait(r);
  } catch (...) {
  }
}
}  // namespace

Request& Request::operator=(Request&& o) noexcept {
  if (this != &o) {
    if (s_) wait_dropped(*this);
    s_ = std::move(o.s_);
  }
  return *this;
}

Request::~Request() {
  if (s_) wait_dropped(*this);  // its buffers may be written until it completes
}

bool Request::test() {
  if (!s_) return true;
  if (!s_->test()) return false;
  s_.reset();
  return true;
}

bool test_all(std::span<Request> reqs) {
  bool all = true;
  for (auto& r : reqs) all = r.test() && all;
  return all;
}

bool wait_all(std::span<Request> reqs, Deadline deadline) {
  auto pause = std::chrono::microseconds(5);
  for (;;) {
    if (test_all(reqs)) return true;
    const auto now = Clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_until(std::min(deadline, now + pause));
    pause = std::min(pause * 2, std::chrono::microseconds(200));
  }
}

void Communicator::broadcast(std::string& s, int root) {
  int64_t len = (int64_t)s.size();
  Request r = ibroadcast(&len, 1, DType::I64, root);
  wait(r);
  s.resize((size_t)len);
  constexpr int64_t kChunk = 1 << 30;  // MPI counts are ints
  for (int64_t at = 0; at < len; at += kChunk) {
    r = ibroadcast(s.data() + at, (int)std::min(kChunk, len - at), DType::Byte, root);
    wait(r);
  }
}

std::unique_ptr<Communicator> subgroup(Communicator& parent, const std::vector<int>& members) {
  // Color = the smallest member (identifies the group), key = position in `members`.
  const int me = parent.rank();
  const auto at = std::find(members.begin(), members.end(), me);
  if (at == members.end()) throw std::logic_error("subgroup: this rank is not in its own group");
  return parent.split(*std::min_element(members.begin(), members.end()), (int)(at - members.begin()));
}

}  // namespace duet::runtime
