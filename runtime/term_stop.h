#pragma once
// SIGTERM to a training rank: stop at the next step boundary with a checkpoint.
//
// Slurm's `scancel JOB` (and a preemption without a grace signal) sends SIGTERM to every
// process of the job at once, the ranks included, then SIGKILL after its KillWait (30 s by
// default). A rank that died on the first would lose every step since the last checkpoint;
// instead, while training runs (from the rank's link to its supervisor, or its start without
// one, to its end: a resume's checkpoint load and the last save included), SIGTERM only sets
// a flag: at the next step boundary the ranks agree on it (the same collective as the
// supervisor's "stop"), save a checkpoint of that step and end with exit 0, resumable. A
// supervised rank also tells its supervisor (runtime/supervisor_link.h), which then stops the
// job as for its own SIGTERM.
//
// A supervisor that tears an attempt down (a dead or hung rank) still needs the ranks gone at
// once: it sends "abort" over the link first, and a rank that reads it dies by SIGTERM as
// before (die_by_sigterm). Ranks of a bare `mpirun` without a supervisor keep SIGTERM fatal:
// mpirun itself gets it (or sends it) and tears the job down beneath them. A one-process
// `duet train` stops like a supervised rank.
//
// No signal handler may run on a thread that computes. oneDNN's JIT SGEMM kernels (AVX2 and
// AVX-512) point the stack pointer at a workspace on the heap while they run, so the frame of a
// handler that interrupts them is written into the heap: a handler that only sets a flag
// corrupted it ("corrupted size vs. prev_size" at the next free; 3 of 12 runs whose 4 ranks
// each got one SIGTERM). oneDNN fixed it upstream in 2026 (its issue 4845, pull request 4855);
// Debian 12's 2.6.3 has it. So the process blocks SIGTERM before any thread starts
// (route_sigterm(), the first thing `duet train` does): every thread inherits the mask, and one
// thread that computes nothing takes the signal with sigwait — a request while a TermStop
// lives, the default end otherwise. A thread that unblocks it anyway runs a handler with the
// same two outcomes.

namespace duet::runtime {

// Blocks SIGTERM in the calling thread, and so in every thread it starts from now on, and
// starts the thread that takes it (idempotent). Call it before MPI, OpenMP or any compute
// thread starts; TermStop calls it too, for what starts later. A child of fork() unblocks
// SIGTERM in its one thread (the thread that took it is not in the child) and is routed again
// by the next call. posix_spawn, popen and system run no fork handlers: a child started so from
// a routed thread inherits the blocked SIGTERM across exec unless it is given a mask
// (POSIX_SPAWN_SETSIGMASK). `duet train` starts no process.
void route_sigterm();

// While one lives (the training loop), SIGTERM is a request (requested()); when the last one
// goes (ranks run as threads of one process in tests), it ends the process again.
class TermStop {
 public:
  TermStop();
  ~TermStop();
  TermStop(const TermStop&) = delete;
  TermStop& operator=(const TermStop&) = delete;

  // Whether SIGTERM arrived since the first of the TermStops alive was made. The signal is
  // taken on its own thread: a kill() has returned before this says so.
  static bool requested();
};

// Whether an MPI launcher (mpirun, srun's PMIx) started this process: its environment says so.
bool launched_by_mpi_launcher();

// Ends the process by SIGTERM with the default action, as an unhandled SIGTERM would.
[[noreturn]] void die_by_sigterm();

}  // namespace duet::runtime
