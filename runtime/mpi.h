#pragma once
// The MPI process bootstrap: initialisation, checked calls that say where they failed, and
// one fatal() that brings the whole job down (a bare exit() would leave the other ranks
// hanging). Communication itself goes through runtime/comm.h (runtime/comm_mpi.h over MPI).

#include <mpi.h>

#include <string>

namespace duet::runtime {

// Logs "rank R on HOST: <what> (file:line)" to stderr and calls MPI_Abort on COMM_WORLD.
[[noreturn]] void fatal(const std::string& what, const char* file = nullptr, int line = 0);

void mpi_check(int code, const char* expr, const char* file, int line);
#define MPI_CHECK(expr) ::duet::runtime::mpi_check((expr), #expr, __FILE__, __LINE__)

int world_rank();
int world_size();
std::string host_name();
bool mpi_launched();  // true when this process was started by mpirun / srun

// Initialises MPI with MPI_THREAD_MULTIPLE (the progress thread calls MPI too) and finalises
// it on destruction. Errors on COMM_WORLD return codes, so MPI_CHECK can report them.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

}  // namespace duet::runtime
