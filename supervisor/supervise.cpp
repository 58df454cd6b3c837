#include "supervisor/supervise.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "core/json.h"
#include "core/supervision.h"
#include "supervisor/job.h"
#include "supervisor/listener.h"

namespace duet::supervisor {

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// Signals arrive on any thread at any time: the handler only counts them.
std::atomic<int> g_signals[3];  // SIGTERM, SIGINT, SIGUSR1
void on_signal(int sig) {
  const int i = sig == SIGTERM ? 0 : sig == SIGINT ? 1 : 2;
  g_signals[i].fetch_add(1);
}

class SignalScope {
 public:
  SignalScope() {
    for (auto& c : g_signals) c = 0;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~SignalScope() {
    for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &old_[i], nullptr);
  }
  // Signals received since the last call, in the order TERM, INT, USR1 (each as often as it came).
  std::vector<Signal> take() {
    std::vector<Signal> out;
    for (int i = 0; i < 3; ++i)
      for (int n = g_signals[i].load(); seen_[i] < n; ++seen_[i]) out.push_back(kKinds[i]);
    return out;
  }

 private:
  static constexpr int kSignals[3] = {SIGTERM, SIGINT, SIGUSR1};
  static constexpr Signal kKinds[3] = {Signal::Term, Signal::Int, Signal::Usr1};
  struct sigaction old_[3];
  int seen_[3] = {0, 0, 0};
};

// events.jsonl: one record per decision, appended and flushed at once.
class EventLog {
 public:
  explicit EventLog(const std::string& path) {
    if (!path.empty()) out_.open(path, std::ios::app);
  }
  void write(const std::string& kind, int attempt, const std::vector<int>& ranks, const std::string& cause,
             double elapsed, std::optional<int> exit_code = std::nullopt) {
    if (!out_) return;
    core::json::Writer j;
    j.begin_object().key("time").value((double)std::time(nullptr)).key("elapsed_s").value(elapsed);
    j.key("kind").value(kind).key("attempt").value(attempt).key("ranks").begin_array();
    for (int r : ranks) j.value(r);
    j.end_array().key("cause").value(cause);
    if (exit_code) j.key("exit_code").value(*exit_code);
    j.end_object();
    out_ << j.str() << '\n' << std::flush;
  }

