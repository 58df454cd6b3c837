#pragma once
// A rank's connection to the supervisor that started its job (core/supervision.h), when the
// environment names one (DUET_SUPERVISOR=host:port). The training thread reports progress
// with cheap stores; a background thread sends a heartbeat every 100 ms and listens for
// "stop". A closed connection means the supervisor is gone: the rank then stops at the next
// step boundary like on "stop", so a killed supervisor leaves no training behind. On
// "stacks <dir>" the background thread writes every thread's stack (runtime/stack_dump.h):
// it answers as long as the process runs, whatever its training thread is stuck in.

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/supervision.h"

namespace duet::runtime {

class SupervisorLink {
 public:
  using Phase = core::RankMessage::Phase;

  // nullptr when no supervisor is named. Throws std::runtime_error when one is named but
  // cannot be reached.
  static std::unique_ptr<SupervisorLink> from_environment(int rank);
  SupervisorLink(const std::string& address, int rank, int attempt);
  ~SupervisorLink();
  SupervisorLink(const SupervisorLink&) = delete;
  SupervisorLink& operator=(const SupervisorLink&) = delete;

  void progress(int step, int op, Phase phase) {
    step_.store(step, std::memory_order_relaxed);
    op_.store(op, std::memory_order_relaxed);
    phase_.store((int)phase, std::memory_order_relaxed);
  }
  void step_time(int step, double seconds);
  void committed(int step);
  // A non-finite value at `step`; where: the rank, direction and micro-batch whose loss was
  // the first non-finite one (-1: not known, e.g. the gradient norm).
  void non_finite(int step, int at_rank = -1, int dir = -1, int mb = -1);
  // A start-up milestone: "load" (checkpoint of `step` loaded in `seconds`), "eval", ...
  void mark(const std::string& name, double seconds, int step = 0);
  // Fault injection is about to strike this rank (sent first, so the supervisor knows when
  // the fault happened).
  void inject(int signal, int step);
  void done();  // this rank finished: its connection closing next is no death

  // "stop" received, or the supervisor gone.
  bool stop_requested() const { return stop_.load() || gone_.load(); }
  bool supervisor_gone() const { return gone_.load(); }
  int attempt() const { return attempt_; }
  // Steps whose data this job skips (core::kSkipStepsEnv): they produced a non-finite value.
  const std::vector<int>& skipped_steps() const { return skipped_; }

 private:
  void send(const core::RankMessage& m);
  void loop();
  // A SIGTERM to this rank (runtime/term_stop.h) stops the whole job: the supervisor hears it
  // once ("sigterm"), as if it had been sent the signal itself.
  void tell_term();

  void handle(const std::string& line);

  int fd_ = -1;
  int rank_;
  int attempt_;
  std::vector<int> skipped_;
  std::mutex send_mu_;
  std::atomic<int> step_{0}, op_{-1}, phase_{(int)Phase::Setup};
  std::atomic<bool> stop_{false}, gone_{false}, quit_{false}, told_term_{false};
  std::thread thread_;
};

}  // namespace duet::runtime
