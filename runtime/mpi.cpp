#include "runtime/mpi.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

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
  if (init && !fin) MPI_Abort(MPI_COMM_WORLD, 3);
  std::_Exit(3);
}

void mpi_check(int code, const char* expr, const char* file, int line) {
  if (code == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, msg, &len);
  fatal(std::string(expr) + " failed: " + std::string(msg, len), file, line);
}

void wait_quietly(int n, MPI_Request* reqs) {
  auto pause = std::chrono::microseconds(5);
  for (;;) {
    int done = 0;
    MPI_CHECK(MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE));
    if (done) return;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(200));
  }
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if (provided < MPI_THREAD_MULTIPLE) fatal("MPI library does not provide MPI_THREAD_MULTIPLE");
}

MpiSession::~MpiSession() {
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Finalize();
}

Comm& Comm::operator=(Comm&& o) noexcept {
  if (this != &o) {
    this->~Comm();
    comm_ = o.comm_;
    o.comm_ = MPI_COMM_NULL;
  }
  return *this;
}

Comm::~Comm() {
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin && comm_ != MPI_COMM_NULL && comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_SELF) MPI_Comm_free(&comm_);
}

int Comm::rank() const {
  int r = 0;
  MPI_CHECK(MPI_Comm_rank(comm_, &r));
  return r;
}

int Comm::size() const {
  int n = 0;
  MPI_CHECK(MPI_Comm_size(comm_, &n));
  return n;
}

Comm Comm::from_members(const std::vector<int>& members) {
  // Color = the smallest member (identifies the group), key = position in `members`.
  const int me = world_rank();
  const int color = *std::min_element(members.begin(), members.end());
  const int key = (int)(std::find(members.begin(), members.end(), me) - members.begin());
  if (key == (int)members.size()) fatal("Comm::from_members: this rank is not in its own group");
  MPI_Comm c;
  MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, color, key, &c));
  return Comm(c);
}

}  // namespace duet::runtime
