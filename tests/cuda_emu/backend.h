#pragma once
// The CUDA backend's kernels (kernels/cuda) run on the host by the emulation of emu.h: a
// kernels::Backend named "cuda-emulated" whose memory is the heap. For tests only.
#include "kernels/backend.h"

namespace duet::test {

const kernels::Backend& emulated_cuda_backend();

}  // namespace duet::test
