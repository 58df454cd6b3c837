#pragma once
// Buffers the model's kernels and the host both use: a std::vector whose storage comes from a
// kernel backend's allocator (kernels/backend.h). On the CPU backend that is the heap, so a
// Buffer behaves exactly like a std::vector; on the CUDA backend it is managed memory, which
// the kernels use in place and the host reads after synchronize() — checkpoints, ZeRO's
// reductions and MPI sends of activations work on it unchanged (the staged path of several
// ranks on one GPU: device → host → MPI → host → device, the migration done by the driver).
//
//   kernels::set_compute_backend(*kernels::cuda_backend());   // once, before the model is built
//   kernels::Buffer<float> x(n);                              // managed memory, zeroed
//
// Each buffer keeps the backend it was made with (the allocator is stateful), so buffers made
// before and after a switch are freed by the right one.

#include <cstddef>
#include <new>
#include <type_traits>
#include <vector>

#include "kernels/backend.h"

namespace duet::kernels {

// The backend new buffers take their memory from: cpu_backend() unless set.
const Backend& compute_backend();
void set_compute_backend(const Backend& backend);

template <class T>
struct BackendAllocator {
  using value_type = T;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  using is_always_equal = std::false_type;

  BackendAllocator() noexcept : backend(&compute_backend()) {}
  explicit BackendAllocator(const Backend& b) noexcept : backend(&b) {}
  template <class U>
  BackendAllocator(const BackendAllocator<U>& o) noexcept : backend(o.backend) {}

  T* allocate(std::size_t n) {
    void* p = backend->alloc(n * sizeof(T));
    if (!p && n) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { backend->free(p); }
  template <class U>
  bool operator==(const BackendAllocator<U>& o) const noexcept {
    return backend == o.backend;
  }

  const Backend* backend;
};

template <class T>
using Buffer = std::vector<T, BackendAllocator<T>>;

}  // namespace duet::kernels
