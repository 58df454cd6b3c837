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

namespace duet::runtime {

// Installs the handler for as long as it lives (the training loop); restores what was there
// before when the last one goes (ranks run as threads of one process in tests).
class TermStop {
 public:
  TermStop();
  ~TermStop();
  TermStop(const TermStop&) = delete;
  TermStop& operator=(const TermStop&) = delete;

  // Whether SIGTERM arrived since the first of the TermStops alive was installed.
  static bool requested();
};

// Whether an MPI launcher (mpirun, srun's PMIx) started this process: its environment says so.
bool launched_by_mpi_launcher();

// Ends the process by SIGTERM with the default action, as an unhandled SIGTERM would.
[[noreturn]] void die_by_sigterm();

}  // namespace duet::runtime
