#include "runtime/mpi.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "core/exit_code.h"
#include "core/supervision.h"

namespace duet::runtime {

std::string host_name() {
  char buf[256] = {0};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

int world_rank() {
  int r = 0, init = 0;
  MPI_Initialized(&init);
  if (init) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int world_size() {
  int n = 1, init = 0;
  MPI_Initialized(&init);
  if (init) MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

bool mpi_launched() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK") ||
         std::getenv("SLURM_STEP_ID");
}

void fatal(const std::string& what, const char* file, int line) {
  std::string where = file ? std::string(" (") + file + ":" + std::to_string(line) + ")" : "";
  std::fprintf(stderr, "duet: rank %d on %s: %s%s\n", world_rank(), host_name().c_str(), what.c_str(),
               where.c_str());
  std::fflush(stderr);
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Abort(MPI_COMM_WORLD, core::exit_code(core::ExitCode::Failed));
  std::_Exit(core::exit_code(core::ExitCode::Failed));
}

void mpi_check(int code, const char* expr, const char* file, int line) {
  if (code == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, msg, &len);
  fatal(std::string(expr) + " failed: " + std::string(msg, len), file, line);
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  const auto t0 = std::chrono::steady_clock::now();
  MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
  core::set_mpi_init_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if (provided < MPI_THREAD_MULTIPLE) fatal("MPI library does not provide MPI_THREAD_MULTIPLE");
}

MpiSession::~MpiSession() {
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Finalize();
}

}  // namespace duet::runtime
