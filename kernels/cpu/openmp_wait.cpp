#include "kernels/openmp_wait.h"

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace duet::cpu {

void bound_openmp_spinning(char** argv) {
  if (std::getenv("GOMP_SPINCOUNT") || std::getenv("OMP_WAIT_POLICY") || std::getenv(kOpenmpSpinEnv)) return;
  char exe[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    setenv("GOMP_SPINCOUNT", kOpenmpSpinCount, 0);
    setenv(kOpenmpSpinEnv, "1", 1);
    execv(exe, argv);
  }
  // Not executed again: this process's OpenMP threads keep libgomp's default. Processes it
  // starts (mpirun's ranks) find GOMP_SPINCOUNT set and start with it.
  const int err = n > 0 ? errno : ENOENT;
  unsetenv(kOpenmpSpinEnv);
  std::fprintf(stderr, "%s: note: cannot start again with GOMP_SPINCOUNT=%s (%s); OpenMP threads spin with libgomp's default\n",
               argv && argv[0] ? argv[0] : "duet", kOpenmpSpinCount, std::strerror(err));
}

}  // namespace duet::cpu
