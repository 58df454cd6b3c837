// The background checkpoint writer: one thread, at most one save in flight.
#include "checkpoint/writer.h"

#include <chrono>
#include <cstdint>
#include <cstring>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace duet::ckpt {
namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The snapshot copy is the training thread's whole stall, and it is bound by memory traffic.
// Streaming (non-temporal) stores skip reading each destination line before writing it and
// keep the snapshot out of the caches the training step is using: ~25% faster than memcpy
// here with several ranks copying at once. (glibc's memcpy only streams above a threshold
// scaled to the last-level cache, far above a tensor's size on large-cache CPUs.)
void stream_copy(float* dst, const float* src, std::size_t n) {
#if defined(__x86_64__)
  std::size_t i = 0;
  for (; i < n && (reinterpret_cast<std::uintptr_t>(dst + i) & 15); ++i) dst[i] = src[i];
  for (; i + 16 <= n; i += 16) {
    const __m128 a = _mm_loadu_ps(src + i), b = _mm_loadu_ps(src + i + 4);
    const __m128 c = _mm_loadu_ps(src + i + 8), d = _mm_loadu_ps(src + i + 12);
    _mm_stream_ps(dst + i, a);
    _mm_stream_ps(dst + i + 4, b);
    _mm_stream_ps(dst + i + 8, c);
    _mm_stream_ps(dst + i + 12, d);
  }
  for (; i < n; ++i) dst[i] = src[i];
  _mm_sfence();  // streamed stores are weakly ordered: complete them before the writer reads
#else
  std::memcpy(dst, src, n * sizeof(float));
#endif
}
}  // namespace

CheckpointWriter::CheckpointWriter(Options opt) : opt_(std::move(opt)) {
  if (!opt_.all_agree) opt_.all_agree = [](bool ok) { return ok; };  // a single process
  thread_ = std::thread([this] { run(); });
}

CheckpointWriter::~CheckpointWriter() {
  {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return !in_flight_; });
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void CheckpointWriter::take_snapshot() {
  values_.resize(views_.size());
  for (std::size_t i = 0; i < views_.size(); ++i) {
    values_[i].resize(views_[i].data.size());  // reuses the last save's buffer
    stream_copy(values_[i].data(), views_[i].data.data(), views_[i].data.size());
    views_[i].data = values_[i];
  }
}

void CheckpointWriter::run() {
  for (;;) {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return stop_ || has_job_; });
    if (!has_job_) return;
    has_job_ = false;
    const bool copy_here = copy_pending_;
    lk.unlock();
    if (copy_here) {
      const auto t0 = std::chrono::steady_clock::now();
      take_snapshot();
      lk.lock();
      copy_pending_ = false;
      job_stall_ += seconds_since(t0);  // an upper bound on what wait_snapshot() blocked
      lk.unlock();
      cv_.notify_all();
    }
    SaveResult r;
    try {
      r = save_checkpoint(job_, opt_.all_agree, opt_.save);
    } catch (const std::exception& e) {  // only all_agree can throw here
      r.step = job_.step;
      r.error = std::string("checkpoint agreement failed: ") + e.what();
    }
    r.stall_seconds = job_stall_;
    r.wait_seconds = job_wait_;
    lk.lock();
    results_.push_back(std::move(r));
    in_flight_ = false;
    lk.unlock();
    cv_.notify_all();
  }
}

void CheckpointWriter::wait_idle(std::unique_lock<std::mutex>& lk, std::int64_t next_step, double* waited) {
  if (!in_flight_) return;
  if (opt_.save.log && next_step >= 0)
    opt_.save.log("checkpoint: step " + std::to_string(next_step) + " waits for the save of step " +
                  std::to_string(in_flight_step_) + ", still writing");
  const auto t0 = std::chrono::steady_clock::now();
  cv_.wait(lk, [&] { return !in_flight_; });
  if (waited) *waited = seconds_since(t0);
}

void CheckpointWriter::reserve(std::span<const TensorSlice> slices) {
  std::unique_lock lk(mu_);
  wait_idle(lk, -1, nullptr);
  values_.resize(slices.size());
  for (std::size_t i = 0; i < slices.size(); ++i)
    if (values_[i].size() < slices[i].data.size()) values_[i].resize(slices[i].data.size());  // zero-filled: touched
}

void CheckpointWriter::save_async(std::int64_t step, std::span<const TensorSlice> slices, const ShardState& state,
                                  Snapshot mode) {
  double waited = 0;
  {
    std::unique_lock lk(mu_);
    wait_idle(lk, step, &waited);
  }
  // The writer thread is idle: values_, views_ and job_ are ours until has_job_ is set.
  const auto t0 = std::chrono::steady_clock::now();
  views_.assign(slices.begin(), slices.end());
  if (mode == Snapshot::copy) take_snapshot();
  job_ = ShardRequest{opt_.dir, step, opt_.rank, opt_.layout, views_, state};
  {
    std::lock_guard lk(mu_);
    job_stall_ = seconds_since(t0);
    job_wait_ = waited;
    copy_pending_ = mode == Snapshot::deferred;
    has_job_ = in_flight_ = true;
    in_flight_step_ = step;
  }
  cv_.notify_all();
}

void CheckpointWriter::wait_snapshot() {
  std::unique_lock lk(mu_);
  cv_.wait(lk, [&] { return !copy_pending_; });
}

SaveResult CheckpointWriter::save(std::int64_t step, std::span<const TensorSlice> slices, const ShardState& state) {
  {
    std::unique_lock lk(mu_);
    wait_idle(lk, step, nullptr);
  }
  ShardRequest req{opt_.dir, step, opt_.rank, opt_.layout, slices, state};
  return save_checkpoint(req, opt_.all_agree, opt_.save);
}

std::optional<SaveResult> CheckpointWriter::poll() {
  std::lock_guard lk(mu_);
  if (results_.empty()) return std::nullopt;
  SaveResult r = std::move(results_.front());
  results_.pop_front();
  return r;
}

std::optional<SaveResult> CheckpointWriter::wait() {
  {
    std::unique_lock lk(mu_);
    wait_idle(lk, -1, nullptr);
  }
  return poll();
}

bool CheckpointWriter::busy() const {
  std::lock_guard lk(mu_);
  return in_flight_;
}

}  // namespace duet::ckpt
