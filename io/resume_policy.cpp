// What a resume may change: the rule of each key and the comparison of two configs.
#include "io/resume_policy.h"

#include "io/config_table.h"

namespace duet::io {

ResumeRule resume_rule(std::string_view key) {
  if (key.starts_with("model.") || key.starts_with("data.") || key == "train.seq_len") return ResumeRule::must_match;
  for (const char* k : {"train.lr", "train.min_lr", "train.warmup_steps", "train.weight_decay", "train.beta1",
                        "train.beta2", "train.eps", "train.grad_clip", "train.global_batch", "train.seed"})
    if (key == k) return ResumeRule::allow_changes;
  return ResumeRule::free;
}

ResumeChanges compare_for_resume(const RunConfig& saved, const RunConfig& now) {
  ResumeChanges out;
  for (const auto& k : detail::key_table()) {
    const ResumeRule rule = resume_rule(k.path);
    if (rule == ResumeRule::free) continue;
    const std::string a = detail::format_value(k, k.get(saved)), b = detail::format_value(k, k.get(now));
    if (a == b) continue;
    (rule == ResumeRule::must_match ? out.refused : out.needs_allow).push_back(k.path + ": " + a + " -> " + b);
  }
  return out;
}

namespace {
std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : "; ") + x;
  return s;
}
}  // namespace

std::vector<std::string> check_resume(const RunConfig& saved, const RunConfig& now, std::string_view what) {
  const ResumeChanges c = compare_for_resume(saved, now);
  if (!c.refused.empty())
    throw ConfigError("cannot resume from " + std::string(what) + ": these keys must match the run that wrote it: " +
                      join(c.refused) + " (model.*, data.* and train.seq_len never change in a run; start a new " +
                      "run with another run.name, or checkpoint.resume false)");
  if (!c.needs_allow.empty() && !now.checkpoint.allow_changes)
    throw ConfigError("cannot resume from " + std::string(what) + ": changed " + join(c.needs_allow) +
                      " (pass --checkpoint.allow_changes true to resume with them anyway)");
  return c.needs_allow;
}

}  // namespace duet::io
