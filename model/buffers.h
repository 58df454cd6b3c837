#pragma once
#include <cstddef>
#include <vector>

namespace duet::model {

// Resizes v to n elements when it is not already that size and returns its data: activation
// buffers keep their storage across micro-batches of the same shape. A buffer that has to
// grow a second time holds data-dependent rows (MoE rows per expert owner change every
// micro-batch): it grows with half again as much room, so the next slightly larger
// micro-batch does not allocate again — inside a step on a GPU an allocation that misses the
// backend's cache synchronises the device. A buffer sized once is sized exactly.
template <class T, class A>
T* sized(std::vector<T, A>& v, size_t n) {
  if (v.size() != n) {
    if (n > v.capacity() && v.capacity() > 0) v.reserve(n + n / 2);
    v.resize(n);
  }
  return v.data();
}

}  // namespace duet::model
