#include "io/fault_plan.h"

#include <algorithm>
#include <csignal>
#include <sstream>

namespace duet::io {

namespace {

int number(const std::string& s, const std::string& entry) {
  try {
    size_t used = 0;
    const int v = std::stoi(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw ConfigError("runtime.fail_plan: '" + entry + "': '" + s + "' is not a number");
}

}  // namespace

std::vector<PlannedFault> parse_fault_plan(std::string_view text) {
  std::vector<PlannedFault> out;
  std::istringstream in{std::string(text)};
  for (std::string entry; std::getline(in, entry, ',');) {
    if (entry.empty()) continue;
    std::vector<std::string> f;
    std::istringstream parts(entry);
    for (std::string p; std::getline(parts, p, ':');) f.push_back(p);
    if (f.size() != 4)
      throw ConfigError("runtime.fail_plan: '" + entry + "': expected attempt:kind:rank:step");
    PlannedFault p;
    p.attempt = number(f[0], entry);
    FaultSpec& s = p.fault;
    s.rank = number(f[2], entry), s.step = number(f[3], entry);
    const std::string& k = f[1];
    if (k == "kill") s.signal = SIGKILL;
    else if (k == "stop") s.signal = SIGSTOP;
    else if (k == "fail") s.signal = 0;
    else if (k == "nan") s.nan = true;
    else if (k == "killsave") s.signal = SIGKILL, s.at = FailAt::Save;
    else if (k == "killcommit") s.signal = SIGKILL, s.at = FailAt::Commit, s.rank = 0;
    else if (k == "corrupt") s.signal = SIGKILL, s.corrupt_newest = true, s.rank = 0;
    else if (k == "nodekill") s.signal = SIGKILL, s.scope = FailScope::Node;
    else if (k == "nodestop") s.signal = SIGSTOP, s.scope = FailScope::Node;
    else if (k == "diskfull") s.no_space = true, s.at = FailAt::Save;
    else if (k == "unreadable") s.unreadable = true;
    else
      throw ConfigError("runtime.fail_plan: '" + entry + "': kind '" + k +
                        "' is not one of kill, stop, fail, nan, killsave, killcommit, corrupt, nodekill, nodestop, diskfull, "
                        "unreadable");
    if (p.attempt < 1 || s.rank < 0 || s.step < 1)
      throw ConfigError("runtime.fail_plan: '" + entry + "': attempt and step must be >= 1, rank >= 0");
    for (const PlannedFault& q : out)
      if (q.attempt == p.attempt && !q.fault.beside_another() && !s.beside_another())
        throw ConfigError("runtime.fail_plan: attempt " + std::to_string(p.attempt) +
                          " has two faults; only diskfull and unreadable may share an attempt with another");
    out.push_back(p);
  }
  return out;
}

std::optional<FaultSpec> fault_for_attempt(const RuntimeSection& r, int attempt) {
  if (!r.fail_plan.empty()) {
    for (const PlannedFault& p : parse_fault_plan(r.fail_plan))
      if (p.attempt == attempt && !p.fault.beside_another()) return p.fault;
    return std::nullopt;
  }
  if (r.fail_rank < 0 || attempt > r.fail_attempts) return std::nullopt;
  FaultSpec s;
  s.rank = r.fail_rank, s.step = r.fail_step, s.signal = r.fail_signal, s.at = r.fail_at, s.scope = r.fail_scope;
  s.nan = r.fail_nan;
  return s;
}

std::vector<int> full_disk_steps(const RuntimeSection& r, int attempt, int rank) {
  std::vector<int> out;
  if (r.fail_plan.empty()) return out;
  for (const PlannedFault& p : parse_fault_plan(r.fail_plan))
    if (p.attempt == attempt && p.fault.no_space && p.fault.rank == rank) out.push_back(p.fault.step);
  return out;
}

std::optional<int> unreadable_from(const RuntimeSection& r, int attempt, int rank) {
  std::optional<int> out;
  if (r.fail_plan.empty()) return out;
  for (const PlannedFault& p : parse_fault_plan(r.fail_plan))
    if (p.attempt == attempt && p.fault.unreadable && p.fault.rank == rank) out = std::min(out.value_or(p.fault.step), p.fault.step);
  return out;
}

}  // namespace duet::io
