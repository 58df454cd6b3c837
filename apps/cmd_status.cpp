// duet status RUN_DIR: where a submitted run stands — its Slurm job (state, nodes in use and
// excluded, requeues), the supervisor's attempts and restarts (events.jsonl), the last step
// trained (metrics.jsonl) and the last checkpoint committed.
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>

#include "apps/commands.h"
#include "apps/config_options.h"
#include "slurm/client.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace duet::app {

int cmd_status(int argc, char** argv) {
  po::options_description opts("usage: duet status RUN_DIR\n\nThe run's Slurm job, attempts, nodes, last step and checkpoint");
  opts.add_options()("help,h", "show this help")("run", po::value<std::string>(), "the run directory");
  po::positional_options_description pos;
  pos.add("run", 1);
  po::variables_map vm;
  store_options(opts, argc, argv, vm, &pos);
  if (vm.count("help")) {
    std::printf("%s\n", ((std::ostringstream&)(std::ostringstream() << opts)).str().c_str());
    return 0;
  }
  if (!vm.count("run")) throw std::invalid_argument("RUN_DIR: required (e.g. runs/tiny)");
  const fs::path dir = vm["run"].as<std::string>();
  if (!fs::is_directory(dir)) throw std::invalid_argument("RUN_DIR '" + dir.string() + "': no such directory");
  std::printf("run %s\n", dir.c_str());

  // The Slurm job: the last submission recorded by duet submit.
  std::string job_id, line;
  for (std::ifstream in(dir / "slurm-jobs"); std::getline(in, line);)
    if (!line.empty()) job_id = line.substr(0, line.find(' '));
  if (job_id.empty()) {
    std::printf("slurm: not submitted with duet submit (no %s)\n", (dir / "slurm-jobs").c_str());
  } else {
    try {
      auto f = slurm::job_fields(job_id);
      for (const char* k : {"ExcNodeList", "NodeList", "Reason"})
        if (f[k] == "(null)" || f[k].empty()) f[k] = "none";
      std::printf("slurm: job %s %s (reason %s), nodes %s, excluded %s, requeued %s time(s), run time %s of %s\n",
                  job_id.c_str(), f["JobState"].c_str(), f["Reason"].c_str(), f["NodeList"].c_str(),
                  f["ExcNodeList"].c_str(), f["Restarts"].c_str(), f["RunTime"].c_str(), f["TimeLimit"].c_str());
    } catch (const std::exception& e) {
      std::printf("slurm: job %s: %s\n", job_id.c_str(), e.what());
    }
  }

  // The supervisor's record: every start of the job appends to the same events.jsonl.
  // Nodes the supervisor excluded and the layout it runs: those of the newest start of the job
  // (each start's supervisor begins at attempt 1 with the nodes Slurm gave it).
  int attempts = 0, restarts = 0;
  std::string checkpoint = "none", finished, layout;
  std::map<std::string, std::string> excluded;
  const std::regex kind("\"kind\": \"([a-z-]+)\""), cause("\"cause\": \"([^\"]*)\"");
  const std::regex host("\"host\": \"([^\"]*)\""), lay("\"layout\": \"([^\"]*)\""), first("\"attempt\": 1,");
  for (std::ifstream in(dir / "events.jsonl"); std::getline(in, line);) {
    std::smatch k, c, h, l;
    if (!std::regex_search(line, k, kind)) continue;
    std::regex_search(line, c, cause);
    std::regex_search(line, h, host);
    if (k[1] == "launched") {
      ++attempts;
      if (std::regex_search(line, first)) excluded.clear();
      if (std::regex_search(line, l, lay)) layout = l[1];
    } else if (k[1] == "restart-scheduled") {
      ++restarts;
    } else if (k[1] == "checkpoint" || k[1] == "snapshot-saved") {  // the supervisor saved the snapshots' newest
      checkpoint = c[1];
    } else if (k[1] == "finished") {
      finished = c[1];
    } else if (k[1] == "node-excluded" && h.size() > 1) {
      excluded[h[1]] = c[1];
    } else if (k[1] == "node-restored" && h.size() > 1) {
      excluded.erase(h[1]);
    }
  }
  std::printf("supervisor: %d attempt(s), %d restart(s) after a fault, last checkpoint: %s%s%s\n", attempts, restarts,
              checkpoint.c_str(), finished.empty() ? "" : ", last job start finished: ", finished.c_str());
  if (!layout.empty()) std::printf("layout: %s (the newest attempt)\n", layout.c_str());
  std::string ex;
  for (const auto& [node, why] : excluded) ex += (ex.empty() ? "" : "; ") + node + " (" + why + ")";
  if (!ex.empty()) std::printf("nodes excluded by the supervisor: %s\n", ex.c_str());
  int last_step = -1;
  const std::regex step("\"step\":([0-9]+)");
  for (std::ifstream in(dir / "metrics.jsonl"); std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, step)) last_step = std::stoi(m[1]);
  }
  std::printf("training: %s%s\n", last_step < 0 ? "no step yet" : ("last step " + std::to_string(last_step)).c_str(),
              fs::exists(dir / "FINISHED") ? " (finished)" : "");
  return 0;
}

}  // namespace duet::app
