// The CPU backend: every slot is the duet::cpu function of the same name (so the table adds
// an indirect call and nothing else), memory is 64-byte-aligned heap.
#include "kernels/backend.h"
#include "kernels/buffer.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/loss.h"
#include "kernels/moe.h"
#include "kernels/norm.h"
#include "kernels/optim.h"
#include "kernels/rope.h"

namespace duet::kernels {

namespace {

// 64 bytes: a cache line and an AVX-512 vector; the arena aligns each tensor to 16 floats
// relative to this base.
constexpr size_t kAlign = 64;

void* host_alloc(size_t bytes) {
  void* p = std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
  if (!p && bytes) throw std::bad_alloc();
  return p;
}
void host_free(void* p) { std::free(p); }
void host_copy(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}
void host_synchronize() {}  // CPU kernels return when done

Backend make_cpu_backend() {
  Backend b{};
  b.name = "cpu";
  b.alloc = &host_alloc;
  b.free = &host_free;
  b.copy_to_host = &host_copy;
  b.copy_from_host = &host_copy;
  b.synchronize = &host_synchronize;
  // No timing slots: host time is what the trace records already. No weights_fixed: the CPU's
  // GEMMs take FP32 weights as they are. No marks: an op's work is done when it returns.
  b.attention_saved_floats = &cpu::attention_saved_floats;
#define DUET_CPU_SLOT(op) b.op = &cpu::op;
  DUET_BACKEND_OPS(DUET_CPU_SLOT)
#undef DUET_CPU_SLOT
  return b;
}

// The op list must name every slot: name + 5 memory slots + 2 timing slots + weights_fixed +
// 4 mark slots + attention_saved_floats + the ops fill the struct.
#define DUET_COUNT_OP(op) +1
constexpr size_t kOps = 0 DUET_BACKEND_OPS(DUET_COUNT_OP);
#undef DUET_COUNT_OP
static_assert(sizeof(Backend) == sizeof(void*) * (1 + 13 + kOps),
              "DUET_BACKEND_OPS must list every op slot of Backend");

}  // namespace

const Backend& cpu_backend() {
  static const Backend b = make_cpu_backend();
  return b;
}

namespace {
std::atomic<const Backend*> compute{nullptr};
}

const Backend& compute_backend() {
  const Backend* b = compute.load(std::memory_order_acquire);
  return b ? *b : cpu_backend();
}

void set_compute_backend(const Backend& backend) { compute.store(&backend, std::memory_order_release); }

#if !DUET_HAVE_CUDA
const Backend* cuda_backend() { return nullptr; }  // built without CUDA
const Backend* cuda_bf16_backend() { return nullptr; }
std::string cuda_backend_absent_reason() {
  return "this duet was built without CUDA (configure with -DDUET_CUDA=ON where the CUDA toolkit is installed)";
}
void set_cuda_processes_per_device(int) {}
#endif

std::vector<std::string> missing_ops(const Backend& b) {
  std::vector<std::string> missing;
  if (!b.attention_saved_floats) missing.push_back("attention_saved_floats");
#define DUET_MISSING_OP(op) \
  if (!b.op) missing.push_back(#op);
  DUET_BACKEND_OPS(DUET_MISSING_OP)
#undef DUET_MISSING_OP
  return missing;
}

void require_all_ops(const Backend& b, const char* who) {
  const auto missing = missing_ops(b);
  if (missing.empty()) return;
  std::string list;
  for (const auto& op : missing) list += (list.empty() ? "" : ", ") + op;
  throw std::logic_error(std::string(who) + ": the " + b.name + " backend does not implement " +
                         list);
}

}  // namespace duet::kernels
