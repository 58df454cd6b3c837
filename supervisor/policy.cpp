#include "supervisor/policy.h"

#include <map>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace duet::supervisor {

namespace {

constexpr double kFirstStoppedWindow = 0.5;  // seconds
constexpr double kUnresponsive = 2.0;        // seconds without any heartbeat

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string fmt(const char* f, double a, double b = 0) {
  char buf[160];
  std::snprintf(buf, sizeof buf, f, a, b);
  return buf;
}

Action log(std::string what, std::string why, std::vector<int> ranks = {}) {
  Action a;
  a.kind = Action::Kind::Log, a.what = std::move(what), a.why = std::move(why), a.ranks = std::move(ranks);
  return a;
}

Action of(Action::Kind k) {
  Action a;
  a.kind = k;
  return a;
}

Action finish(Outcome o, std::string why) {
  Action a;
  a.kind = Action::Kind::Finish, a.exit_code = static_cast<int>(o), a.why = std::move(why);
  return a;
}

// What a heartbeat's op number stands for (runtime/trainer.cpp): the engine counts a step's
// ops from 0; the larger numbers mark the parts of a step after them.
std::string describe_op(int op) {
  if (op >= (1 << 23)) return "validation micro-batch " + std::to_string(op - (1 << 23));
  if (op == (1 << 22)) return "the run's final save";
  if (op == (1 << 21)) return "the step's checkpoint save";
  if (op == (1 << 20)) return "the gradient reduction and optimizer update";
  return "op " + std::to_string(op);
}

std::string describe_exit(const Event& e) {
  if (e.exit_code == -1 && e.signal == 0) return "its connection closed before it finished (the process died)";
  return e.signal ? "killed by signal " + std::to_string(e.signal) : "exit code " + std::to_string(e.exit_code);
}

}  // namespace

const char* state_name(Policy::State s) {
  switch (s) {
    case Policy::State::Starting: return "starting";
    case Policy::State::Running: return "running";
    case Policy::State::Stopping: return "stopping";
    case Policy::State::TearingDown: return "tearing down";
    case Policy::State::Waiting: return "waiting to restart";
    case Policy::State::Finished: return "finished";
  }
  return "?";
}

Policy::Policy(const PolicyConfig& cfg, int ranks) : cfg_(cfg), ranks_(ranks), backoff_(cfg.backoff_s) {
  if (ranks < 1) throw std::invalid_argument("supervisor policy: ranks must be >= 1");
}

double Policy::timeout(Phase phase) const {
  switch (phase) {
    case Phase::Setup: return cfg_.setup_timeout_s;
    case Phase::Save: return cfg_.save_timeout_s;
    case Phase::Step: break;
  }
  if (cfg_.hang_timeout_s > 0) return cfg_.hang_timeout_s;
  if (step_times_.empty()) return cfg_.setup_timeout_s;  // no step has completed yet
  return std::max(10 * median(step_times_), 60.0);
}

std::vector<Action> Policy::fault(double t, const std::string& what, const std::string& why, std::vector<int> ranks,
                                  bool dump_stacks) {
  if (state_ == State::TearingDown || state_ == State::Waiting || state_ == State::Finished) return {};
  if (state_ == State::Stopping) stop_failed();
  std::vector<Action> out = {log(what, why, ranks)};
  if (dump_stacks) {
    Action d = of(Action::Kind::DumpStacks);
    d.ranks = std::move(ranks);
    out.push_back(d);
  }
  out.push_back(of(Action::Kind::Teardown));
  state_ = State::TearingDown;
  return out;
}

void Policy::stop_failed() {
  if (stop_by_rank_) {  // a launcher (mpirun) signals the ranks that survive a fault: a restart as for any fault
    stop_by_rank_ = false;
    stop_outcome_.reset();
    state_ = State::Running;  // the fault is handled as one while running
    return;
  }
  stop_failed_ = true;
  // A SIGUSR1's stop (a scheduler's warning) still ends asking for a requeue: the next job
  // resumes from the newest state there is. SIGTERM's and SIGINT's end as failed.
  if (stop_outcome_ != Outcome::RequeueRequested) stop_outcome_ = Outcome::Failed;
}

