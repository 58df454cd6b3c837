#include "apps/launch_slurm.h"

#include <signal.h>

#include <algorithm>
#include <functional>

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

std::vector<std::string> usable_nodes(const SlurmLaunch& l, int attempt, const std::function<void(const std::string&)>& say) {
  if (attempt == 1) return l.nodes;
  std::vector<std::string> lost;
  const auto states = slurm::node_states(l.nodes);
  std::vector<std::string> candidates;
  for (const auto& n : l.nodes) {
    const auto it = states.find(n);
    if (it == states.end() || slurm::node_unusable(it->second)) {
      say("node " + n + " excluded: Slurm reports it " + (it == states.end() ? "unknown" : it->second));
      lost.push_back(n);
    } else {
      candidates.push_back(n);
    }
  }
  // A node whose slurmd died a moment ago still looks fine to the controller for a while
  // (SlurmdTimeout): starting one task there tells at once.
  for (const auto& n : slurm::failed_probe(candidates, {l.duet, "--help"}, kProbeTimeoutS)) {
    say("node " + n + " excluded: a probe task did not start and answer there within " + std::to_string(kProbeTimeoutS) + " s");
    lost.push_back(n);
    candidates.erase(std::find(candidates.begin(), candidates.end(), n));
  }
  if (lost.empty()) return l.nodes;
  // Same nodes count or nothing: the layout (PP x DP) is fixed to this many nodes' ranks.
  throw NodesLost(std::to_string(lost.size()) + " of " + std::to_string(l.nodes.size()) + " nodes lost (" +
                      slurm::hostlist_compress(lost) + "), " + std::to_string(candidates.size()) +
                      " left: the job needs " + std::to_string(l.nodes.size()),
                  lost);
}

std::vector<std::string> srun_command(const std::vector<std::string>& nodes, int ranks) {
  // --overlap: a step of an attempt that was just torn down may still hold its CPUs in the
  // controller's books for a moment; the relaunch must not queue behind it.
  return {"srun", "--mpi=pmix", "--nodes=" + std::to_string(nodes.size()), "--ntasks=" + std::to_string(ranks),
          "--nodelist=" + slurm::hostlist_compress(nodes), "--kill-on-bad-exit=1", "--overlap"};
}

bool requeue_this_job(const std::string& job_id, const std::vector<std::string>& exclude,
                      const std::function<void(const std::string&)>& say) {
  signal(SIGTERM, SIG_IGN);
  try {
    slurm::requeue(job_id, exclude);
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
