// The supervisor's decisions, event by event: no process is started. Each test drives a
// Policy with the events a job would produce and checks the actions it asks for.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "supervisor/policy.h"

using namespace duet::supervisor;
using K = Event::Kind;
using A = Action::Kind;

namespace {

Event ev(K kind, double t) {
  Event e;
  e.kind = kind, e.t = t;
  return e;
}
Event heartbeat(double t, int rank, int step, int op, Phase phase = Phase::Step) {
  Event e = ev(K::Heartbeat, t);
  e.rank = rank, e.step = step, e.op = op, e.phase = phase;
  return e;
}
Event exited(double t, int rank, int code, int signal = 0) {
  Event e = ev(K::RankExited, t);
  e.rank = rank, e.exit_code = code, e.signal = signal;
  return e;
}
Event job_exited(double t, int code, int signal = 0) {
  Event e = ev(K::JobExited, t);
  e.exit_code = code, e.signal = signal;
  return e;
}
Event step_times(double t, int step, std::vector<double> s) {
  Event e = ev(K::StepTimes, t);
  e.step = step, e.seconds = std::move(s);
  return e;
}
Event signal(double t, Signal s) {
  Event e = ev(K::SignalReceived, t);
  e.received = s;
  return e;
}
Event committed(double t, int step) {
  Event e = ev(K::Committed, t);
  e.step = step;
  return e;
}

bool has(const std::vector<Action>& v, A kind) {
  return std::any_of(v.begin(), v.end(), [&](const Action& a) { return a.kind == kind; });
}
const Action& get(const std::vector<Action>& v, A kind) {
  for (const auto& a : v)
    if (a.kind == kind) return a;
  throw std::runtime_error("no such action");
}
bool logged(const std::vector<Action>& v, const std::string& what) {
  return std::any_of(v.begin(), v.end(), [&](const Action& a) { return a.kind == A::Log && a.what == what; });
}

PolicyConfig quick() {
  PolicyConfig c;
  c.hang_timeout_s = 5, c.setup_timeout_s = 30, c.save_timeout_s = 60, c.backoff_s = 1, c.max_restarts = 3;
  return c;
}

// Launched at t0 and every rank through step 1.
void start(Policy& p, int ranks, double t0 = 0) {
  p.on(ev(K::Launched, t0));
  for (int r = 0; r < ranks; ++r) p.on(heartbeat(t0 + 1, r, 1, 0));
  p.on(step_times(t0 + 1, 1, std::vector<double>(ranks, 0.5)));
}

}  // namespace

TEST(SupervisorPolicy, ACleanRunFinishesDoneWithNoFaultEvent) {
  Policy p(quick(), 2);
  std::vector<Action> all;
  auto take = [&](const Event& e) {
    auto a = p.on(e);
    all.insert(all.end(), a.begin(), a.end());
    return a;
  };
  take(ev(K::Launched, 0));
  for (int step = 1; step <= 20; ++step) {
    for (int r = 0; r < 2; ++r) take(heartbeat(step, r, step, 0));
    take(step_times(step, step, {0.5, 0.52}));
    take(ev(K::Tick, step + 0.5));
  }
  take(exited(21, 0, 0));
  take(exited(21, 1, 0));
  const auto last = take(job_exited(21, 0));
  ASSERT_TRUE(has(last, A::Finish));
  EXPECT_EQ(get(last, A::Finish).exit_code, 0);
  for (const auto& a : all) {
    EXPECT_NE(a.kind, A::Teardown);
    if (a.kind == A::Log) EXPECT_TRUE(a.what == "launched" || a.what == "checkpoint") << a.what;
  }
}

