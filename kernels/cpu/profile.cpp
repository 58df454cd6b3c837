#include "kernels/profile.h"

#include <mutex>

namespace duet::cpu {

namespace {
std::atomic<bool> g_enabled{false};
std::mutex g_mu;
std::map<std::string, double> g_totals;
thread_local ProfileScope* t_current = nullptr;
}  // namespace

void profile_enable(bool on) { g_enabled.store(on, std::memory_order_relaxed); }
bool profile_enabled() { return g_enabled.load(std::memory_order_relaxed); }

void profile_reset() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_totals.clear();
}

std::map<std::string, double> profile_totals() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_totals;
}

ProfileScope::ProfileScope(const char* op) {
  if (!profile_enabled()) return;
  op_ = op;
  parent_ = t_current;
  t_current = this;
  t0_ = std::chrono::steady_clock::now();
}

ProfileScope::~ProfileScope() {
  if (!op_) return;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  t_current = parent_;
  if (parent_) parent_->child_s_ += s;
  std::lock_guard<std::mutex> lock(g_mu);
  g_totals[op_] += s - child_s_;
}

}  // namespace duet::cpu