std::vector<Action> Policy::after_teardown(double t, bool run_finished) {
  if (torn_down_after_done_) {  // the ranks had ended well: what they did stands
    state_ = State::Finished;
    const std::string why = fmt("every rank had ended well; the launcher, still running %g s later, was torn down",
                                cfg_.save_timeout_s);
    if (run_finished) return {finish(Outcome::Done, why)};  // a stop with the last step found nothing to stop
    if (stop_outcome_) return {finish(*stop_outcome_, why)};
    // A rank may have hung after its link closed, before marking the run finished.
    return {finish(Outcome::Failed, why + "; the run is not marked finished")};
  }
  if (stop_outcome_) {
    state_ = State::Finished;
    return {finish(*stop_outcome_, stop_failed_ ? "a fault while the ranks stopped for a signal: the stop saved no "
                                                  "checkpoint (the newest one, or snapshot saved, stays)"
                                                : "stopped by a signal")};
  }
  if (failures_without_progress_ >= cfg_.max_restarts) {
    state_ = State::Finished;
    return {finish(Outcome::GaveUp, std::to_string(failures_without_progress_ + 1) +
                                        " failures in a row without getting further than step " +
                                        std::to_string(progress_step_) +
                                        " (no new checkpoint or in-memory snapshot; fault.max_restarts " +
                                        std::to_string(cfg_.max_restarts) + "): giving up")};
  }
  ++failures_without_progress_;
  state_ = State::Waiting;
  relaunch_at_ = t + backoff_;
  std::vector<Action> out = {log("restart-scheduled", fmt("attempt %g in %g s", attempt_ + 1, backoff_))};
  backoff_ = std::min(2 * backoff_, kMaxBackoff);
  return out;
}

void Policy::check_hang(double t, std::vector<Action>& out) {
  // Nodes whose every rank went silent: lost with their host.
  std::map<std::string, std::vector<int>> silent_nodes;
  std::map<std::string, bool> node_alive;
  double silent = 0;
  for (int r = 0; r < (int)ranks_.size(); ++r) {
    const RankState& s = ranks_[r];
    if (!s.remote || s.exited) continue;
    if (t - s.last_beat > cfg_.host_timeout_s) {
      silent_nodes[s.node].push_back(r);
      silent = std::max(silent, t - s.last_beat);
    } else {
      node_alive[s.node] = true;
    }
  }
  std::vector<int> lost;
  std::string nodes;
  for (const auto& [node, ranks] : silent_nodes)
    if (!node_alive.count(node)) {
      lost.insert(lost.end(), ranks.begin(), ranks.end());
      nodes += (nodes.empty() ? "" : ", ") + node;
    }
  if (!lost.empty()) {
    std::string who;
    for (int r : lost) who += (who.empty() ? "rank " : ", rank ") + std::to_string(r);
    out = fault(t, "host-lost",
                "node " + nodes + " (" + who + ")" + fmt(" silent for %.1f s", silent) +
                    fmt(" (fault.host_timeout_s %g): gone or cut off", cfg_.host_timeout_s),
                lost, false);
    return;
  }
  std::vector<int> stuck;
  double earliest = 0;
  for (int r = 0; r < (int)ranks_.size(); ++r) {
    const RankState& s = ranks_[r];
    if (s.exited || t - s.last_progress <= timeout(s.phase)) continue;
    if (stuck.empty() || s.last_progress < earliest) earliest = s.last_progress;
    stuck.push_back(r);
  }
  if (stuck.empty()) return;
  // Name the culprits: ranks that stopped answering at all (stopped, or stuck in the kernel:
  // their heartbeat thread is silent too), else those that stopped progressing first — the
  // others may only be waiting on them. Heartbeats come every 100 ms, so half a second tells
  // them apart.
  std::vector<int> first;
  for (int r : stuck)
    if (t - ranks_[r].last_beat > kUnresponsive) first.push_back(r);
  if (first.size() == stuck.size()) first.clear();  // all silent: the whole job froze
  if (first.empty())
    for (int r : stuck)
      if (ranks_[r].last_progress <= earliest + kFirstStoppedWindow) first.push_back(r);
  std::string who;
  for (int r : first) who += (who.empty() ? "rank " : ", rank ") + std::to_string(r);
  const RankState& s = ranks_[first.front()];
  out = fault(t, "hang",
              who + " made no progress for " + fmt("%.1f s (timeout %.1f s)", t - s.last_progress, timeout(s.phase)) +
                  " at step " + std::to_string(s.step) + ", " + describe_op(s.op),
              first, /*dump_stacks=*/true);
}

