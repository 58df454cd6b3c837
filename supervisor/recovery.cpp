#include "supervisor/recovery.h"

#include <algorithm>

namespace duet::supervisor {

std::optional<RecoveryRecord> account_recovery(const FaultClock& f, const AttemptClock& a) {
  if (f.fault < 0 || f.detected < 0 || f.gone < 0 || a.launched < 0 || a.first_step < 0 || a.checkpoint_step < 0)
    return std::nullopt;
  const int n = (int)a.hello.size();
  if (n == 0) return std::nullopt;
  double started = -1, mpi_ready = -1, connected = -1, loaded = -1;
  for (int r = 0; r < n; ++r) {
    if (a.hello[r] < 0 || a.age[r] < 0 || a.loaded[r] < 0) return std::nullopt;
    const double start = std::max(a.launched, a.hello[r] - a.age[r]);  // /proc ticks are coarse
    started = std::max(started, start);
    mpi_ready = std::max(mpi_ready, start + std::max(0.0, a.mpi_init[r]));
    connected = std::max(connected, a.hello[r]);
    loaded = std::max(loaded, a.loaded[r]);
  }
  // Each boundary is kept after the one before, so that no part is negative when ranks'
  // coarse clocks disagree by a tick.
  const double detected = std::max(f.detected, f.fault), gone = std::max(f.gone, detected);
  const double launched = std::max(a.launched, gone);
  started = std::max(started, launched);
  mpi_ready = std::clamp(mpi_ready, started, std::max(started, connected));
  connected = std::max(connected, mpi_ready);
  loaded = std::max(loaded, connected);
  const double first = std::max(a.first_step, loaded);
  RecoveryRecord r;
  r.fault_kind = f.kind;
  r.fault_step = f.fault_step;
  r.checkpoint_step = a.checkpoint_step;
  r.recomputed_steps = std::max(0, f.fault_step - a.checkpoint_step);
  r.detection_s = detected - f.fault;
  r.teardown_s = gone - detected;
  r.backoff_s = launched - gone;
  r.launch_s = started - launched;
  r.mpi_init_s = mpi_ready - started;
  r.setup_s = connected - mpi_ready;
  r.load_s = loaded - connected;
  r.first_step_s = first - loaded;
  r.total_s = first - f.fault;
  return r;
}

}  // namespace duet::supervisor
