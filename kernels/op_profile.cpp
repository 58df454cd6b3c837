#include "kernels/op_profile.h"

#include <array>
#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>

namespace duet::kernels {

namespace {

// One index per op slot, in the table's order.
enum Op {
#define DUET_OP_ENUM(op) op_##op,
  DUET_BACKEND_OPS(DUET_OP_ENUM)
#undef DUET_OP_ENUM
      kOps
};
constexpr std::array<const char*, kOps> kNames = {
#define DUET_OP_NAME(op) #op,
    DUET_BACKEND_OPS(DUET_OP_NAME)
#undef DUET_OP_NAME
};

const Backend* g_base = nullptr;
std::atomic<bool> g_on{false};
std::mutex g_mutex;
std::array<OpTime, kOps> g_totals{};

void add(int op, double seconds) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_totals[op].seconds += seconds;
  g_totals[op].calls += 1;
}

// Times one call of op I: on the device when the base backend has timing, else on the host.
class Scope {
 public:
  explicit Scope(int op) : op_(op) {
    if (!g_on.load(std::memory_order_relaxed)) return;
    device_ = g_base->timing_begin != nullptr;
    // A thread timing a longer stretch already (a traced engine op) cannot time this one alone.
    active_ = !device_ || g_base->timing_begin();
    t0_ = std::chrono::steady_clock::now();
  }
  ~Scope() {
    if (!active_) return;
    if (device_) {
      DeviceSpan span;
      if (g_base->timing_end(&span)) add(op_, span.busy);
    } else {
      add(op_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
    }
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  int op_;
  bool active_ = false, device_ = false;
  std::chrono::steady_clock::time_point t0_;
};

template <int I, auto Slot, class Fn>
struct Wrapped;
template <int I, auto Slot, class R, class... A>
struct Wrapped<I, Slot, R (*)(A...)> {
  static R call(A... a) {
    Scope scope(I);
    return (g_base->*Slot)(a...);
  }
};

}  // namespace

const Backend& op_profiled(const Backend& base) {
  static const Backend* first = &base;
  if (first != &base)
    throw std::logic_error(std::string("op_profiled: one profiled backend per process; asked for ") + base.name +
                           " after " + first->name);
  static const Backend table = [&] {
    g_base = &base;
    Backend t = base;  // memory, synchronize, timing, attention_saved_floats as the base's
#define DUET_OP_WRAP(op) \
  t.op = base.op ? &Wrapped<op_##op, &Backend::op, decltype(Backend::op)>::call : nullptr;
    DUET_BACKEND_OPS(DUET_OP_WRAP)
#undef DUET_OP_WRAP
    return t;
  }();
  return table;
}

void op_profile_enable(bool on) { g_on.store(on, std::memory_order_relaxed); }

void op_profile_reset() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_totals = {};
}

std::map<std::string, OpTime> op_profile_totals() {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::map<std::string, OpTime> out;
  for (int i = 0; i < kOps; ++i)
    if (g_totals[i].calls) out[kNames[i]] = g_totals[i];
  return out;
}

bool is_gemm_op(const std::string& op) {
  return op == "gemm" || op.rfind("linear_", 0) == 0 || op.rfind("grouped_linear_", 0) == 0;
}

}  // namespace duet::kernels
