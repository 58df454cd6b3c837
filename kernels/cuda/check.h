#pragma once
// CUDA_CHECK(expr) / CUBLAS_CHECK(expr): on failure print the failed expression, the error,
// file:line, the rank and the host, then abort — a job of many ranks then says which rank on
// which node failed where. kernels/ may not use MPI, so the rank comes from the launcher's
// environment (Open MPI, PMIx, Slurm), -1 when none is set.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace duet::cuda {

inline int launcher_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"})
    if (const char* v = std::getenv(var)) return std::atoi(v);
  return -1;
}

[[noreturn]] inline void check_failed(const char* api, const char* expr, const char* error,
                                      const char* file, int line) {
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  std::fprintf(stderr, "%s error: %s\n  in: %s\n  at: %s:%d (rank %d on %s)\n", api, error, expr,
               file, line, launcher_rank(), host);
  std::fflush(stderr);
  std::abort();
}

}  // namespace duet::cuda

#define CUDA_CHECK(expr)                                                                      \
  do {                                                                                        \
    const cudaError_t duet_cuda_err_ = (expr);                                                \
    if (duet_cuda_err_ != cudaSuccess)                                                        \
      ::duet::cuda::check_failed("CUDA", #expr, cudaGetErrorString(duet_cuda_err_), __FILE__, \
                                 __LINE__);                                                   \
  } while (0)

#define CUBLAS_CHECK(expr)                                                                \
  do {                                                                                    \
    const cublasStatus_t duet_cublas_st_ = (expr);                                        \
    if (duet_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                         \
      ::duet::cuda::check_failed("cuBLAS", #expr, cublasGetStatusString(duet_cublas_st_), \
                                 __FILE__, __LINE__);                                     \
  } while (0)