 private:
  std::ofstream out_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Hang diagnostics of the local ranks: each one's /proc state (it answers even when the
// process is stopped or stuck in the kernel) and, for the culprits, the stack of every thread
// through gdb (attached to all of them at once, 20 s at most).
void dump_ranks(const std::vector<int>& pids, const std::vector<int>& culprits, const fs::path& dir) {
  std::vector<std::pair<int, FILE*>> gdbs;
  for (int r : culprits)
    if (r >= 0 && r < (int)pids.size() && pids[r] > 0)
      if (FILE* p = popen(("timeout 20 gdb -q -batch -p " + std::to_string(pids[r]) +
                           " -ex 'thread apply all bt' 2>&1").c_str(), "r"))
        gdbs.push_back({r, p});
  for (int r = 0; r < (int)pids.size(); ++r) {
    if (pids[r] <= 0) continue;
    const std::string proc = "/proc/" + std::to_string(pids[r]);
    std::ofstream out(dir / ("rank-" + std::to_string(r) + ".txt"));
    out << "rank " << r << ", pid " << pids[r] << "\n\n== " << proc << "/status\n" << read_file(proc + "/status");
    out << "\n== wchan: " << read_file(proc + "/wchan") << "\n== syscall: " << read_file(proc + "/syscall") << "\n";
  }
  for (auto& [r, p] : gdbs) {
    std::string text;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
    pclose(p);
    std::ofstream(dir / ("rank-" + std::to_string(r) + ".txt"), std::ios::app) << "\n== stacks (gdb)\n" << text;
  }
}

}  // namespace

int supervise(const SuperviseOptions& o) {
  SignalScope signals;
  Listener listener(o.listen_host);
  Policy policy(o.policy, o.ranks);
  EventLog events(o.events_path);
  const fs::path stacks_root = !o.stacks_dir.empty()      ? fs::path(o.stacks_dir)
                               : !o.events_path.empty() ? fs::path(o.events_path).parent_path()
                                                         : fs::temp_directory_path();
  const auto t0 = Clock::now();
  auto now = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  auto say = [&](const std::string& line) {
    if (o.log) o.log("supervisor: " + line);
  };

  std::unique_ptr<Job> job;
  bool job_reported = false;     // JobExited was given to the policy for this job
  std::vector<int> pids;         // from each rank's hello (this attempt)
  std::vector<std::string> hosts;
  std::vector<char> finished_part;  // a rank said "done": its connection closing is no death
  std::map<int, std::vector<double>> step_times;  // step -> seconds per rank
  std::optional<int> exit_code;
  std::vector<int> skipped;  // steps whose data later attempts skip
  const std::string here = [] {
    char b[256] = {0};
    gethostname(b, sizeof b - 1);
    return std::string(b);
  }();

  std::function<void(const std::vector<Action>&)> apply;
  auto job_exited = [&](const ExitStatus& s) {
    job_reported = true;
    Event e;
    e.kind = Event::Kind::JobExited, e.t = now(), e.exit_code = s.code, e.signal = s.signal;
    apply(policy.on(e));
  };
  auto launch = [&](int attempt) {
    listener.drop_all();
    pids.assign(o.ranks, 0), hosts.assign(o.ranks, ""), finished_part.assign(o.ranks, 0), step_times.clear();
    auto env = o.env;
    env.push_back({core::kSupervisorEnv, listener.address()});
    env.push_back({core::kAttemptEnv, std::to_string(attempt)});
    env.push_back({core::kSkipStepsEnv, core::format_step_list(skipped)});
    job.reset();  // the previous attempt's group is gone (torn down or exited)
    job = std::make_unique<Job>(o.command(attempt), env);
    job_reported = false;
    Event e;
    e.kind = Event::Kind::Launched, e.t = now();
    apply(policy.on(e));
  };
  apply = [&](const std::vector<Action>& actions) {
    for (const Action& a : actions) switch (a.kind) {
        case Action::Kind::Log:
          say(a.what + (a.why.empty() ? "" : ": " + a.why));
          events.write(a.what, policy.attempt(), a.ranks, a.why, now());
          break;
        case Action::Kind::DumpStacks: {
          const fs::path dir = stacks_root / ("hang-attempt-" + std::to_string(policy.attempt()));
          fs::create_directories(dir);
          std::vector<int> local(o.ranks, 0);
          for (int r = 0; r < o.ranks; ++r)
            if (hosts[r] == here) local[r] = pids[r];
          dump_ranks(local, a.ranks, dir);
          say("stacks and /proc state of this host's ranks saved in " + dir.string());
          events.write("stacks", policy.attempt(), a.ranks, dir.string(), now());
          break;
        }
        case Action::Kind::Teardown:
          if (job && !job_reported) job_exited(job->kill_all(o.teardown_grace_s));
          break;
        case Action::Kind::RequestStop: listener.stop(); break;
        case Action::Kind::Launch: launch(a.attempt); break;
        case Action::Kind::SkipData:
          skipped.push_back(a.step);
          say("attempt " + std::to_string(policy.attempt()) + " skips the data of step " + std::to_string(a.step));
          events.write("skip-data", policy.attempt(), {}, "step " + std::to_string(a.step), now());
          break;
        case Action::Kind::Finish:
          say("finished (exit code " + std::to_string(a.exit_code) + "): " + a.why);
          events.write("finished", policy.attempt(), {}, a.why, now(), a.exit_code);
          exit_code = a.exit_code;
          break;
      }
  };

  launch(1);
  while (!exit_code) {
    for (const RankReport& r : listener.poll(50)) {
      if (r.rank < 0 || r.rank >= o.ranks) continue;
      Event e;
      e.t = now(), e.rank = r.rank;
      if (r.kind == RankReport::Kind::Closed) {
        if (finished_part[r.rank]) continue;
        e.kind = Event::Kind::RankExited, e.exit_code = -1;  // gone without finishing: it died
        apply(policy.on(e));
        continue;
      }
      const core::RankMessage& m = r.message;
      switch (m.kind) {
        case core::RankMessage::Kind::Hello:
          if (m.attempt != policy.attempt()) continue;  // a straggler of an older attempt
          pids[r.rank] = m.pid, hosts[r.rank] = m.host;
          continue;
        case core::RankMessage::Kind::Done: finished_part[r.rank] = 1; continue;
        case core::RankMessage::Kind::Beat:
          e.kind = Event::Kind::Heartbeat, e.step = m.step, e.op = m.op;
          e.phase = m.phase == core::RankMessage::Phase::Setup ? Phase::Setup
                    : m.phase == core::RankMessage::Phase::Save ? Phase::Save
                                                               : Phase::Step;
          break;
        case core::RankMessage::Kind::StepTime: {
          auto& t = step_times[m.step];
          t.resize(o.ranks, -1);
          t[r.rank] = m.seconds;
          if (std::count(t.begin(), t.end(), -1.0) > 0) continue;
          e.kind = Event::Kind::StepTimes, e.step = m.step, e.seconds = t;
          step_times.erase(m.step);
          break;
        }
        case core::RankMessage::Kind::Committed: e.kind = Event::Kind::Committed, e.step = m.step; break;
        case core::RankMessage::Kind::NonFinite: e.kind = Event::Kind::NonFinite, e.step = m.step; break;
      }
      apply(policy.on(e));
    }
    for (Signal s : signals.take()) {
      Event e;
      e.kind = Event::Kind::SignalReceived, e.t = now(), e.received = s;
      apply(policy.on(e));
    }
    if (job && !job_reported)
      if (const auto s = job->poll()) {
        if (job->group_alive()) job->kill_all(0);  // the launcher is gone: no rank outlives it
        job_exited(*s);
      }
    if (!exit_code) {
      Event tick;
      tick.kind = Event::Kind::Tick, tick.t = now();
      apply(policy.on(tick));
    }
  }
  if (job && job->group_alive()) job->kill_all(o.teardown_grace_s);
  return *exit_code;
}

}  // namespace duet::supervisor
