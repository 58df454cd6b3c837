#pragma once
// `duet launch` inside a Slurm allocation: which launcher starts the ranks, on which nodes,
// and what happens when nodes are lost or the job asks to be requeued.

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "slurm/client.h"

namespace duet::app {

// Raised by an attempt's command when too few usable nodes are left for the job: the job
// cannot run in this allocation and goes back to Slurm's queue, keeping off `lost`.
struct NodesLost : std::runtime_error {
  NodesLost(const std::string& what, std::vector<std::string> lost_nodes)
      : std::runtime_error(what), lost(std::move(lost_nodes)) {}
  std::vector<std::string> lost;
};

struct SlurmLaunch {
  slurm::Allocation allocation;
  std::vector<std::string> nodes;  // where the ranks run: --nodelist, else the whole allocation
  int ranks = 1;
  std::string duet;                // this executable (the pre-launch probe runs it on each node)
};

// "srun" or "mpirun": `choice` is auto|srun|mpirun; auto takes srun --mpi=pmix inside an
// allocation whose srun has PMIx, mpirun otherwise. Throws naming --launcher for a bad value
// or srun outside an allocation.
std::string choose_launcher(const std::string& choice, const std::optional<slurm::Allocation>& allocation);

// The nodes an attempt may use: attempt 1 takes them as given; a relaunch first drops those
// Slurm reports down or not responding and those where the probe (this duet, started as one
// task) does not answer within a few seconds. Throws NodesLost when fewer than needed remain
// (elastic shrink to fewer nodes is not built: the job is requeued instead).
std::vector<std::string> usable_nodes(const SlurmLaunch& l, int attempt, const std::function<void(const std::string&)>& say);

// srun --mpi=pmix on exactly `nodes`, `ranks` tasks, the job killed whole when one rank fails.
std::vector<std::string> srun_command(const std::vector<std::string>& nodes, int ranks);

// After exit code 5 (SIGUSR1: checkpoint saved) or NodesLost: `scontrol requeue` this job,
// keeping it off `exclude`. SIGTERM, which Slurm sends to this run of the job as it requeues
// it, is ignored from here on: the job has nothing left to save. Returns false (and says why)
// when Slurm refused.
bool requeue_this_job(const std::string& job_id, const std::vector<std::string>& exclude,
                      const std::function<void(const std::string&)>& say);

}  // namespace duet::app
