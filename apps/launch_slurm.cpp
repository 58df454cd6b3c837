#include "apps/launch_slurm.h"

#include <signal.h>

#include <algorithm>
#include <functional>
#include <stdexcept>

#include "slurm/hostlist.h"

namespace duet::app {

namespace {
// A healthy node starts the probe in well under a second even on a loaded machine; a node
// whose slurmd is gone leaves srun waiting for its answer.
constexpr int kProbeTimeoutS = 5;
}  // namespace

std::string choose_launcher(const std::string& choice, const std::optional<slurm::Allocation>& allocation) {
  if (choice != "auto" && choice != "srun" && choice != "mpirun")
    throw std::invalid_argument("--launcher " + choice + ": allowed values are auto | srun | mpirun");
  if (choice == "srun" && !allocation)
    throw std::invalid_argument("--launcher srun: not inside a Slurm allocation (SLURM_JOB_ID and SLURM_JOB_NODELIST unset)");
  if (choice != "auto") return choice;
  return allocation && slurm::srun_has_pmix() ? "srun" : "mpirun";
}

std::vector<std::pair<std::string, std::string>> node_problems(const SlurmLaunch& l,
                                                               const std::vector<std::string>& candidates,
                                                               const std::function<void(const std::string&)>& say) {
  std::vector<std::pair<std::string, std::string>> bad;
  // After a node loss SLURM_JOB_NODELIST is stale: the controller says which nodes the
  // allocation still has (a --no-kill job loses its failed nodes) and in what state.
  std::vector<std::string> in_job;
  try {
    in_job = slurm::live_nodes(l.allocation.job_id);
  } catch (const std::exception&) {
    in_job = candidates;  // the controller did not answer: the states and the probe decide
  }
  const auto states = slurm::node_states(candidates);
  std::vector<std::string> probe;
  for (const auto& n : candidates) {
    const auto it = states.find(n);
    if (it == states.end() || slurm::node_unusable(it->second))
      bad.push_back({n, "Slurm reports it " + (it == states.end() ? std::string("unknown") : it->second)});
    else if (std::find(in_job.begin(), in_job.end(), n) == in_job.end())
      bad.push_back({n, "no longer part of Slurm job " + l.allocation.job_id});
    else
      probe.push_back(n);
  }
  // A node whose slurmd died a moment ago still looks fine to the controller for a while
  // (SlurmdTimeout): starting one task there tells at once.
  const auto failed = slurm::failed_probe(probe, {l.duet, "--help"}, kProbeTimeoutS);
  // Every node failing the probe points at the probe (the executable, the file system it is
  // on, srun), not at the nodes: none is excluded for it, and the relaunch shows what fails.
  if (probe.size() > 1 && failed.size() == probe.size()) {
    say("the probe task (" + l.duet + " --help) failed on every node Slurm reports usable (" +
        slurm::hostlist_compress(failed) + "): not taken for node failures");
    return bad;
  }
  for (const auto& n : failed)
    bad.push_back({n, "a probe task did not start and answer there within " + std::to_string(kProbeTimeoutS) + " s"});
  return bad;
}

std::vector<std::string> srun_command(const std::vector<std::string>& nodes, int ranks) {
  // --overlap: a step of an attempt that was just torn down may still hold its CPUs in the
  // controller's books for a moment; the relaunch must not queue behind it.
  // --distribution=block: rank r runs on the (r / ranks-per-node)-th node, the placement the
  // supervisor assumes when it tells which node a dead rank was on (supervisor/nodes.h).
  // --export=ALL: the ranks need this process's environment (the run directory, its id and
  // lock token, the supervisor's address, the fence); a site or user default of
  // SBATCH_EXPORT=NONE would otherwise reach srun through the job's SLURM_EXPORT_ENV.
  return {"srun", "--mpi=pmix", "--export=ALL", "--nodes=" + std::to_string(nodes.size()),
          "--ntasks=" + std::to_string(ranks), "--nodelist=" + slurm::hostlist_compress(nodes), "--kill-on-bad-exit=1",
          "--overlap", "--distribution=block"};
}

bool requeue_this_job(const std::string& job_id, const std::vector<std::string>& exclude,
                      const std::function<void(const std::string&)>& say) {
  signal(SIGTERM, SIG_IGN);
  try {
    if (const std::string warning = slurm::requeue(job_id, exclude); !warning.empty()) say(warning);
  } catch (const std::exception& e) {
    say(std::string("requeue refused: ") + e.what());
    return false;
  }
  say("Slurm job " + job_id + " requeued" +
      (exclude.empty() ? "" : " without " + slurm::hostlist_compress(exclude)) +
      ": it resumes from the newest verified checkpoint when Slurm starts it again");
  return true;
}

}  // namespace duet::app
