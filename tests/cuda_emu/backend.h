#pragma once
// The CUDA backend's kernels (kernels/cuda) run on the host by the emulation of emu.h: a
// kernels::Backend named "cuda-emulated" whose memory is the heap. For tests only.
#include "kernels/backend.h"

namespace duet::test {

const kernels::Backend& emulated_cuda_backend();
// The same with the BF16 GEMMs (kernels::cuda_bf16_backend's table), named "cuda-bf16-emulated".
const kernels::Backend& emulated_cuda_bf16_backend();
// Weights its linear ops cast into kept BF16 copies (weights held fixed) since the process
// started.
long emulated_bf16_weight_casts();
long emulated_bf16_weight_copies_held();
// Kernel launches and cuBLAS calls the emulated backends' code queued since the process started.
struct EmulatedWork {
  long launches = 0, blas_calls = 0;
};
EmulatedWork emulated_work_queued();

}  // namespace duet::test
