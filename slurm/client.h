#pragma once
// Talking to Slurm through its commands (sbatch, squeue, scontrol, scancel, srun), each run
// without a shell: arguments travel as argv, never through a command line. An error names
// the command that was run and what Slurm said.

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace duet::slurm {

// What a command printed and how it ended; exit_code 124 when `timeout_s` ran out.
struct CommandOutput {
  int exit_code = -1;
  std::string out, err;
};
CommandOutput run_command(const std::vector<std::string>& argv, double timeout_s = 60);

// The allocation this process runs in, from the environment Slurm gives a batch script;
// nullopt outside Slurm. The node list is the one the job started with: after a node loss
// it is stale — live_nodes() asks the controller.
struct Allocation {
  std::string job_id;
  std::vector<std::string> nodes;  // SLURM_JOB_NODELIST, expanded
  int restart_count = 0;           // SLURM_RESTART_COUNT
};
std::optional<Allocation> current_allocation();

// `sbatch --parsable script`: the job id. Throws std::runtime_error with sbatch's message.
std::string submit(const std::string& script_path, const std::vector<std::string>& sbatch_args = {});

// `scontrol show job -o ID`, as its Key=Value fields (JobState, Reason, NodeList, BatchHost,
// Restarts, ExcNodeList, RunTime, TimeLimit, ...). Throws when Slurm does not know the job.
std::map<std::string, std::string> job_fields(const std::string& job_id);
// Only the state ("RUNNING", "PENDING", "COMPLETED", ...); "" when Slurm has forgotten the job.
std::string job_state(const std::string& job_id);

// `scancel [--signal=SIG --batch] ID`.
void cancel(const std::string& job_id, const std::string& signal = "", bool batch_only = false);

// Puts a running job back in the queue (`scontrol requeue`) and keeps it off `exclude` (nodes
// found dead). Slurm then ends this run of the job (SIGTERM to its steps and batch shell: the
// caller ignores it if it has more to do) and holds the job back for the credential lifetime
// (AuthInfo cred_expire, 120 s by default) before starting it again. The job's earlier
// exclusions are kept (the list becomes their union with `exclude`). Throws when the requeue
// is refused; returns "" or, when the job was requeued but its exclusions could not be set,
// a line saying so.
std::string requeue(const std::string& job_id, const std::vector<std::string>& exclude = {});

// Each node's state as `scontrol show node` writes it ("IDLE", "ALLOCATED", "DOWN*",
// "IDLE+NOT_RESPONDING", ...).
std::map<std::string, std::string> node_states(const std::vector<std::string>& nodes);
// How many machines the nodes are: the distinct hosts `scontrol show node` names for them
// (NodeHostName). Several slurmd may run on one machine (a test cluster, a fat node split in
// two); nodes.size() when the controller cannot be asked.
int distinct_hosts(const std::vector<std::string>& nodes);
// Whether a state is one a job cannot run on: down, drained or draining, failing, not responding.
bool node_unusable(const std::string& state);

// The nodes of the job's allocation that the controller still counts as usable, in
// allocation order: the seam for relaunching on the survivors of a --no-kill allocation.
std::vector<std::string> live_nodes(const std::string& job_id);

// Runs `probe` as one task on each node at once (srun -N1 -n1 -w NODE), `timeout_s` each;
// returns the nodes where it did not start and exit 0 in time.
std::vector<std::string> failed_probe(const std::vector<std::string>& nodes, const std::vector<std::string>& probe,
                                      double timeout_s);

// Whether this cluster's srun can start MPI ranks through PMIx (`srun --mpi=list`).
bool srun_has_pmix();

}  // namespace duet::slurm
