#pragma once
// Expected goodput of a job at scale, from a failure rate, the checkpoint save time and the
// restart time (`duet simulate`; the formula and its assumptions are in
// docs/fault-tolerance.md). Pure arithmetic, no config: apps/ passes the numbers.
//
// Failures arrive as a Poisson process with the cluster's mean time between interruptions
// M = 1 / (gpus × interruptions per GPU-second). The job computes for an interval τ, then
// blocks for a save of δ seconds; a failure costs the restart time R plus, on average, half a
// period (τ + δ) of lost progress. To first order in (R + τ + δ) / M:
//   effective training time  ETTR(τ) = τ / (τ + δ) × (1 − (R + (τ + δ) / 2) / M)
// and the interval that maximises 1 − δ/τ − τ/(2M) is Young's τ* = √(2 δ M) (Daly's refinement
// changes it by less than δ when δ ≪ M).

namespace duet::report {

struct GoodputModelInputs {
  double step_time_s = 0;          // one training step, no failures
  double tokens_per_step = 0;
  int gpus = 1;
  double interruptions_per_gpu_day = 0;  // 0 = no failures
  double restart_s = 0;            // fault -> training again, without the lost progress
  double save_s = 0;               // the blocking part of one checkpoint save
  int interval_steps = 0;          // steps between checkpoints; 0 = the optimal interval
};

struct GoodputModel {
  double mtbf_cluster_s = 0;        // infinite when there are no failures
  double optimal_interval_s = 0;    // √(2 δ M); infinite when there are no failures or saves are free
  int optimal_interval_steps = 0;   // rounded to whole steps, ≥ 1 (0 when infinite)
  int interval_steps = 0;           // the interval evaluated (the given one, or the optimal)
  double ettr = 0;                  // at interval_steps
  double ettr_at_optimal = 0;       // at optimal_interval_steps
  double checkpoint_fraction = 0;   // of wall time: saves
  double failure_fraction = 0;      // of wall time: restarts and lost progress
  double interruptions_per_day = 0;
  double tokens_per_day = 0;        // with failures, at interval_steps
  double tokens_per_day_no_failures = 0;
  double gpu_hours_per_trillion_tokens = 0;  // with failures
};

// Throws std::invalid_argument when step_time_s or tokens_per_step is not positive.
GoodputModel expected_goodput(const GoodputModelInputs& in);

// The Llama 3 rate: 419 unexpected interruptions on 16,384 GPUs in 54 days (Llama 3 paper,
// §3.3.4), per GPU and day.
constexpr double kLlama3InterruptionsPerGpuDay = 419.0 / (16384.0 * 54.0);

}  // namespace duet::report
