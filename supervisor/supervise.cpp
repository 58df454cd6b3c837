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
#include <set>

#include "checkpoint/fence.h"
#include "checkpoint/snapshot.h"
#include "core/json.h"
#include "core/supervision.h"
#include "supervisor/job.h"
#include "supervisor/listener.h"
#include "supervisor/nodes.h"
#include "supervisor/recovery.h"

namespace duet::supervisor {

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// Signals arrive on any thread at any time: the handler only counts them.
std::atomic<int> g_signals[3];  // SIGTERM, SIGINT, SIGUSR1
std::atomic<bool> g_usr1_held{false};  // held since hold_usr1_until_supervised(), until a supervise()
void on_signal(int sig) {
  const int i = sig == SIGTERM ? 0 : sig == SIGINT ? 1 : 2;
  g_signals[i].fetch_add(1);
}

class SignalScope {
 public:
  SignalScope() {
    g_signals[0] = 0, g_signals[1] = 0;
    // Held: a SIGUSR1 that came before this supervise() counts, once; a later call starts afresh.
    if (!g_usr1_held.exchange(false)) g_signals[2] = 0;
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
struct EventRecord {
  std::string kind;
  int attempt = 0;
  std::vector<int> ranks;
  std::string cause;
  std::optional<int> exit_code, step;
  std::string host, layout, checkpoint;
  std::vector<std::pair<std::string, double>> numbers;  // e.g. the parts of a recovery
};

class EventLog {
 public:
  explicit EventLog(const std::string& path) {
    if (!path.empty()) out_.open(path, std::ios::app);
  }
  void write(const EventRecord& e, double elapsed) {
    if (!out_) return;
    core::json::Writer j;
    j.begin_object().key("time").value((double)std::time(nullptr)).key("elapsed_s").value(elapsed);
    j.key("kind").value(e.kind).key("attempt").value(e.attempt).key("ranks").begin_array();
    for (int r : e.ranks) j.value(r);
    j.end_array().key("cause").value(e.cause);
    if (e.exit_code) j.key("exit_code").value(*e.exit_code);
    if (e.step) j.key("step").value(*e.step);
    if (!e.host.empty()) j.key("host").value(e.host);
    if (!e.layout.empty()) j.key("layout").value(e.layout);
    if (!e.checkpoint.empty()) j.key("checkpoint").value(e.checkpoint);
    for (const auto& [k, v] : e.numbers) j.key(k).value(v);
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

// The /proc state of the local ranks: it answers even when a process is stopped or stuck in
// the kernel (status, wchan, the system call it is in).
void write_proc_state(const std::vector<int>& pids, const fs::path& dir) {
  for (int r = 0; r < (int)pids.size(); ++r) {
    if (pids[r] <= 0) continue;
    const std::string proc = "/proc/" + std::to_string(pids[r]);
    std::ofstream out(dir / ("rank-" + std::to_string(r) + ".txt"));
    out << "rank " << r << ", pid " << pids[r] << "\n\n== " << proc << "/status\n" << read_file(proc + "/status");
    out << "\n== wchan: " << read_file(proc + "/wchan") << "\n== syscall: " << read_file(proc + "/syscall") << "\n";
  }
}

// Whether /proc says the process is stopped (state T or t).
bool process_stopped(int pid) {
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && (stat[paren + 2] == 'T' || stat[paren + 2] == 't');
}

bool is_fault(const std::string& what) {
  return what == "rank-died" || what == "hang" || what == "job-died" || what == "non-finite" || what == "host-lost";
}

}  // namespace

void hold_usr1_until_supervised() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;  // outside supervise() nothing expects EINTR from it
  sigemptyset(&sa.sa_mask);
  g_usr1_held = true;
  sigaction(SIGUSR1, &sa, nullptr);
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_UNBLOCK, &usr1, nullptr);  // one pending from before runs the handler now
}

int supervise(const SuperviseOptions& o) {
  SignalScope signals;
  Listener listener(o.listen_host);
  Policy policy(o.policy, o.ranks);
  int ranks = o.ranks;  // this attempt's
  std::optional<NodePool> pool;
  if (o.elastic) pool.emplace(o.elastic->nodes, o.elastic->ranks_per_node, o.elastic->node_window_s);
  AttemptPlan plan;
  plan.layout = o.layout, plan.ranks = ranks;
  EventLog events(o.events_path);
  const fs::path stacks_root = !o.stacks_dir.empty()      ? fs::path(o.stacks_dir)
                               : !o.events_path.empty() ? fs::path(o.events_path).parent_path()
                                                         : fs::temp_directory_path();
  const auto t0 = Clock::now();
  auto now = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  auto say = [&](const std::string& line) {
    if (o.log) o.log("supervisor: " + line);
  };
  auto record = [&](EventRecord e) {
    e.attempt = policy.attempt();
    events.write(e, now());
  };

  std::unique_ptr<Job> job;
  bool job_reported = false;     // JobExited was given to the policy for this job
  std::vector<int> pids;         // from each rank's hello (this attempt)
  std::vector<std::string> hosts;
  std::vector<std::string> nodes;   // each rank's node (its host, or its logical node)
  std::vector<char> finished_part;  // a rank said "done": its connection closing is no death
  std::vector<double> last_sign;    // per rank: when its progress last moved (or it said hello)
  std::vector<std::pair<int, int>> last_beat;  // per rank: (step, op) of its last heartbeat
  std::map<int, std::vector<double>> step_times;  // step -> seconds per rank
  int last_full_step = 0;           // the newest step every rank completed (this attempt)
  double injected_at = -1;          // a rank reported that injected fault strikes now
  AttemptClock clock;               // this attempt's start-up milestones
  std::optional<FaultClock> pending;  // the fault the current attempt recovers from
  std::optional<int> exit_code;
  std::vector<int> skipped;  // steps whose data later attempts skip
  std::string resumed_from = "checkpoint";  // what the current attempt loaded: "checkpoint" or "in-memory snapshot"
  const std::string here = [] {
    char b[256] = {0};
    gethostname(b, sizeof b - 1);
    return std::string(b);
  }();
  auto host_of = [&](const std::vector<int>& ranks) {
    return ranks.size() == 1 && ranks[0] >= 0 && ranks[0] < (int)hosts.size() ? hosts[ranks[0]] : std::string();
  };

  std::function<void(const std::vector<Action>&)> apply;
  // A teardown signals the whole job; ranks that would take SIGTERM as a request to stop
  // (runtime/term_stop.h) are told "abort" first, so they end at once too.
  auto tear_down = [&] {
    listener.abort_all();
    return job->kill_all(o.teardown_grace_s);
  };
  auto job_exited = [&](const ExitStatus& s) {
    job_reported = true;
    if (pending && pending->gone < 0) pending->gone = now();
    Event e;
    e.kind = Event::Kind::JobExited, e.t = now(), e.exit_code = s.code, e.signal = s.signal;
    e.run_finished = o.run_finished && o.run_finished();
    apply(policy.on(e));
  };
  // Elastic: excluded nodes are kept in a file a person may edit (a line removed brings the
  // node back at the next attempt).
  auto write_excluded = [&] {
    if (!pool || o.elastic->excluded_path.empty()) return;
    std::ofstream f(o.elastic->excluded_path + ".tmp");
    for (const auto& [node, why] : pool->excluded()) f << node << ' ' << why << '\n';
    f.close();
    fs::rename(o.elastic->excluded_path + ".tmp", o.elastic->excluded_path);
  };
  // signature: which failure a single rank's was (its kind and step), to tell one that
  // follows the work from one that stays with a node.
  auto exclude = [&](const std::string& node, const std::string& why, bool lost, const std::string& signature = "") {
    if (!pool || node.empty()) return;
    std::vector<std::string> restored;
    const bool excluded = lost ? pool->lost(node, why) : pool->rank_failed(node, now(), signature, &restored);
    for (const auto& n : restored) {
      say("node " + n + " is back: the failure that excluded it (" + signature + ") struck on node " + node +
          " too, so it follows the work, not a node");
      EventRecord e;
      e.kind = "node-restored", e.host = n, e.cause = "the same failure on " + node + ": " + signature;
      record(e);
    }
    if (!restored.empty()) write_excluded();
    if (!excluded) return;
    say("node " + node + " excluded: " + pool->excluded().at(node));
    EventRecord e;
    e.kind = "node-excluded", e.host = node, e.cause = pool->excluded().at(node);
    record(e);
    write_excluded();
  };
  auto reread_excluded = [&] {
    if (!pool || o.elastic->excluded_path.empty()) return;
    std::set<std::string> listed;
    std::ifstream f(o.elastic->excluded_path);
    for (std::string line; std::getline(f, line);)
      if (!line.empty()) listed.insert(line.substr(0, line.find(' ')));
    std::vector<std::string> back;
    for (const auto& [node, why] : pool->excluded())
      if (!listed.count(node)) back.push_back(node);
    for (const auto& node : back) {
      pool->restore(node);
      say("node " + node + " is back (no longer listed in " + o.elastic->excluded_path + ")");
      EventRecord e;
      e.kind = "node-restored", e.host = node, e.cause = "re-enabled";
      record(e);
    }
  };
  auto describe = [&](const AttemptPlan& p) {
    std::string d = "pp " + std::to_string(p.layout.pp) + " x dp " + std::to_string(p.layout.dp) + " x ep " +
                    std::to_string(p.layout.ep) + ", " + o.schedule;
    if (!p.nodes.empty()) {
      d += " on ";
      for (size_t i = 0; i < p.nodes.size(); ++i) d += (i ? "," : "") + p.nodes[i];
    }
    return d;
  };
  auto launch = [&](int attempt) {
    plan.attempt = attempt;
    if (pool) {
      reread_excluded();
      if (attempt > 1 && o.elastic->check_nodes)
        for (const auto& [node, why] : o.elastic->check_nodes(pool->healthy())) exclude(node, why, true);
      const std::vector<std::string> healthy = pool->healthy();
      const int per = o.elastic->ranks_per_node;
      const auto layout = elastic_layout((int)healthy.size() * per, o.elastic->configured, o.elastic->rules);
      const bool whole = healthy.size() == pool->all().size();
      if (!layout || (!o.elastic->shrink && !whole)) {
        const std::string why =
            !layout ? std::to_string(healthy.size()) + " healthy node(s) of " + std::to_string(pool->all().size()) +
                          " cannot hold one pipeline of PP " + std::to_string(o.elastic->configured.pp) +
                          ": asking to be run again later"
                    : std::to_string(pool->all().size() - healthy.size()) + " of " + std::to_string(pool->all().size()) +
                          " nodes excluded, and a job that is not elastic runs on all its nodes or none: asking to be "
                          "run again later without them";
        say("finished (exit code 5): " + why);
        EventRecord e;
        e.kind = "finished", e.cause = why, e.exit_code = core::exit_code(core::ExitCode::RequeueRequested);
        record(e);
        exit_code = *e.exit_code;
        return;
      }
      const AttemptPlan before = plan;
      plan.layout = *layout, plan.ranks = layout->pp * layout->dp;
      plan.nodes.assign(healthy.begin(), healthy.begin() + (plan.ranks + per - 1) / per);
      if (attempt > 1 && !(plan.layout == before.layout && plan.nodes == before.nodes)) {
        const int mb = o.elastic->rules.global_batch / (o.elastic->rules.micro_batch_size * plan.layout.dp);
        say("elastic: attempt " + std::to_string(attempt) + " runs " + describe(plan) + " (was " + describe(before) +
            "); the global batch stays " + std::to_string(o.elastic->rules.global_batch) + ": " + std::to_string(mb) +
            " micro-batches per pipeline");
      }
    }
    ranks = plan.ranks;
    listener.drop_all();
    listener.set_attempt(attempt);
    pids.assign(ranks, 0), hosts.assign(ranks, ""), nodes.assign(ranks, ""), finished_part.assign(ranks, 0);
    step_times.clear();
    last_sign.assign(ranks, now()), last_beat.assign(ranks, {-1, -1});
    last_full_step = 0, injected_at = -1;
    clock = AttemptClock(ranks);
    auto env = o.env;
    env.push_back({core::kSupervisorEnv, listener.address()});
    env.push_back({core::kAttemptEnv, std::to_string(attempt)});
    env.push_back({core::kSkipStepsEnv, core::format_step_list(skipped)});
    if (pool && o.elastic->logical) {
      std::string list;
      for (const auto& n : plan.nodes) list += (list.empty() ? "" : ",") + n;
      env.push_back({core::kNodesEnv, list});
      env.push_back({core::kRanksPerNodeEnv, std::to_string(o.elastic->ranks_per_node)});
    }
    if (!o.fence_path.empty()) {
      // From here on no commit of an earlier attempt can land (checkpoint/fence.h).
      const std::int64_t generation = ckpt::advance_fence(o.fence_path);
      env.push_back({core::kFenceEnv, std::to_string(generation)});
    }
    job.reset();  // the previous attempt's group is gone (torn down or exited)
    if (pool && o.elastic->logical && !o.snapshot_dir.empty())
      for (const auto& [node, why] : pool->excluded()) {
        std::error_code ec;
        if (fs::remove_all(fs::path(o.snapshot_dir) / node, ec) > 0)
          say("node " + node + " is lost: its in-memory snapshots (" + (fs::path(o.snapshot_dir) / node).string() +
              ") go with it");
      }
    clock.launched = now();
    job = std::make_unique<Job>(o.command(plan), env);
    job_reported = false;
    Event e;
    e.kind = Event::Kind::Launched, e.t = now(), e.ranks = ranks;
    apply(policy.on(e));
  };
  // Which failure a single rank's was, for NodePool::rank_failed: how and in which step (the
  // rank's own last heartbeat); "" before the attempt's first step (a set-up failure: a node's
  // classic symptom, never taken for one that follows the work).
  auto failure_signature = [&](const std::string& how, int rank) -> std::string {
    if (clock.first_step < 0 || rank < 0 || rank >= ranks || last_beat[rank].first < 0) return "";
    return "a rank " + how + " in step " + std::to_string(last_beat[rank].first);
  };
  // After a rank died: ranks that die with it within a moment show whether its whole node
  // went (every rank of one node, and no other) or one rank failed.
  auto judge_death = [&](int first) {
    if (!pool) return;
    std::set<int> dead = {first};
    const double until = now() + 0.1;
    while (now() < until)
      for (const RankReport& r : listener.poll(20))
        if (r.kind == RankReport::Kind::Closed && r.rank >= 0 && r.rank < ranks && !finished_part[r.rank])
          dead.insert(r.rank);
    std::map<std::string, int> dead_on, ranks_on;
    for (int r = 0; r < ranks; ++r) ++ranks_on[pool->node_of(r, plan.nodes)];
    for (int r : dead) ++dead_on[pool->node_of(r, plan.nodes)];
    if (dead_on.size() == 1 && dead_on.begin()->second == ranks_on[dead_on.begin()->first] && plan.nodes.size() > 1)
      exclude(dead_on.begin()->first, "all its ranks died together", true);
    else
      exclude(pool->node_of(first, plan.nodes), "", false, failure_signature("died", first));
  };
  // Every rank that can answer writes its threads' stacks; the local ones' /proc state is
  // written for all (a stopped rank cannot answer, the kernel still can).
  auto dump_stacks = [&](const std::vector<int>& culprits) {
    const fs::path dir = stacks_root / ("hang-attempt-" + std::to_string(policy.attempt()));
    fs::create_directories(dir);
    std::vector<int> local(ranks, 0);
    for (int r = 0; r < ranks; ++r)
      if (hosts[r] == here) local[r] = pids[r];
    write_proc_state(local, dir);
    const std::vector<int> asked = listener.request_stacks(fs::absolute(dir).string());
    std::vector<char> answered(ranks, 0);
    int answers = 0;
    // A local rank the kernel shows stopped cannot answer: not waited for.
    int expected = 0;
    for (int r : asked) expected += !(local[r] > 0 && process_stopped(local[r]));
    const double until = now() + 5;
    while (answers < expected && now() < until)
      for (const RankReport& r : listener.poll(50))
        if (r.rank >= 0 && r.rank < ranks && r.kind == RankReport::Kind::Message &&
            r.message.kind == core::RankMessage::Kind::StacksDone && !answered[r.rank])
          answered[r.rank] = 1, ++answers;
    if (answers < (int)asked.size()) listener.cancel_stacks();
    std::string silent;
    for (int r = 0; r < ranks; ++r)
      if (!answered[r]) silent += (silent.empty() ? "" : ", ") + std::to_string(r);
    const std::string what = std::to_string(answers) + " of " + std::to_string(ranks) +
                             " ranks wrote every thread's stack" +
                             (silent.empty() ? "" : " (not answering: rank " + silent + ")") +
                             "; /proc state of this host's ranks; in " + dir.string();
    say("hang diagnostics: " + what);
    EventRecord e;
    e.kind = "stacks", e.ranks = culprits, e.cause = what;
    record(e);
  };
  apply = [&](const std::vector<Action>& actions) {
    for (const Action& a : actions) switch (a.kind) {
        case Action::Kind::Log: {
          say(a.what + (a.why.empty() ? "" : ": " + a.why));
          EventRecord e;
          e.kind = a.what, e.ranks = a.ranks, e.cause = a.why, e.host = host_of(a.ranks);
          if (a.what == "launched") e.layout = describe(plan);
          if (is_fault(a.what)) {
            e.step = last_full_step;
            // The fault's time: the injection's own report, else the culprit's last sign of life.
            FaultClock f;
            f.kind = a.what, f.detected = now(), f.fault_step = last_full_step;
            f.fault = injected_at >= 0 ? injected_at : f.detected;
            if (injected_at < 0)
              for (int r : a.ranks)
                if (r >= 0 && r < ranks) f.fault = std::min(f.fault, last_sign[r]);
            pending = f;
          }
          record(e);
          if (pool && a.what == "host-lost") {
            std::set<std::string> gone;
            for (int r : a.ranks) gone.insert(pool->node_of(r, plan.nodes));
            for (const auto& n : gone) exclude(n, "every rank on it fell silent (host lost)", true);
          } else if (pool && a.what == "rank-died" && !a.ranks.empty()) {
            judge_death(a.ranks[0]);
          } else if (pool && a.what == "hang" && !a.ranks.empty()) {
            exclude(pool->node_of(a.ranks[0], plan.nodes), "", false, failure_signature("hung", a.ranks[0]));
          }
          break;
        }
        case Action::Kind::DumpStacks: dump_stacks(a.ranks); break;
        case Action::Kind::Teardown:
          if (job && !job_reported) job_exited(tear_down());
          break;
        case Action::Kind::RequestStop: listener.stop(); break;
        case Action::Kind::Launch: launch(a.attempt); break;
        case Action::Kind::SkipData: {
          skipped.push_back(a.step);
          say("attempt " + std::to_string(policy.attempt()) + " skips the data of step " + std::to_string(a.step));
          EventRecord e;
          e.kind = "skip-data", e.cause = "step " + std::to_string(a.step), e.step = a.step;
          record(e);
          break;
        }
        case Action::Kind::Finish: {
          say("finished (exit code " + std::to_string(a.exit_code) + "): " + a.why);
          EventRecord e;
          e.kind = "finished", e.cause = a.why, e.exit_code = a.exit_code;
          record(e);
          exit_code = a.exit_code;
          break;
        }
      }
  };
  // The first step of an attempt that recovers from a fault: what the recovery cost.
  auto first_step_done = [&] {
    if (!pending) return;
    const auto rec = account_recovery(*pending, clock);
    if (!rec) return;
    pending.reset();
    char line[400];
    std::snprintf(line, sizeof line,
                  "recovered from %s in %.2f s: detection %.2f, teardown %.2f, backoff %.2f, launch %.2f, MPI init "
                  "%.2f, set-up %.2f, checkpoint load %.2f, first step %.2f; %d step(s) recomputed",
                  rec->fault_kind.c_str(), rec->total_s, rec->detection_s, rec->teardown_s, rec->backoff_s,
                  rec->launch_s, rec->mpi_init_s, rec->setup_s, rec->load_s, rec->first_step_s, rec->recomputed_steps);
    say(line);
    EventRecord e;
    e.kind = "recovered", e.cause = rec->fault_kind, e.step = rec->checkpoint_step + 1;
    e.checkpoint = rec->checkpoint_step > 0 ? (resumed_from == "checkpoint" ? "step " : "memory step ") +
                                                  std::to_string(rec->checkpoint_step)
                                            : "";
    e.numbers = {{"fault_step", rec->fault_step},   {"checkpoint_step", rec->checkpoint_step},
                 {"recomputed_steps", rec->recomputed_steps},
                 {"detection_s", rec->detection_s}, {"teardown_s", rec->teardown_s},
                 {"backoff_s", rec->backoff_s},     {"launch_s", rec->launch_s},
                 {"mpi_init_s", rec->mpi_init_s},   {"setup_s", rec->setup_s},
                 {"load_s", rec->load_s},           {"first_step_s", rec->first_step_s},
                 {"total_s", rec->total_s}};
    record(e);
  };

  // Nodes a previous launch of this run excluded stay out until a person removes their line.
  if (pool && !o.elastic->excluded_path.empty() && o.elastic->reload_excluded) {
    std::ifstream f(o.elastic->excluded_path);
    for (std::string line; std::getline(f, line);) {
      const auto sp = line.find(' ');
      const std::string node = line.substr(0, sp);
      if (!node.empty() && pool->lost(node, sp == std::string::npos ? "listed in " + o.elastic->excluded_path
                                                                    : line.substr(sp + 1)))
        say("node " + node + " stays excluded (" + o.elastic->excluded_path + "): " + pool->excluded().at(node));
    }
  } else if (pool) {
    write_excluded();  // none yet: an earlier launch's list does not apply to these nodes
  }
  std::unique_ptr<ckpt::SnapshotOwnerLock> snapshot_owner;
  if (!o.snapshot_dir.empty()) snapshot_owner = std::make_unique<ckpt::SnapshotOwnerLock>(o.snapshot_dir);
  launch(1);
  while (!exit_code) {
    for (const RankReport& r : listener.poll(50)) {
      if (r.rank < 0 || r.rank >= ranks) continue;
      Event e;
      e.t = now(), e.rank = r.rank;
      if (r.kind == RankReport::Kind::Closed) {
        // After "done" the link closing is the rank ending well: it is no longer watched (its
        // silence while rank 0 writes the report is not a lost host). Before, it died.
        e.kind = Event::Kind::RankExited, e.exit_code = finished_part[r.rank] ? 0 : -1;
        apply(policy.on(e));
        continue;
      }
      const core::RankMessage& m = r.message;
      switch (m.kind) {
        case core::RankMessage::Kind::Hello:
          if (m.attempt != policy.attempt()) continue;  // a straggler of an older attempt
          pids[r.rank] = m.pid, hosts[r.rank] = m.host, nodes[r.rank] = m.node.empty() ? m.host : m.node;
          clock.hello[r.rank] = last_sign[r.rank] = e.t;
          e.kind = Event::Kind::Hello, e.node = nodes[r.rank];
          e.remote = m.host != here || !m.node.empty();  // logical nodes stand for hosts
          break;
        case core::RankMessage::Kind::Done: finished_part[r.rank] = 1; continue;
        case core::RankMessage::Kind::StacksDone: continue;  // late: the dump's wait is over
        case core::RankMessage::Kind::Mark:
          if (m.name == "sigterm") {  // the rank got SIGTERM (scancel, a preemption): the job stops
            // Every rank may get one: the policy acts on the first, the stop it starts ignores the rest.
            Event term;
            term.kind = Event::Kind::SignalReceived, term.t = e.t, term.received = Signal::Term, term.rank = r.rank;
            apply(policy.on(term));
            continue;
          }
          if (m.name == "age") clock.age[r.rank] = m.seconds;
          if (m.name == "mpi_init") clock.mpi_init[r.rank] = m.seconds;
          if (m.name == "load" || m.name == "load_memory") {  // from an HDF5 checkpoint, or an in-memory snapshot
            clock.loaded[r.rank] = e.t;
            if (r.rank == 0) {
              const bool memory = m.name == "load_memory";
              clock.checkpoint_step = m.step;
              resumed_from = memory ? "in-memory snapshot" : "checkpoint";
              EventRecord ev;
              ev.kind = "resumed", ev.step = m.step;
              ev.cause = memory      ? "in-memory snapshot of step " + std::to_string(m.step) + " loaded"
                         : m.step > 0 ? "checkpoint of step " + std::to_string(m.step) + " loaded"
                                      : "no checkpoint: from the start";
              ev.checkpoint = m.step > 0 ? (memory ? "memory step " : "step ") + std::to_string(m.step) : "";
              ev.numbers = {{"seconds", m.seconds}};
              record(ev);
              // A fault before this attempt's first step is at the step it resumed from.
              last_full_step = std::max(last_full_step, m.step);
              Event resumed;
              resumed.kind = Event::Kind::Resumed, resumed.t = e.t, resumed.step = m.step;
              apply(policy.on(resumed));
            }
          }
          continue;
        case core::RankMessage::Kind::Inject: {
          injected_at = e.t;
          EventRecord ev;
          ev.kind = "fault-injected", ev.ranks = {r.rank}, ev.step = m.step, ev.host = hosts[r.rank];
          ev.cause = "runtime.fail_* strikes rank " + std::to_string(r.rank) + " at step " + std::to_string(m.step) +
                     (m.signal > 0 ? " with signal " + std::to_string(m.signal) : "");
          record(ev);
          continue;
        }
        case core::RankMessage::Kind::Beat:
          if (last_beat[r.rank] != std::make_pair(m.step, m.op)) last_sign[r.rank] = e.t;
          last_beat[r.rank] = {m.step, m.op};
          e.kind = Event::Kind::Heartbeat, e.step = m.step, e.op = m.op;
          e.phase = m.phase == core::RankMessage::Phase::Setup ? Phase::Setup
                    : m.phase == core::RankMessage::Phase::Save ? Phase::Save
                                                               : Phase::Step;
          break;
        case core::RankMessage::Kind::StepTime: {
          auto& t = step_times[m.step];
          t.resize(ranks, -1);
          t[r.rank] = m.seconds;
          if (std::count(t.begin(), t.end(), -1.0) > 0) continue;
          e.kind = Event::Kind::StepTimes, e.step = m.step, e.seconds = t;
          step_times.erase(m.step);
          last_full_step = std::max(last_full_step, m.step);
          if (clock.first_step < 0) {
            clock.first_step = e.t;
            first_step_done();
          }
          break;
        }
        case core::RankMessage::Kind::Committed: e.kind = Event::Kind::Committed, e.step = m.step; break;
        case core::RankMessage::Kind::NonFinite:
          e.kind = Event::Kind::NonFinite, e.step = m.step;
          if (m.mb >= 0)
            e.where = "micro-batch " + std::to_string(m.mb) + " of direction " + std::to_string(m.dir) + " on rank " +
                      std::to_string(m.at_rank);
          break;
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
  if (job && job->group_alive()) tear_down();
  if (!o.snapshot_dir.empty()) {  // finished, stopped, cancelled or given up: no attempt restarts from them
    // A run that has not finished keeps what they hold beyond the newest checkpoint: the next
    // job resumes from it (given up or stopped between attempts, with checkpoint.every large or 0).
    bool kept = false;
    if (o.keep_snapshot && !(o.run_finished && o.run_finished())) {
      try {
        const std::int64_t generation = o.fence_path.empty() ? 0 : ckpt::advance_fence(o.fence_path);
        if (const auto kept = o.keep_snapshot(generation)) {
          say(kept->line);
          EventRecord e;
          e.kind = "snapshot-saved", e.step = (int)kept->step, e.checkpoint = "step " + std::to_string(kept->step);
          e.cause = "step " + std::to_string(kept->step) + " saved from the in-memory snapshots as " + kept->path;
          record(e);
        }
      } catch (const std::exception& e) {
        kept = true;
        say(std::string("could not save the newest in-memory snapshot as a checkpoint (") + e.what() +
            "): the snapshots stay in " + o.snapshot_dir + " — the next launch of this run on this machine resumes from "
            "them, unless another run starting here reclaims the folder first (copy it elsewhere to keep it)");
      }
    }
    std::error_code ec;
    if (!kept && fs::remove_all(o.snapshot_dir, ec) > 0) say("removed the in-memory snapshots in " + o.snapshot_dir);
  }
  return *exit_code;
}

}  // namespace duet::supervisor