TEST(SupervisorPolicy, ARankDeathTearsDownAndRelaunchesAfterTheBackoff) {
  Policy p(quick(), 4);
  start(p, 4);
  auto a = p.on(exited(3, 2, 0, 9));  // rank 2 SIGKILLed
  EXPECT_TRUE(logged(a, "rank-died"));
  EXPECT_TRUE(has(a, A::Teardown));
  EXPECT_FALSE(has(a, A::Launch));
  EXPECT_TRUE(p.on(exited(3.1, 1, 1)).empty());  // the others fall with it: already handled
  a = p.on(job_exited(3.2, 1));
  EXPECT_TRUE(logged(a, "restart-scheduled"));
  EXPECT_EQ(p.state(), Policy::State::Waiting);
  EXPECT_DOUBLE_EQ(p.relaunch_at(), 4.2);
  EXPECT_TRUE(p.on(ev(K::Tick, 4.1)).empty());
  a = p.on(ev(K::Tick, 4.3));
  ASSERT_TRUE(has(a, A::Launch));
  EXPECT_EQ(get(a, A::Launch).attempt, 2);
  EXPECT_EQ(p.attempt(), 2);
}

TEST(SupervisorPolicy, AHangNamesTheRankThatStoppedFirstAndDumpsStacks) {
  Policy p(quick(), 3);
  start(p, 3);
  // Rank 1 stops at step 2 (t = 2); ranks 0 and 2 wait on it, their op stays put from t = 3.
  p.on(heartbeat(2, 1, 2, 4));
  p.on(heartbeat(3, 0, 2, 5));
  p.on(heartbeat(3, 2, 2, 5));
  EXPECT_TRUE(p.on(ev(K::Tick, 6.9)).empty());  // 4.9 s: under the 5 s timeout
  const auto a = p.on(ev(K::Tick, 8.5));        // rank 1: 6.5 s; ranks 0, 2: 5.5 s
  ASSERT_TRUE(logged(a, "hang"));
  const Action& stacks = get(a, A::DumpStacks);
  EXPECT_EQ(stacks.ranks, std::vector<int>{1});
  EXPECT_TRUE(has(a, A::Teardown));
  EXPECT_NE(get(a, A::Log).why.find("rank 1 made no progress"), std::string::npos) << get(a, A::Log).why;
}

TEST(SupervisorPolicy, ARankThatStoppedAnsweringIsNamedBeforeTheOnesWaitingOnIt) {
  Policy p(quick(), 3);
  start(p, 3);
  // All three reach step 2 together; rank 2 is then stopped (no heartbeat at all), the
  // others keep beating without progress.
  for (int r = 0; r < 3; ++r) p.on(heartbeat(2, r, 2, 0));
  for (double t = 2.1; t < 8; t += 0.1) {
    p.on(heartbeat(t, 0, 2, 0));
    p.on(heartbeat(t, 1, 2, 0));
  }
  const auto a = p.on(ev(K::Tick, 8));
  ASSERT_TRUE(has(a, A::DumpStacks));
  EXPECT_EQ(get(a, A::DumpStacks).ranks, std::vector<int>{2});
}

TEST(SupervisorPolicy, SetupAndSavesHaveTheirOwnAllowances) {
  Policy p(quick(), 2);
  p.on(ev(K::Launched, 0));
  EXPECT_TRUE(p.on(ev(K::Tick, 20)).empty());  // set-up: 30 s
  EXPECT_TRUE(has(p.on(ev(K::Tick, 31)), A::Teardown));
  Policy q(quick(), 2);
  start(q, 2);
  q.on(heartbeat(2, 0, 2, 0, Phase::Save));
  q.on(heartbeat(2, 1, 2, 0, Phase::Save));
  EXPECT_TRUE(q.on(ev(K::Tick, 50)).empty());  // saving: 60 s, not the 5 s step timeout
  EXPECT_TRUE(has(q.on(ev(K::Tick, 63)), A::Teardown));
}