void Policy::record_step_times(const Event& e, std::vector<Action>& out) {
  if (e.seconds.size() != ranks_.size()) return;
  step_times_.push_back(median(e.seconds));
  if (ranks_.size() < 2) return;
  for (size_t r = 0; r < ranks_.size(); ++r) {
    std::vector<double> peers;
    for (size_t q = 0; q < ranks_.size(); ++q)
      if (q != r) peers.push_back(e.seconds[q]);
    const double m = median(peers);
    RankState& s = ranks_[r];
    s.slow_steps = m > 0 && e.seconds[r] >= cfg_.straggler_ratio * m ? s.slow_steps + 1 : 0;
    if (s.slow_steps >= cfg_.straggler_steps && !s.named_straggler) {
      s.named_straggler = true;
      out.push_back(log("straggler",
                        "rank " + std::to_string(r) + fmt(" took %.2f× its peers' median step time for %g steps",
                                                          e.seconds[r] / m, cfg_.straggler_steps),
                        {(int)r}));
    }
  }
}

std::vector<Action> Policy::on(const Event& e) {
  std::vector<Action> out;
  if (state_ == State::Finished) return out;
  switch (e.kind) {
    case Event::Kind::Launched:
      if (e.ranks > 0) ranks_.resize(e.ranks);  // an elastic attempt on fewer (or more) ranks
      for (auto& r : ranks_) r = RankState{-1, -1, Phase::Setup, e.t, e.t, false, 0, false, false, ""};
      all_done_at_ = -1;
      state_ = State::Starting;
      out.push_back(log("launched", "attempt " + std::to_string(attempt_)));
      break;
    case Event::Kind::Hello: {
      RankState& r = ranks_.at(e.rank);
      r.remote = e.remote;
      r.node = e.node;
      r.last_beat = e.t;
      break;
    }
    case Event::Kind::Heartbeat: {
      RankState& r = ranks_.at(e.rank);
      if (r.step != e.step || r.op != e.op || r.phase != e.phase) r.last_progress = e.t;
      r.last_beat = e.t;
      r.step = e.step, r.op = e.op, r.phase = e.phase;
      break;
    }
    case Event::Kind::StepTimes:
      if (state_ == State::Starting) state_ = State::Running;
      record_step_times(e, out);
      break;
    case Event::Kind::Resumed:  // from further on than ever before: the last attempt made progress
      // Not once its attempt's failure was counted (Waiting, after the teardown): that would
      // wipe out the count of that failure. Before (tearing down) it is the attempt's progress.
      if (state_ != State::Waiting && state_ != State::Finished && e.step > progress_step_) {
        progress_step_ = e.step;
        failures_without_progress_ = 0;
        backoff_ = cfg_.backoff_s;
      }
      break;
    case Event::Kind::Committed:
      progress_step_ = std::max(progress_step_, e.step);
      failures_without_progress_ = 0;
      backoff_ = cfg_.backoff_s;
      out.push_back(log("checkpoint", "step " + std::to_string(e.step) + " committed"));
      break;
    case Event::Kind::NonFinite: {
      skip_step_ = e.step;  // even when another report of the same fault came first
      const std::string why = "a non-finite loss or gradient norm at step " + std::to_string(e.step) +
                              (e.where.empty() ? " (rank " + std::to_string(e.rank) + ")" : " (" + e.where + ")") +
                              ": restarting from the last checkpoint without that step's data";
      out = fault(e.t, "non-finite", why, {e.rank}, false);
      if (out.empty()) out.push_back(log("non-finite", why, {e.rank}));
      break;
    }
    case Event::Kind::RankExited: {
      RankState& r = ranks_.at(e.rank);
      r.exited = true;
      if (e.exit_code == 0 && e.signal == 0) {  // the job's own exit says how it ended
        if (std::all_of(ranks_.begin(), ranks_.end(), [](const RankState& s) { return s.exited; })) all_done_at_ = e.t;
        break;
      }
      if (state_ == State::Stopping) stop_failed();  // the stop's save did not finish
      out = fault(e.t, "rank-died", "rank " + std::to_string(e.rank) + ": " + describe_exit(e), {e.rank}, false);
      break;
    }
    case Event::Kind::JobExited:
      if (state_ == State::TearingDown) {
        out = after_teardown(e.t, e.run_finished);
        break;
      }
      if (state_ == State::Waiting) break;
      // Codes a restart cannot change: the job cannot start (config, memory) or it trained
      // but could not save what it was asked to. They pass through.
      if (e.signal == 0 && (e.exit_code == core::exit_code(Outcome::Usage) ||
                            e.exit_code == core::exit_code(Outcome::CheckpointNotSaved))) {
        state_ = State::Finished;
        out.push_back(finish(static_cast<Outcome>(e.exit_code),
                             std::string("the job ended with: ") + core::exit_code_meaning(e.exit_code)));
        break;
      }
      if (e.exit_code == 0 && e.signal == 0) {
        state_ = State::Finished;
        if (!stop_outcome_)
          out.push_back(finish(Outcome::Done, "training finished"));
        else if (e.run_finished)  // a stop that came with the last step found nothing left to stop
          out.push_back(finish(Outcome::Done, "training finished (the stop came with its last step)"));
        else
          out.push_back(finish(*stop_outcome_, "stopped at a step boundary with a checkpoint"));
        break;
      }
      if (state_ == State::Stopping) stop_failed();
      out = fault(e.t, "job-died", "the launcher ended: " + describe_exit(e), {}, false);
      for (const Action& a : after_teardown(e.t)) out.push_back(a);  // nothing left to tear down but strays
      break;
    case Event::Kind::SignalReceived: {
      const Outcome o = e.received == Signal::Usr1 ? Outcome::RequeueRequested : Outcome::Done;
      const std::string name =
          std::string(e.received == Signal::Usr1 ? "SIGUSR1" : e.received == Signal::Int ? "SIGINT" : "SIGTERM") +
          (e.rank >= 0 ? " to rank " + std::to_string(e.rank) : "");
      // A rank's SIGTERM counts only while its attempt runs: a teardown signals the ranks too,
      // and one that is stopping already stops.
      if (e.rank >= 0 && state_ != State::Starting && state_ != State::Running) break;
      if (state_ == State::Stopping) {
        if (e.received == Signal::Int && interrupts_ > 0) {
          stop_outcome_ = Outcome::Interrupted;
          out.push_back(log("stop-now", "a second SIGINT: stopping at once"));
          out.push_back(of(Action::Kind::Teardown));
          state_ = State::TearingDown;
        } else if (stop_by_rank_ && e.rank < 0) {  // the job itself is told to stop too: that is final
          stop_by_rank_ = false;
          stop_outcome_ = o;
          out.push_back(log("stop", name + ": the stop under way is the job's"));
        } else {
          out.push_back(log("signal-ignored", name + " while the ranks save and stop"));
        }
        if (e.received == Signal::Int) ++interrupts_;
        break;
      }
      if (e.received == Signal::Int) ++interrupts_;
      if (state_ == State::Waiting) {  // nothing runs: the last checkpoint is the state
        state_ = State::Finished;
        out.push_back(finish(o, name + " between attempts"));
        break;
      }
      stop_outcome_ = o;
      stop_by_rank_ = e.rank >= 0;
      if (state_ == State::TearingDown) break;  // after the teardown: finish instead of restarting
      out.push_back(log("stop", name + ": every rank stops at the next step boundary with a checkpoint",
                        e.rank >= 0 ? std::vector<int>{e.rank} : std::vector<int>{}));
      out.push_back(of(Action::Kind::RequestStop));
      state_ = State::Stopping;
      break;
    }
    case Event::Kind::Tick:
      if ((state_ == State::Starting || state_ == State::Running || state_ == State::Stopping) && all_done_at_ >= 0 &&
          e.t - all_done_at_ > cfg_.save_timeout_s) {
        // Every rank ended well, and nothing watches what they do after (MPI_Finalize, rank 0's
        // report on a stuck file system): the launcher gets the save's allowance to end.
        out.push_back(log("stuck-at-exit", fmt("every rank ended well %.0f s ago and the launcher has not "
                                               "(fault.save_timeout_s %g): tearing it down",
                                               e.t - all_done_at_, cfg_.save_timeout_s)));
        out.push_back(of(Action::Kind::Teardown));
        state_ = State::TearingDown;
        torn_down_after_done_ = true;
      } else if (state_ == State::Starting || state_ == State::Running || state_ == State::Stopping) {
        check_hang(e.t, out);  // a rank that hangs while stopping is a fault too
      } else if (state_ == State::Waiting && e.t >= relaunch_at_) {
        ++attempt_;
        if (skip_step_) {
          Action s = of(Action::Kind::SkipData);
          s.step = *skip_step_;
          out.push_back(s);
          skip_step_.reset();
        }
        Action l = of(Action::Kind::Launch);
        l.attempt = attempt_;
        out.push_back(l);
        state_ = State::Starting;
      }
      break;
  }
  return out;
}

}  // namespace duet::supervisor
