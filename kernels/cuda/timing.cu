// Device timing by CUDA events (timing.h). Per host thread: a pool of events created once and
// reused (two per op of a stretch), and an anchor event whose completion was waited for on the
// host, which places the GPU's timestamps on the host's steady clock (off by the wait's
// latency, microseconds; renewed every 10 s against drift between the two clocks).
#include <chrono>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/timing.h"

namespace duet::cuda {

namespace {

constexpr double kReanchorSeconds = 10.0;

double host_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Timing {
  bool on = false;
  std::vector<cudaEvent_t> events;  // [2i], [2i + 1]: op i's start and end
  size_t used = 0;
  cudaEvent_t anchor = nullptr;
  double anchor_host = -1e300;  // the host's time just before `anchor` was recorded
  ~Timing() {                   // at thread exit; errors then are not worth an abort
    for (cudaEvent_t e : events) (void)cudaEventDestroy(e);
    if (anchor) (void)cudaEventDestroy(anchor);
  }
  void record() {
    if (used == events.size()) {
      cudaEvent_t e = nullptr;
      CUDA_CHECK(cudaEventCreate(&e));
      events.push_back(e);
    }
    CUDA_CHECK(cudaEventRecord(events[used++], 0));
  }
  double host_time(cudaEvent_t e) const {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, anchor, e));
    return anchor_host + ms * 1e-3;
  }
};

thread_local Timing t_timing;

}  // namespace

bool timing_on() { return t_timing.on; }

bool timing_begin() {
  Timing& t = t_timing;
  if (t.on) return false;
  t.on = true;
  t.used = 0;
  if (host_now() - t.anchor_host > kReanchorSeconds) {
    if (!t.anchor) CUDA_CHECK(cudaEventCreate(&t.anchor));
    // The host's time just before the record, on an idle stream: the device reaches the
    // record no earlier. So the events placed through it are never later than the device
    // reached them, nor earlier than the host's readings before the anchor: a span lies within
    // the host's readings around it (the time after the sync would put it up to the sync's
    // wake-up later than the host saw it end).
    CUDA_CHECK(cudaStreamSynchronize(cudaStreamPerThread));
    const double issued = host_now();
    CUDA_CHECK(cudaEventRecord(t.anchor, 0));
    CUDA_CHECK(cudaEventSynchronize(t.anchor));
    t.anchor_host = issued;
  }
  return true;
}

void timing_op_start() { t_timing.record(); }
void timing_op_end() { t_timing.record(); }

bool timing_end(kernels::DeviceSpan* span) {
  Timing& t = t_timing;
  const bool was_on = t.on;
  t.on = false;
  if (!was_on || t.used < 2) return false;
  CUDA_CHECK(cudaEventSynchronize(t.events[t.used - 1]));
  double busy = 0;
  for (size_t i = 0; i + 1 < t.used; i += 2) {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, t.events[i], t.events[i + 1]));
    busy += ms * 1e-3;
  }
  // The start against the anchor (float milliseconds over up to 10 s: ~1 µs steps), the
  // length from the span's own two events (float over the span: far finer), so the span's
  // length is comparable with its kernels' busy time.
  float span_ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&span_ms, t.events[0], t.events[t.used - 1]));
  span->t0 = t.host_time(t.events[0]);
  span->t1 = span->t0 + span_ms * 1e-3;
  span->busy = busy;
  t.used = 0;
  return true;
}

}  // namespace duet::cuda
