#pragma once
// The supervisor's loop: starts a job (mpirun today), hears its ranks (listener.h), watches
// the launcher (job.h), feeds what happens to the policy (policy.h) and carries out its
// actions — until the policy finishes the job. Every decision is a line on the console and
// a record in events.jsonl.

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "supervisor/policy.h"

namespace duet::supervisor {

struct SuperviseOptions {
  // The command of an attempt (1-based): e.g. mpirun -np N duet train ...
  std::function<std::vector<std::string>(int attempt)> command;
  std::vector<std::pair<std::string, std::string>> env;  // added to every attempt's environment
  int ranks = 1;
  PolicyConfig policy;
  std::string events_path;   // events.jsonl ("" = none); its folder must exist
  std::string stacks_dir;    // where hang diagnostics go ("" = next to events_path)
  std::string listen_host;   // how ranks reach the supervisor ("" = this host's name)
  double teardown_grace_s = 2;
  // The run's fence file (checkpoint/fence.h): advanced before every attempt, whose ranks get
  // the generation in core::kFenceEnv; "" = no fencing.
  std::string fence_path;
  std::string layout;        // for events.jsonl: "pp 4 x dp 2 x ep 2, dualpipe"
  std::function<void(const std::string&)> log;  // the console
};

// Runs the job to its end and returns the supervisor's exit code (Outcome). SIGTERM, SIGINT
// and SIGUSR1 are handled while it runs (previous handlers are restored on return).
int supervise(const SuperviseOptions& options);

}  // namespace duet::supervisor
