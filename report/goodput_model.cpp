#include "report/goodput_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace duet::report {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Split {
  double ettr, checkpoint, failure;
};

// τ = interval_steps × step time of computing, δ of saving, per period.
Split evaluate(double tau, double delta, double restart, double mtbf) {
  const double period = tau + delta;
  const double up = std::isinf(mtbf) ? 1.0 : std::max(0.0, 1.0 - (restart + period / 2) / mtbf);
  return {tau / period * up, delta / period * up, 1.0 - up};
}

}  // namespace

GoodputModel expected_goodput(const GoodputModelInputs& in) {
  if (!(in.step_time_s > 0)) throw std::invalid_argument("expected_goodput: step time must be positive");
  if (!(in.tokens_per_step > 0)) throw std::invalid_argument("expected_goodput: tokens per step must be positive");
  GoodputModel m;
  const double rate_per_s = in.gpus * in.interruptions_per_gpu_day / 86400.0;
  m.mtbf_cluster_s = rate_per_s > 0 ? 1.0 / rate_per_s : kInf;
  m.interruptions_per_day = rate_per_s * 86400.0;
  m.optimal_interval_s = in.save_s > 0 ? std::sqrt(2.0 * in.save_s * m.mtbf_cluster_s) : 0.0;
  if (std::isinf(m.optimal_interval_s) || in.save_s <= 0) {
    // No failures: any interval is as good as never saving; free saves: save every step.
    m.optimal_interval_steps = std::isinf(m.optimal_interval_s) ? 0 : 1;
  } else {
    m.optimal_interval_steps = std::max(1, (int)std::lround(m.optimal_interval_s / in.step_time_s));
  }
  m.interval_steps = in.interval_steps > 0 ? in.interval_steps : m.optimal_interval_steps;

  auto at = [&](int steps) {
    if (steps <= 0) return Split{std::isinf(m.mtbf_cluster_s) ? 1.0 : 0.0, 0.0, std::isinf(m.mtbf_cluster_s) ? 0.0 : 1.0};
    return evaluate(steps * in.step_time_s, in.save_s, in.restart_s, m.mtbf_cluster_s);
  };
  const Split s = at(m.interval_steps);
  m.ettr = s.ettr, m.checkpoint_fraction = s.checkpoint, m.failure_fraction = s.failure;
  m.ettr_at_optimal = at(m.optimal_interval_steps).ettr;
  m.tokens_per_day_no_failures = in.tokens_per_step / in.step_time_s * 86400.0;
  m.tokens_per_day = m.tokens_per_day_no_failures * m.ettr;
  m.gpu_hours_per_trillion_tokens = m.tokens_per_day > 0 ? in.gpus * 24.0 * 1e12 / m.tokens_per_day : kInf;
  return m;
}

}  // namespace duet::report