TEST(SupervisorPolicy, TheAutomaticHangTimeoutFollowsTheStepTime) {
  PolicyConfig c = quick();
  c.hang_timeout_s = 0;  // automatic
  Policy p(c, 2);
  p.on(ev(K::Launched, 0));
  EXPECT_DOUBLE_EQ(p.timeout(Phase::Step), c.setup_timeout_s);  // no step yet
  for (int s = 1; s <= 5; ++s) p.on(step_times(s, s, {2.0, 2.0}));
  EXPECT_DOUBLE_EQ(p.timeout(Phase::Step), 60);  // max(10 × 2 s, 60 s)
  for (int s = 6; s <= 20; ++s) p.on(step_times(s, s, {9.0, 9.0}));
  EXPECT_DOUBLE_EQ(p.timeout(Phase::Step), 90);  // the median step is now 9 s
}

TEST(SupervisorPolicy, GivesUpAfterMaxRestartsWithoutANewCheckpoint) {
  Policy p(quick(), 2);  // max_restarts 3
  double t = 0;
  auto crash = [&] {
    start(p, 2, t);
    p.on(exited(t + 2, 0, 1));
    auto a = p.on(job_exited(t + 2, 1));
    t += 400;
    auto b = p.on(ev(K::Tick, t));
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(has(crash(), A::Launch)) << "restart " << i + 1;
  const auto a = crash();  // the fourth failure in a row
  ASSERT_TRUE(has(a, A::Finish));
  EXPECT_EQ(get(a, A::Finish).exit_code, static_cast<int>(Outcome::GaveUp));
  EXPECT_EQ(p.state(), Policy::State::Finished);

  // A checkpoint in between resets the count (and the backoff).
  Policy q(quick(), 2);
  t = 0;
  auto crash_q = [&](bool commit) {
    start(q, 2, t);
    if (commit) q.on(committed(t + 1.5, 10));
    q.on(exited(t + 2, 0, 1));
    auto a = q.on(job_exited(t + 2, 1));
    t += 400;
    auto b = q.on(ev(K::Tick, t));
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(has(crash_q(i % 3 == 2), A::Launch)) << "restart " << i + 1;
}

// With checkpoint.every 0 (the default) nothing commits; an attempt that resumes from a newer
// in-memory snapshot than any before got further, and its failure starts a new count. Resuming
// from the same step again is no progress.
TEST(SupervisorPolicy, ARestartFromANewerSnapshotIsProgress) {
  PolicyConfig c = quick();
  c.max_restarts = 1;
  Policy p(c, 2);
  double t = 0;
  auto attempt = [&](int resumed_from) {  // resumed_from < 0: the first attempt, nothing loaded
    start(p, 2, t);
    if (resumed_from >= 0) {
      Event r = ev(K::Resumed, t + 1);
      r.step = resumed_from;
      p.on(r);
    }
    p.on(exited(t + 2, 1, -1));
    auto a = p.on(job_exited(t + 2, 1));
    t += 400;
    auto b = p.on(ev(K::Tick, t));
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  ASSERT_TRUE(has(attempt(-1), A::Launch));
  for (int step : {3, 6, 9}) ASSERT_TRUE(has(attempt(step), A::Launch)) << "resumed from " << step;
  const auto a = attempt(9);  // no further than the attempt before: two failures without progress
  ASSERT_TRUE(has(a, A::Finish));
  EXPECT_EQ(get(a, A::Finish).exit_code, static_cast<int>(Outcome::GaveUp));
  EXPECT_NE(get(a, A::Finish).why.find("without getting further than step 9"), std::string::npos) << get(a, A::Finish).why;
}

// A fault while the ranks stop for a signal (here a non-finite loss; a hang is watched for as
// in any other state) means the stop saved no checkpoint: after SIGTERM the job fails (1), it
// does not end as stopped (0) as if the stop had saved one; after SIGUSR1 (a scheduler's
// warning) it still asks for the requeue (5), whose job resumes from the newest state there is.
TEST(SupervisorPolicy, AFaultWhileStoppingFailsTheStop) {
  for (const auto [sig, code] : {std::pair{Signal::Term, Outcome::Failed}, std::pair{Signal::Usr1, Outcome::RequeueRequested}}) {
    Policy p(quick(), 2);
    start(p, 2);
    ASSERT_TRUE(has(p.on(signal(2, sig)), A::RequestStop));
    Event nan = ev(K::NonFinite, 2.5);
    nan.rank = 1, nan.step = 2;
    auto a = p.on(nan);
    EXPECT_TRUE(has(a, A::Teardown));
    a = p.on(job_exited(3, 1, 9));
    ASSERT_TRUE(has(a, A::Finish));
    EXPECT_EQ(get(a, A::Finish).exit_code, static_cast<int>(code));
    EXPECT_NE(get(a, A::Finish).why.find("saved no checkpoint"), std::string::npos) << get(a, A::Finish).why;
  }
  // Rank 1 hangs in the step it finishes before stopping: found after the hang timeout (5 s).
  Policy p(quick(), 2);
  start(p, 2);
  p.on(signal(2, Signal::Term));
  p.on(heartbeat(2, 1, 2, 3));
  p.on(heartbeat(3, 0, 2, 4, Phase::Save));
  EXPECT_FALSE(has(p.on(ev(K::Tick, 6.5)), A::Teardown));  // 4.5 s
  const auto a = p.on(ev(K::Tick, 7.5));
  ASSERT_TRUE(logged(a, "hang")) << "a hang while stopping went unnoticed";
  EXPECT_TRUE(has(a, A::Teardown));
  const auto b = p.on(job_exited(8, 1, 9));
  ASSERT_TRUE(has(b, A::Finish));
  EXPECT_EQ(get(b, A::Finish).exit_code, static_cast<int>(Outcome::Failed));
}

// Every rank ended well, but the launcher does not end (a rank stuck in MPI_Finalize, rank 0's
// report on a stuck file system: nothing watches them). After the save's allowance (60 s here)
// it is torn down, and the job ends as its ranks did — not restarted.
TEST(SupervisorPolicy, ALauncherThatOutlivesItsRanksIsTornDownNotRestarted) {
  Policy p(quick(), 2);
  start(p, 2);
  p.on(heartbeat(2, 0, 2, 0)), p.on(heartbeat(2, 1, 2, 0));
  p.on(exited(3, 0, 0));
  p.on(heartbeat(4, 1, 2, 1));
  p.on(exited(5, 1, 0));
  EXPECT_TRUE(p.on(ev(K::Tick, 64)).empty());  // 59 s after the last rank ended
  auto a = p.on(ev(K::Tick, 66));
  ASSERT_TRUE(logged(a, "stuck-at-exit"));
  EXPECT_TRUE(has(a, A::Teardown));
  Event killed = job_exited(163, 0, 9);
  killed.run_finished = true;
  const Policy before = p;
  a = p.on(killed);
  ASSERT_TRUE(has(a, A::Finish));
  EXPECT_FALSE(has(a, A::Launch));
  EXPECT_EQ(get(a, A::Finish).exit_code, 0);
  // A rank that hung after its link closed, before the run was marked finished: failed.
  Policy unfinished = before;
  a = unfinished.on(job_exited(163, 0, 9));
  ASSERT_TRUE(has(a, A::Finish));
  EXPECT_EQ(get(a, A::Finish).exit_code, static_cast<int>(Outcome::Failed));
  EXPECT_NE(get(a, A::Finish).why.find("not marked finished"), std::string::npos);
  // A stop's ranks that ended well: the stop's outcome (5: requeue).
  Policy q(quick(), 1);
  start(q, 1);
  q.on(signal(2, Signal::Usr1));
  q.on(exited(3, 0, 0));
  ASSERT_TRUE(has(q.on(ev(K::Tick, 64)), A::Teardown));
  Policy q_finished = q;
  a = q.on(job_exited(65, 0, 9));
  ASSERT_TRUE(has(a, A::Finish));
  EXPECT_EQ(get(a, A::Finish).exit_code, static_cast<int>(Outcome::RequeueRequested));
  // The stop came with the last step: the run finished, nothing to requeue.
  killed = job_exited(65, 0, 9);
  killed.run_finished = true;
  a = q_finished.on(killed);
  ASSERT_TRUE(has(a, A::Finish));
  EXPECT_EQ(get(a, A::Finish).exit_code, 0);
}

TEST(SupervisorPolicy, BackoffDoublesToItsCapAndResetsOnProgress) {
  PolicyConfig c = quick();
  c.backoff_s = 100, c.max_restarts = 10;
  Policy p(c, 1);
  double t = 0;
  std::vector<double> delays;
  for (int i = 0; i < 4; ++i) {
    start(p, 1, t);
    if (i == 3) p.on(committed(t + 1, 5));
    p.on(exited(t + 2, 0, 1));
    p.on(job_exited(t + 2, 1));
    delays.push_back(p.relaunch_at() - (t + 2));
    t = p.relaunch_at();
    p.on(ev(K::Tick, t));
  }
  EXPECT_EQ(delays, (std::vector<double>{100, 200, 300, 100}));
}

TEST(SupervisorPolicy, SigtermStopsAtAStepBoundaryAndSigusr1AsksForARequeue) {
  for (const auto [sig, code] : {std::pair{Signal::Term, 0}, std::pair{Signal::Int, 0}, std::pair{Signal::Usr1, 5}}) {
    Policy p(quick(), 2);
    start(p, 2);
    auto a = p.on(signal(2, sig));
    EXPECT_TRUE(has(a, A::RequestStop));
    EXPECT_EQ(p.state(), Policy::State::Stopping);
    p.on(heartbeat(3, 0, 2, 0, Phase::Save));
    p.on(heartbeat(3, 1, 2, 0, Phase::Save));
    a = p.on(signal(3.5, Signal::Term));  // during the save: ignored
    EXPECT_TRUE(logged(a, "signal-ignored"));
    EXPECT_FALSE(has(a, A::Teardown));
    p.on(exited(4, 0, 0));
    p.on(exited(4, 1, 0));
    a = p.on(job_exited(4, 0));
    ASSERT_TRUE(has(a, A::Finish));
    EXPECT_EQ(get(a, A::Finish).exit_code, code);
  }
}

// A rank that got SIGTERM (scancel, a preemption) says so: the job stops as for the supervisor's
// own SIGTERM, exit 0. While an attempt is torn down its ranks are signalled too: a rank's
// SIGTERM then changes nothing — the next attempt still starts — and while the ranks already
// stop it is not even logged (every rank of a cancelled Slurm job gets one).
TEST(SupervisorPolicy, ARanksSigtermStopsTheJobOnlyWhileItsAttemptRuns) {
  Policy p(quick(), 2);
  start(p, 2);
  Event term = signal(2, Signal::Term);
  term.rank = 1;
  auto a = p.on(term);
  ASSERT_TRUE(has(a, A::RequestStop));
  ASSERT_TRUE(logged(a, "stop"));
  for (const auto& l : a)
    if (l.kind == A::Log) EXPECT_NE(l.why.find("SIGTERM to rank 1"), std::string::npos) << l.why;
  term.rank = 0, term.t = 2.5;
  EXPECT_TRUE(p.on(term).empty());
  p.on(exited(3, 0, 0));
  p.on(exited(3, 1, 0));
  a = p.on(job_exited(3, 0));
  ASSERT_TRUE(has(a, A::Finish));
  EXPECT_EQ(get(a, A::Finish).exit_code, 0);
  EXPECT_NE(get(a, A::Finish).why.find("stopped at a step boundary"), std::string::npos) << get(a, A::Finish).why;

  Policy q(quick(), 2);
  start(q, 2);
  ASSERT_TRUE(has(q.on(exited(2, 1, -1, 9)), A::Teardown));
  term.t = 2.1;
  EXPECT_TRUE(q.on(term).empty());  // the teardown's own SIGTERM, reported by rank 0
  a = q.on(job_exited(2.2, 0, 15));
  EXPECT_FALSE(has(a, A::Finish));
  a = q.on(ev(K::Tick, 10));
  EXPECT_TRUE(has(a, A::Launch)) << "a rank's SIGTERM during a teardown must not end the job";
}

// mpirun signals the ranks that survive a rank's death, and their report may come first: a
// stop only a rank was asked for, then a fault, is a fault like any other — restarted. Once
// the supervisor is told too (Slurm's scancel signals every process), the stop is the job's:
// a fault then fails it (exit 1), as after the supervisor's own SIGTERM.
TEST(SupervisorPolicy, AFaultAfterARanksSigtermRestartsUnlessTheJobWasToldToStop) {
  for (const bool job_told : {false, true}) {
    Policy p(quick(), 2);
    start(p, 2);
    Event term = signal(2, Signal::Term);
    term.rank = 0;
    ASSERT_TRUE(has(p.on(term), A::RequestStop));
    if (job_told) EXPECT_TRUE(logged(p.on(signal(2.1, Signal::Term)), "stop"));
    ASSERT_TRUE(has(p.on(exited(2.2, 1, -1, 9)), A::Teardown)) << job_told;
    auto a = p.on(job_exited(2.3, 0, 15));
    if (job_told) {
      ASSERT_TRUE(has(a, A::Finish));
      EXPECT_EQ(get(a, A::Finish).exit_code, static_cast<int>(Outcome::Failed));
    } else {
      EXPECT_FALSE(has(a, A::Finish));
      EXPECT_TRUE(has(p.on(ev(K::Tick, 10)), A::Launch));
    }
  }
}

// The stop came as the last step ended: the ranks finished the run instead of stopping, and the
// job ends as finished (0), not stopped (5: requeue) — there is nothing left to requeue for.
TEST(SupervisorPolicy, AStopThatCameWithTheLastStepEndsAsFinished) {
  Policy p(quick(), 2);
  start(p, 2);
  EXPECT_TRUE(has(p.on(signal(2, Signal::Usr1)), A::RequestStop));
  p.on(exited(3, 0, 0));
  p.on(exited(3, 1, 0));
  Event done = job_exited(3, 0);
  done.run_finished = true;
  const auto a = p.on(done);
  ASSERT_TRUE(has(a, A::Finish));
  EXPECT_EQ(get(a, A::Finish).exit_code, 0);
  EXPECT_NE(get(a, A::Finish).why.find("the stop came with its last step"), std::string::npos) << get(a, A::Finish).why;
}

TEST(SupervisorPolicy, ASecondSigintStopsAtOnce) {
  Policy p(quick(), 2);
  start(p, 2);
  p.on(signal(2, Signal::Int));
  auto a = p.on(signal(2.5, Signal::Int));
  EXPECT_TRUE(logged(a, "stop-now"));
  EXPECT_TRUE(has(a, A::Teardown));
  a = p.on(job_exited(3, 0, 9));
  ASSERT_TRUE(has(a, A::Finish));
  EXPECT_EQ(get(a, A::Finish).exit_code, static_cast<int>(Outcome::Interrupted));
}

TEST(SupervisorPolicy, ExitCodesARestartCannotChangePassThrough) {
  for (int code : {2, 3}) {  // config or memory error; checkpoint not saved
    Policy p(quick(), 2);
    start(p, 2);
    const auto a = p.on(job_exited(3, code));
    ASSERT_TRUE(has(a, A::Finish)) << code;
    EXPECT_EQ(get(a, A::Finish).exit_code, code);
    EXPECT_FALSE(has(a, A::Teardown));
  }
}

TEST(SupervisorPolicy, ANonFiniteLossRestartsAndSkipsThatStepsData) {
  Policy p(quick(), 2);
  start(p, 2);
  Event nan = ev(K::NonFinite, 3);
  nan.rank = 1, nan.step = 7;
  auto a = p.on(nan);
  EXPECT_TRUE(logged(a, "non-finite"));
  EXPECT_TRUE(has(a, A::Teardown));
  p.on(job_exited(3.5, 1));
  a = p.on(ev(K::Tick, 10));
  ASSERT_TRUE(has(a, A::SkipData));
  EXPECT_EQ(get(a, A::SkipData).step, 7);
  EXPECT_TRUE(has(a, A::Launch));
}

TEST(SupervisorPolicy, AStragglerIsNamedOnceAndNoiseNever) {
  PolicyConfig c = quick();
  c.straggler_steps = 5;
  Policy p(c, 4);
  p.on(ev(K::Launched, 0));
  std::vector<Action> all;
  for (int s = 1; s <= 30; ++s) {
    // ±10% noise on every rank; rank 3 at 1.6× from step 10 on.
    const double n = (s % 3 - 1) * 0.1;
    std::vector<double> t = {1.0 + n, 1.0 - n, 1.0 + n / 2, s >= 10 ? 1.6 : 1.0 - n};
    auto a = p.on(step_times(s, s, t));
    all.insert(all.end(), a.begin(), a.end());
  }
  int named = 0;
  for (const auto& a : all)
    if (a.kind == A::Log && a.what == "straggler") {
      ++named;
      EXPECT_EQ(a.ranks, std::vector<int>{3});
    }
  EXPECT_EQ(named, 1);
}

// A host that vanishes closes no connection: its ranks' heartbeats just stop. A node of
// which every rank is silent for fault.host_timeout_s is lost at once; one silent rank among
// live ones on its node is stuck, not lost (a hang, with its own, longer timeout).
TEST(SupervisorPolicy, ANodeWhoseRanksAllFallSilentIsLostWithinTheHostTimeout) {
  Policy p(quick(), 4);  // host_timeout_s defaults to 1 s; ranks 0, 1 on node a, 2, 3 on node b
  p.on(ev(K::Launched, 0));
  for (int r = 0; r < 4; ++r) {
    Event h = ev(K::Hello, 0.5);
    h.rank = r, h.remote = true, h.node = r < 2 ? "a" : "b";
    p.on(h);
  }
  for (double t = 0.6; t < 3; t += 0.1)
    for (int r = 0; r < 4; ++r) p.on(heartbeat(t, r, 1, (int)(t * 10)));
  // From t = 3 rank 1 (node a) and both ranks of node b go silent; rank 0 keeps beating.
  for (double t = 3.0; t < 3.95; t += 0.1) {
    p.on(heartbeat(t, 0, 1, (int)(t * 10)));
    EXPECT_TRUE(p.on(ev(K::Tick, t)).empty()) << t;
  }
  const auto a = p.on(ev(K::Tick, 4.05));  // node b silent for 1.15 s
  ASSERT_TRUE(logged(a, "host-lost"));
  EXPECT_EQ(get(a, A::Log).ranks, (std::vector<int>{2, 3}));
  EXPECT_NE(get(a, A::Log).why.find("node b"), std::string::npos) << get(a, A::Log).why;
  EXPECT_TRUE(has(a, A::Teardown));
  EXPECT_FALSE(has(a, A::DumpStacks));
}

TEST(SupervisorPolicy, ASilentRankOnTheSupervisorsHostIsNeverAHostLoss) {
  Policy p(quick(), 2);
  p.on(ev(K::Launched, 0));
  for (int r = 0; r < 2; ++r) {
    Event h = ev(K::Hello, 0.5);
    h.rank = r, h.remote = false, h.node = "here";
    p.on(h);
  }
  p.on(heartbeat(1, 0, 1, 0));
  p.on(heartbeat(1, 1, 1, 0));
  EXPECT_FALSE(logged(p.on(ev(K::Tick, 4)), "host-lost"));  // under the 5 s hang timeout: nothing
  EXPECT_TRUE(logged(p.on(ev(K::Tick, 6.5)), "hang"));
}
