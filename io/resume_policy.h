#pragma once
// What a resume may change, key by key, against the config of the run that wrote the
// checkpoint (or of the run directory being continued):
//
//   must match       model.*, data.*, train.seq_len: the tensors and the data stream
//   allowed with     train.lr, min_lr, warmup_steps, weight_decay, beta1, beta2, eps,
//   checkpoint.      grad_clip, global_batch, seed: the run's trajectory changes, on purpose
//   allow_changes
//   free             everything else (parallel.*, train.steps, train.stop_at, checkpoint.*,
//                    runtime.*, run.*, cluster.*, logging and evaluation cadence)

#include <string>
#include <string_view>
#include <vector>

#include "io/config.h"

namespace duet::io {

enum class ResumeRule { must_match, allow_changes, free };
ResumeRule resume_rule(std::string_view key_path);

struct ResumeChanges {
  std::vector<std::string> refused;      // "model.layers: 4 -> 6", always refused
  std::vector<std::string> needs_allow;  // "train.lr: 0.003 -> 0.1", needs checkpoint.allow_changes
};
ResumeChanges compare_for_resume(const RunConfig& saved, const RunConfig& now);

// Throws ConfigError naming every differing key when the resume is refused (`what` says what
// was compared: "the checkpoint …/step-000004"); otherwise returns the accepted changes
// ("train.lr: 0.003 -> 0.1") for the log.
std::vector<std::string> check_resume(const RunConfig& saved, const RunConfig& now, std::string_view what);

}  // namespace duet::io
