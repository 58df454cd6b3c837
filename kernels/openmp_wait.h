#pragma once
// How long an idle OpenMP thread spins before it sleeps, bounded for processes that share
// their cores (docs/PERFORMANCE.md, issue 16).
//
// libgomp spins 300,000 times (~4 ms here) at the end of every parallel region before it
// sleeps. On cores of its own that is free; on cores shared with other busy processes the
// spinning thread holds a core that the thread everyone waits for needs, and a two-thread
// `duet train` next to two busy processes trained no step in 12 s. libgomp reads GOMP_SPINCOUNT
// and OMP_WAIT_POLICY once, in a constructor that runs when the library is loaded — before
// main — so setting them in main changes nothing: the process has to start again with them.

namespace duet::cpu {

// GOMP_SPINCOUNT set when the user set neither it nor OMP_WAIT_POLICY (measured:
// docs/PERFORMANCE.md).
inline constexpr const char* kOpenmpSpinCount = "2000";

// Set by bound_openmp_spinning before it executes the program again: it does so at most once.
inline constexpr const char* kOpenmpSpinEnv = "DUET_OPENMP_SPIN_BOUNDED";

// Call first thing in main, with main's argv. Returns at once when GOMP_SPINCOUNT or
// OMP_WAIT_POLICY is set (the user's choice is kept) or when this process is already the
// re-executed one; otherwise sets GOMP_SPINCOUNT=kOpenmpSpinCount and executes
// /proc/self/exe again with the same arguments (the same pid: a launcher waiting for it, or an
// MPI runtime that started it, sees no difference). If that fails it says so on stderr and
// returns: the program runs with libgomp's default spinning. Under a tool that runs the
// program itself (valgrind, gdb), set GOMP_SPINCOUNT: the new image would leave the tool
// (valgrind follows it only with --trace-children=yes).
void bound_openmp_spinning(char** argv);

}  // namespace duet::cpu
