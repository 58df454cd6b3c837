#pragma once
// Thin MPI helpers: checked calls that say where they failed, one fatal() that brings the
// whole job down (a bare exit() would leave the other ranks hanging), and an owning
// communicator handle.

#include <mpi.h>

#include <string>
#include <vector>

namespace duet::runtime {

// Logs "rank R on HOST: <what> (file:line)" to stderr and calls MPI_Abort on COMM_WORLD.
[[noreturn]] void fatal(const std::string& what, const char* file = nullptr, int line = 0);

void mpi_check(int code, const char* expr, const char* file, int line);
#define MPI_CHECK(expr) ::duet::runtime::mpi_check((expr), #expr, __FILE__, __LINE__)

int world_rank();
int world_size();
std::string host_name();
bool mpi_launched();  // true when this process was started by mpirun / srun

// Waits for n requests without spinning: MPI_Testall, then sleeps 5 µs doubling to 200 µs
// between tests. Open MPI's blocking waits poll (and sched_yield when oversubscribed), so a
// rank blocked in MPI_Wait burns the core that the ranks sharing it need to compute; a
// rank waiting here leaves it to them. Every MPI wait on the training path goes through this.
void wait_quietly(int n, MPI_Request* reqs);
inline void wait_quietly(MPI_Request* req) { wait_quietly(1, req); }

// Initialises MPI with MPI_THREAD_MULTIPLE (the progress thread calls MPI too) and finalises
// it on destruction. Errors on COMM_WORLD return codes, so MPI_CHECK can report them.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

// An owned communicator (freed on destruction; never frees COMM_WORLD/SELF).
class Comm {
 public:
  Comm() = default;
  explicit Comm(MPI_Comm c) : comm_(c) {}
  Comm(Comm&& o) noexcept : comm_(o.comm_) { o.comm_ = MPI_COMM_NULL; }
  Comm& operator=(Comm&& o) noexcept;
  ~Comm();
  MPI_Comm get() const { return comm_; }
  int rank() const;
  int size() const;

  // A communicator of exactly `members` (world ranks, in that order); every rank of COMM_WORLD
  // must call this, each with the group it belongs to (collective over COMM_WORLD).
  static Comm from_members(const std::vector<int>& members);

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

}  // namespace duet::runtime
