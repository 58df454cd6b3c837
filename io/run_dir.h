#pragma once
// Who owns a run directory, and which run a job continues.
//
// A run directory holds one lineage (run.id): config.yaml records it, metrics.jsonl starts
// each job with a header record naming it, every checkpoint's manifest names it. A job
// starting on <run.dir>/<run.name>:
//   - takes the directory's lock first (io/run_lock.h), before anything is written;
//   - continues the run there when it stopped early (killed, train.stop_at, its last step's
//     checkpoint not saved) — same lineage,
//     after checking what the new config changes (io/resume_policy.h);
//   - starts a new run in <name>-2 (-3, …), saying so, when that directory holds a finished
//     run (FINISHED), another lineage (run.id given and different, or none recorded), or
//     checkpoint.resume is false. Nothing is appended to or overwritten in it.
//
//   <run dir>/FINISHED   "duet run <id> finished: step N of N": written when train.steps are done
//                        and the checkpoint asked for at the last step (if any) is saved, by the
//                        attempt that owns the run (apps/cmd_train.cpp, under its fence)

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/config.h"
#include "io/metrics.h"
#include "io/run_lock.h"

namespace duet::io {

// Environment `duet launch` gives its ranks: the directory it claimed, its lineage id and
// the lock token (rank 0 checks the lock still holds it).
constexpr const char* kEnvRunDir = "DUET_RUN_DIR";
constexpr const char* kEnvRunId = "DUET_RUN_ID";
constexpr const char* kEnvRunLock = "DUET_RUN_LOCK";

struct RunClaim {
  std::string dir;                 // the run directory
  std::string id;                  // the lineage id; give it to the run as cfg.run.id
  bool continued = false;          // an existing directory of this lineage is continued
  bool finished = false;           // run.id names a run that finished here: nothing to do (no lock)
  std::unique_ptr<RunLock> lock;   // held while the job lives (null for a rank under launch)
  std::vector<std::string> notes;  // lines for the console and train.log
};

// The job's top process: chooses the directory, takes its lock, checks a continued run's
// config (throws ConfigError naming the keys), writes config.yaml (with run.id). A run.id
// whose run finished in the directory it names, asked for no more train.steps than it ran (a
// Slurm job requeued after its last step), returns that directory with `finished` set: the
// run is not started again under a new name.
RunClaim claim_run_dir(const RunConfig& cfg, const std::function<void(std::string_view)>& say = {});

// Why a job with `cfg` would not continue the run in `dir`, which holds a config.yaml ("has an
// unreadable config.yaml", "holds a finished run (…)", "holds run X, not run.id Y", …), or ""
// when it would: then `existing` is that run's config, still to be checked against `cfg`
// (check_resume). claim_run_dir starts <name>-2 for such a directory; duet submit refuses it.
std::string why_not_continued(const RunConfig& cfg, const std::string& dir, RunConfig& existing);

// Rank 0 of a job started by `duet launch` (kEnvRunLock set): the claimed directory and id,
// after checking that the lock is still launch's. Returns an empty dir when not under launch.
RunClaim join_launched_run();

// Called when all train.steps are done (and the last step's checkpoint, if asked for, is saved;
// apps/cmd_train.cpp calls it under the attempt's fence): a rerun then starts a new run instead,
// unless it asks for this run by its id (claim_run_dir).
void mark_run_finished(const std::string& run_dir, const RunConfig& cfg, int steps);
bool run_finished(const std::string& run_dir);

// 16 hex digits, random.
std::string new_run_id();

// The record each job writes first into metrics.jsonl:
// {"event":"run","run_id":"…","start_step":4,"pid":…,"host":"…","time":"2026-…Z"}
JsonLine run_header(const RunConfig& cfg, int start_step);

}  // namespace duet::io
