#pragma once
// `duet launch` inside a Slurm allocation: which launcher starts the ranks, on which nodes,
// and what happens when nodes are lost or the job asks to be requeued.

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "slurm/client.h"

namespace duet::app {

struct SlurmLaunch {
  slurm::Allocation allocation;
  std::vector<std::string> nodes;  // where the ranks run: --nodelist, else the whole allocation
  std::string duet;                // this executable (the pre-launch probe runs it on each node)
};

// "srun" or "mpirun": `choice` is auto|srun|mpirun; auto takes srun --mpi=pmix inside an
// allocation whose srun has PMIx, mpirun otherwise. Throws naming --launcher for a bad value
// or srun outside an allocation.
std::string choose_launcher(const std::string& choice, const std::optional<slurm::Allocation>& allocation);

// Of `candidates`, the nodes a relaunch must not use, and why: those Slurm reports down,
// drained or not responding, those no longer in the allocation (a --no-kill job loses its
// failed nodes; SLURM_JOB_NODELIST still lists them), and those where the probe (this duet,
// started as one task) does not answer within a few seconds — unless it fails on every node
// probed, which says the probe is broken, not the nodes (`say` tells).
std::vector<std::pair<std::string, std::string>> node_problems(const SlurmLaunch& l,
                                                               const std::vector<std::string>& candidates,
                                                               const std::function<void(const std::string&)>& say);

// srun --mpi=pmix on exactly `nodes`, `ranks` tasks, the job killed whole when one rank fails.
std::vector<std::string> srun_command(const std::vector<std::string>& nodes, int ranks);

// After exit code 5 (SIGUSR1: checkpoint saved, or nodes lost): `scontrol requeue` this job,
// keeping it off `exclude`. SIGTERM, which Slurm sends to this run of the job as it requeues
// it, is ignored from here on: the job has nothing left to save. Returns false (and says why)
// when Slurm refused.
bool requeue_this_job(const std::string& job_id, const std::vector<std::string>& exclude,
                      const std::function<void(const std::string&)>& say);

}  // namespace duet::app
