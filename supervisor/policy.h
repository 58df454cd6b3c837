#pragma once
// The supervisor's decisions as data: events in, actions out. Everything that watches
// processes, reads sockets or sends signals lives elsewhere and feeds this class; here is only
// what to do about what happened, so every rule is unit-tested without starting a process
// (tests/supervisor/policy_test.cpp) — the way schedules are data.
//
// Life of a job: Starting (launched, no step has run yet) → Running → either Done, or a fault
// (a rank died, stopped progressing, or produced a non-finite loss) → the job is torn down →
// after a backoff it is launched again as a new attempt from the newest checkpoint → ...
// until the consecutive restarts that made no progress (no new checkpoint, and no restart from
// a newer in-memory snapshot than any before) reach max_restarts: GiveUp. A stop signal asks every rank to stop at the next step boundary with
// a checkpoint (Stopping); a second SIGINT stops at once.
//
// Times are seconds on one monotonic clock, given by the caller with each event.

#include <optional>
#include <string>
#include <vector>

#include "core/exit_code.h"

namespace duet::supervisor {

struct PolicyConfig {
  // No progress for this long is a hang; 0 = automatic: max(10 × median step time, 60 s)
  // once steps have run (set-up and saves have their own allowances).
  double hang_timeout_s = 0;
  double setup_timeout_s = 900;  // launch to the first completed step
  double save_timeout_s = 600;   // a checkpoint save in progress; also the launcher's end after
                                 // every rank finished (MPI_Finalize, rank 0's report)
  double backoff_s = 10;         // first restart delay; doubles to kMaxBackoff, reset by progress
  int max_restarts = 3;          // consecutive restarts without progress (a new checkpoint or snapshot)
  int straggler_steps = 5;       // steps in a row at ≥ straggler_ratio × the peers' median
  double straggler_ratio = 1.5;
  // A node (host) of which every rank's heartbeats (every 100 ms) stopped for this long is
  // lost: nothing there closes a connection when a machine vanishes. One silent rank among
  // live ones on its node is stuck, not lost: a hang, with its own timeout. The supervisor's
  // own host is looked at through /proc instead (its silent ranks are hangs).
  double host_timeout_s = 1.0;
};
constexpr double kMaxBackoff = 300;

enum class Signal { Term, Int, Usr1 };
enum class Phase { Setup, Step, Save };  // what a rank says it is doing in its heartbeat

struct Event {
  enum class Kind {
    Launched,        // attempt started (all ranks spawned)
    Hello,           // rank connected: on `node`; `remote`: not the supervisor's own host
    Heartbeat,       // rank, step, op, phase: its progress
    StepTimes,       // step, seconds per rank (index = rank) of one completed step
    RankExited,      // rank, exit_code or signal
    JobExited,       // the launcher (mpirun/srun) ended: exit_code or signal
    Committed,       // a checkpoint of `step` was committed by this attempt
    Resumed,         // the attempt loaded the state of `step` (a checkpoint or an in-memory snapshot)
    NonFinite,       // a rank saw a non-finite loss or gradient norm at `step`
    SignalReceived,  // the supervisor got `received` (rank >= 0: that rank got it and said so)
    Tick,            // time passes (the caller's poll)
  };
  Kind kind = Kind::Tick;
  double t = 0;
  int rank = -1;
  int step = -1;
  int op = -1;
  Phase phase = Phase::Step;
  int exit_code = 0;  // RankExited / JobExited; -1: a rank's connection closed before it finished
  int signal = 0;     // RankExited / JobExited: the signal that ended it (0: exited)
  Signal received = Signal::Term;
  std::vector<double> seconds;  // StepTimes
  bool remote = false;          // Hello
  int ranks = 0;                // Launched: the attempt's ranks (0: as before)
  std::string node;             // Hello: its host, or logical node
  std::string where;            // NonFinite: which micro-batch, when known
  bool run_finished = false;    // JobExited: the run is marked finished (trained all its steps)
};

struct Action {
  enum class Kind {
    Log,            // an event for events.jsonl and the console: what, why
    DumpStacks,     // save every rank's stacks (ranks: the ones that stopped progressing first)
    Teardown,       // kill the whole job (process group), then report JobExited
    RequestStop,    // ask the ranks to stop at the next step boundary with a checkpoint
    Launch,         // start attempt `attempt`, resuming from the newest good checkpoint
    SkipData,       // the next attempt skips the data of `step` (it produced a non-finite value)
    Finish,         // the supervisor exits with exit_code
  };
  Kind kind = Kind::Log;
  std::string what;  // Log: the event kind ("rank-died", "hang", "straggler", ...)
  std::string why;   // Log / Finish: for people
  std::vector<int> ranks;
  int attempt = 0;
  int step = -1;
  int exit_code = 0;
};

// The outcomes the supervisor exits with: the one exit-code table of duet (core/exit_code.h).
using Outcome = core::ExitCode;

class Policy {
 public:
  Policy(const PolicyConfig& cfg, int ranks);

  // The actions `e` calls for, in order.
  std::vector<Action> on(const Event& e);

  enum class State { Starting, Running, Stopping, TearingDown, Waiting, Finished };
  State state() const { return state_; }
  int attempt() const { return attempt_; }
  // The hang timeout in force for a rank in `phase` now.
  double timeout(Phase phase) const;
  // When the next attempt launches (Waiting), on the caller's clock.
  double relaunch_at() const { return relaunch_at_; }

 private:
  struct RankState {
    int step = -1, op = -1;
    Phase phase = Phase::Setup;
    double last_progress = 0;
    double last_beat = 0;  // any heartbeat, progress or not: a rank that cannot send is unresponsive
    bool exited = false;
    int slow_steps = 0;  // consecutive steps at ≥ straggler_ratio × the peers' median
    bool named_straggler = false;
    bool remote = false;  // on another host than the supervisor
    std::string node;
  };
  std::vector<Action> fault(double t, const std::string& what, const std::string& why, std::vector<int> ranks,
                            bool dump_stacks);
  std::vector<Action> after_teardown(double t, bool run_finished = false);
  void stop_failed();  // a fault while the ranks stop for a signal
  void check_hang(double t, std::vector<Action>& out);
  void record_step_times(const Event& e, std::vector<Action>& out);

  PolicyConfig cfg_;
  std::vector<RankState> ranks_;
  State state_ = State::Starting;
  int attempt_ = 1;
  int failures_without_progress_ = 0;
  int progress_step_ = 0;  // the newest step committed or resumed from: a restart beyond it is progress
  double backoff_;
  double relaunch_at_ = 0;
  int interrupts_ = 0;  // SIGINTs received
  std::vector<double> step_times_;  // median per completed step, for the automatic timeout
  std::optional<Outcome> stop_outcome_;  // a stop signal is being honoured
  bool stop_by_rank_ = false;  // ... one only a rank got (a launcher signals survivors of a fault too)
  double all_done_at_ = -1;     // when the last rank of this attempt ended well (-1: not all have)
  bool torn_down_after_done_ = false;  // the launcher outlived its ranks' end: no restart
  bool stop_failed_ = false;           // a fault struck while the ranks stopped
  std::optional<int> skip_step_;
};

const char* state_name(Policy::State s);

}  // namespace duet::supervisor
