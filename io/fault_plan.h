#pragma once
// Fault injection for tests and benchmarks: which fault an attempt of a run injects. Either
// one fault (runtime.fail_rank, fail_step, fail_signal, fail_at, fail_scope, fail_nan) in the
// first runtime.fail_attempts attempts, or a plan of one fault per attempt
// (runtime.fail_plan), so a single supervised run can go through a sequence of faults:
//
//   runtime.fail_plan: "1:kill:3:5,2:stop:6:9,3:killsave:2:12,4:corrupt:0:15,5:nodestop:4:17"
//
// each entry attempt:kind:rank:step, kinds:
//   kill       SIGKILL of the rank at the start of the step
//   stop       SIGSTOP of the rank at the start of the step (a hang)
//   fail       an exception on the rank at the start of the step (it exits non-zero)
//   nan        a non-finite loss from the rank at the step
//   killsave   SIGKILL of the rank while it writes its checkpoint shard of the step
//   killcommit SIGKILL of rank 0 inside its commit of the step's checkpoint
//   corrupt    rank 0 damages the newest committed checkpoint, then SIGKILL at the step's start
//   nodekill   SIGKILL of every rank of the rank's node (launch.ranks_per_node)
//   nodestop   SIGSTOP of every rank of the rank's node (a lost host)
//   diskfull   the rank's checkpoint shard of the step fails for lack of space (ENOSPC): the
//              save is not committed and training goes on; it may share an attempt with one
//              other fault
//   unreadable when the attempt resumes, the rank alone cannot read the run's checkpoints of the
//              step or newer (a read error on one rank: a bad NFS client, a flaky link), so
//              its own search finds an older one; nothing is killed, and it may share an
//              attempt with one other fault

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/config.h"

namespace duet::io {

struct FaultSpec {
  int rank = -1, step = 0;
  int signal = 0;  // 0: an exception
  FailAt at = FailAt::Step;
  FailScope scope = FailScope::Rank;
  bool nan = false;
  bool corrupt_newest = false;  // rank 0 damages the newest committed checkpoint first
  bool no_space = false;        // diskfull: the shard write fails, nothing is killed
  bool unreadable = false;      // unreadable: checkpoints of step or newer fail to read on resume
  bool beside_another() const { return no_space || unreadable; }  // may share an attempt
  bool operator==(const FaultSpec&) const = default;
};

struct PlannedFault {
  int attempt = 1;
  FaultSpec fault;
};

// Parses runtime.fail_plan; throws ConfigError naming the key and the entry.
std::vector<PlannedFault> parse_fault_plan(std::string_view text);

// The fault attempt `attempt` (1-based) injects, a full disk and an unreadable checkpoint
// aside; nullopt when none.
std::optional<FaultSpec> fault_for_attempt(const RuntimeSection& runtime, int attempt);
// The steps whose checkpoint shard fails for lack of space on `rank` in attempt `attempt`.
std::vector<int> full_disk_steps(const RuntimeSection& runtime, int attempt, int rank);
// The oldest step whose checkpoint `rank` cannot read when attempt `attempt` resumes (that one
// and every newer one); nullopt when it reads them all.
std::optional<int> unreadable_from(const RuntimeSection& runtime, int attempt, int rank);

}  // namespace duet::io
