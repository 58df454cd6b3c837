#pragma once
#include <cstddef>
#include <type_traits>
#include <vector>

#include "kernels/buffer.h"

namespace duet::model {

// Resizes v to n elements when it is not already that size and returns its data: activation
// buffers keep their storage across micro-batches of the same shape. A buffer that has to
// grow a second time holds data-dependent rows (MoE rows per expert owner change every
// micro-batch): it grows with half again as much room, so the next slightly larger
// micro-batch does not allocate again — inside a step on a GPU an allocation that misses the
// backend's cache synchronises the device. A buffer sized once is sized exactly.
//
// Growing writes on the host (zeros past the old size; a copy when the storage moves), and on
// a device backend kernels this thread queued may still use that memory (a scratch buffer
// shrunk for one use and grown for the next, nothing waited for in between): growth waits
// for the thread's stream first. Same shapes again grow nothing and wait for nothing.
template <class T, class A>
T* sized(std::vector<T, A>& v, size_t n) {
  if (v.size() != n) {
    if constexpr (std::is_same_v<A, kernels::BackendAllocator<T>>)
      if (n > v.size()) v.get_allocator().backend->synchronize();
    if (n > v.capacity() && v.capacity() > 0) v.reserve(n + n / 2);
    v.resize(n);
  }
  return v.data();
}

}  // namespace duet::model
