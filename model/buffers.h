#pragma once
#include <cstddef>
#include <vector>

namespace duet::model {

// Resizes v to n elements when it is not already that size and returns its data: activation
// buffers keep their storage across micro-batches of the same shape.
template <class T, class A>
T* sized(std::vector<T, A>& v, size_t n) {
  if (v.size() != n) v.resize(n);
  return v.data();
}

}  // namespace duet::model
