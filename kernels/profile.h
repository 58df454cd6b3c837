#pragma once
// A tiny opt-in profiler for the kernels: each kernel opens a scope with its op name; when
// profiling is on, the scope's exclusive time (minus nested kernels, e.g. the GEMMs inside
// attention) is added to that op's total. Off by default: one relaxed load per kernel call.
// Used by the training benchmark to report the share of step time per op.

#include <atomic>
#include <chrono>
#include <map>
#include <string>

namespace duet::cpu {

void profile_enable(bool on);
bool profile_enabled();
void profile_reset();
// Seconds per op name since the last reset (summed over threads).
std::map<std::string, double> profile_totals();

class ProfileScope {
 public:
  explicit ProfileScope(const char* op);
  ~ProfileScope();
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  const char* op_ = nullptr;
  ProfileScope* parent_ = nullptr;
  std::chrono::steady_clock::time_point t0_;
  double child_s_ = 0;
};

}  // namespace duet::cpu

#define DUET_PROFILE(op) ::duet::cpu::ProfileScope duet_profile_scope_(op)
