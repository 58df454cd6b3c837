#pragma once
// The supervisor's loop: starts a job (mpirun today), hears its ranks (listener.h), watches
// the launcher (job.h), feeds what happens to the policy (policy.h) and carries out its
// actions — until the policy finishes the job. Every decision is a line on the console and
// a record in events.jsonl.

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/layout.h"
#include "supervisor/policy.h"

namespace duet::supervisor {

// What one attempt runs: its number (1-based), layout and ranks, and the nodes it uses (empty
// when the job is not elastic).
struct AttemptPlan {
  int attempt = 1;
  core::Layout layout;
  int ranks = 1;
  std::vector<std::string> nodes;
};

// Elastic jobs (docs/fault-tolerance.md): ranks_per_node ranks on each node; after a node is
// lost the next attempt runs on the healthy ones with the largest valid DP (supervisor/nodes.h).
struct ElasticOptions {
  std::vector<std::string> nodes;  // in placement order
  int ranks_per_node = 1;
  bool logical = false;            // nodes are logical, all on this machine (kNodesEnv)
  core::Layout configured;
  core::LayoutRules rules;
  double node_window_s = 600;
  // One line per excluded node ("node why"), rewritten by the supervisor; a person removes a
  // line to bring the node back at the next attempt.
  std::string excluded_path;
  // false: the job runs on all its nodes or not at all — with a node excluded the supervisor
  // finishes with exit code 5 (run again later; under Slurm: requeued without the node).
  bool shrink = true;
  // Whether the nodes listed in excluded_path by an earlier launch stay excluded. false under
  // Slurm: a new allocation's nodes are the controller's choice.
  bool reload_excluded = true;
  // Asked before every relaunch, with the nodes the supervisor still counts healthy: those of
  // them the resource manager reports gone or that fail a pre-launch check, and why. They are
  // excluded before the next attempt's layout is chosen (Slurm: slurm/client.h).
  std::function<std::vector<std::pair<std::string, std::string>>(const std::vector<std::string>& healthy)> check_nodes;
};

struct SuperviseOptions {
  // The command of an attempt: e.g. mpirun -np N duet train ... with its layout.
  std::function<std::vector<std::string>(const AttemptPlan& plan)> command;
  std::optional<ElasticOptions> elastic;
  core::Layout layout;  // the configured layout (the only one when not elastic)
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
  // The run's in-memory snapshot folder (checkpoint/snapshot.h; "" = none): the supervisor
  // keeps it owned while it lives, so a new run never reclaims it between attempts; it
  // deletes an excluded logical node's folder before the next attempt (on one machine that
  // is what losing the node's memory means) and the whole folder when the job ends.
  std::string snapshot_dir;
  // At the end of a job whose run has not finished, before the snapshot folder goes: saves its
  // newest snapshot set as an HDF5 checkpoint when that is newer than the run's newest
  // checkpoint, with `generation` (the fence, advanced past every attempt), and says what it
  // saved (nullopt when nothing was newer). When it throws, the folder is kept and the
  // console says where: deleting it would lose the steps since the newest checkpoint.
  struct KeptSnapshot {
    std::int64_t step = 0;
    std::string path, line;  // the checkpoint; a line for the console
  };
  std::function<std::optional<KeptSnapshot>(std::int64_t generation)> keep_snapshot;
  std::string schedule;      // for events.jsonl: "dualpipe"
  std::function<void(const std::string&)> log;  // the console
  // Whether the run has trained all its steps (its FINISHED marker), asked when the job ends
  // well: a stop that came with the last step then ends the job as finished, not stopped.
  std::function<bool()> run_finished;
};

// Runs the job to its end and returns the supervisor's exit code (Outcome). SIGTERM, SIGINT
// and SIGUSR1 are handled while it runs (previous handlers are restored on return), and a
// SIGUSR1 held by hold_usr1_until_supervised() since before it started is acted on.
int supervise(const SuperviseOptions& options);

// For a process that will call supervise(), first thing: from now on SIGUSR1 (a scheduler's
// time-limit warning, a preemption notice) is counted, never the end of the process, and it is
// unblocked (a blocked one would silently cancel the requeue). One that comes before supervise()
// starts is acted on as soon as it does (the ranks stop at their first step boundary with a
// checkpoint); one after supervise() has returned is counted and nothing more. Only the first
// supervise() after this call sees the earlier ones. SIGTERM and
// SIGINT keep their default action outside supervise(): with no ranks running, ending is right.
void hold_usr1_until_supervised();

}  // namespace duet::supervisor
