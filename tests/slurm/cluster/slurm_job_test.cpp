// `duet submit` on a real Slurm cluster of 4 virtual nodes on this machine (started by the
// slurm_cluster CTest fixture, scripts/slurm-cluster.sh). Every wait polls for a state with a
// deadline; faults are injected when the run has reached a given point (a metrics line, a
// committed checkpoint), never after a fixed time.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "slurm/client.h"
#include "slurm/hostlist.h"

namespace fs = std::filesystem;
using duet::slurm::run_command;
using Clock = std::chrono::steady_clock;

namespace {

const fs::path kCluster = DUET_SLURM_DIR;
const std::string kDuet = DUET_BINARY;

// The job of every test: configs/tiny.yaml as PP 2 x DP 2 (4 ranks: 2 nodes x 2), a
// checkpoint every 4 steps, saved synchronously, so a stop or a crash after step 4 resumes from it.
constexpr int kSteps = 20;
// Removes what an earlier run of the test left in <run_root>/<name>.
std::vector<std::string> job_options(const fs::path& run_root, const std::string& name, int steps = kSteps) {
  if (name != "reference" && name.find('/') == std::string::npos) fs::remove_all(run_root / name);
  return {"--set", "parallel.pp=2", "--set", "parallel.dp=2", "--set", "parallel.ep=1", "--set", "parallel.schedule=dualpipe",
          "--train.steps", std::to_string(steps), "--train.log_every", "100", "--train.eval_batches", "1",
          "--checkpoint.every", "4", "--checkpoint.async", "false", "--fault.backoff_s", "0",
          "--run.dir", run_root.string(), "--run.name", name};
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Each step's loss; a step written again after a resume counts with its last line.
std::map<int, double> losses(const fs::path& metrics) {
  std::map<int, double> out;
  const std::regex re("\"step\":(\\d+),\"loss\":([^,}]+)");
  std::stringstream ss(read_file(metrics));
  for (std::string line; std::getline(ss, line);) {
    std::smatch m;
    if (std::regex_search(line, m, re)) out[std::stoi(m[1])] = std::stod(m[2]);
  }
  return out;
}

void expect_same_losses(const std::map<int, double>& got, const std::map<int, double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [step, loss] : want) {
    ASSERT_TRUE(got.count(step)) << "step " << step;
    EXPECT_NEAR(got.at(step), loss, 1e-4) << "step " << step;
  }
}

// Polls `done` every 100 ms until it holds or `seconds` pass.
bool wait_for(const std::function<bool()>& done, double seconds) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

std::string shell_words(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    std::string q = "'";
    for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    s += (s.empty() ? "" : " ") + q + "'";
  }
  return s;
}

struct Submitted {
  int exit_code = -1;
  std::string output, job_id;
};

Submitted submit(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {kDuet, "submit"};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto r = run_command(argv, 120);
  Submitted s{r.exit_code, r.out + r.err, ""};
  std::smatch m;
  if (std::regex_search(s.output, m, std::regex("Slurm job ([0-9]+)"))) s.job_id = m[1];
  return s;
}

// scripts/slurm-cluster.sh on this test's cluster.
duet::slurm::CommandOutput cluster_script(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"env", "DUET_SLURM_DIR=" + kCluster.string(), "bash",
                                   std::string(DUET_SOURCE_DIR) + "/scripts/slurm-cluster.sh"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, 120);
}

// The lines of a job's output that tell its story: each start, the supervisor's decisions,
// what each start resumed from and where it stopped. A failure prints them.
std::string job_story(const std::string& out) {
  std::stringstream in(out);
  std::string story;
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("duet job ") || line.starts_with("duet train: run directory ") ||
        line.starts_with("supervisor: ") || line.starts_with("resuming from ") ||
        line.starts_with("stopping after ") || line.find("error") != std::string::npos)
      story += line.substr(0, 240) + "\n";
  return story;
}

bool finished_state(const std::string& s) {
  return s == "COMPLETED" || s == "FAILED" || s == "CANCELLED" || s == "TIMEOUT" || s == "NODE_FAIL" ||
         s == "OUT_OF_MEMORY" || s == "BOOT_FAIL" || s == "DEADLINE" || s == "PREEMPTED";
}

std::string wait_finished(const std::string& job, double seconds) {
  std::string state;
  wait_for([&] { return finished_state(state = duet::slurm::job_state(job)); }, seconds);
  return state;
}

// Slurm's commands talk to the fixture's cluster; jobs inherit this environment (sbatch
// exports it).
void use_cluster() {
  setenv("SLURM_CONF", (kCluster / "slurm.conf").c_str(), 1);
  // Open MPI as root, over TCP on loopback (the virtual nodes share one hostname).
  for (const auto& [k, v] : std::vector<std::pair<const char*, const char*>>{
           {"OMPI_ALLOW_RUN_AS_ROOT", "1"}, {"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"},
           {"OMPI_MCA_rmaps_base_oversubscribe", "1"}, {"OMPI_MCA_btl", "self,tcp"},
           {"OMPI_MCA_btl_tcp_if_include", "lo"}, {"OMPI_MCA_oob_tcp_if_include", "lo"}})
    setenv(k, v, 1);
}

// What a test leaves running is cancelled; the nodes are idle again for the next test.
void cancel_all_jobs() {
  const auto r = run_command({"squeue", "-h", "-o", "%i"});
  std::istringstream ids(r.out);
  for (std::string id; ids >> id;) run_command({"scancel", id});
  wait_for([] { return run_command({"squeue", "-h", "-o", "%i"}).out.empty(); }, 60);
}

// Submissions that train little or nothing.
class SlurmSubmit : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    use_cluster();
    root_ = new fs::path(kCluster / "runs");
    fs::create_directories(*root_);
  }
  static void TearDownTestSuite() { delete root_; }
  void TearDown() override { cancel_all_jobs(); }
  static fs::path* root_;
};
fs::path* SlurmSubmit::root_ = nullptr;

// Jobs whose losses are compared with an uninterrupted local run of the same job.
class SlurmJob : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    use_cluster();
    // CTest runs each test in a process of its own: the reference run and the runs live with
    // the cluster (the fixture removes them), the reference is trained once.
    root_ = new fs::path(kCluster / "runs");
    fs::create_directories(*root_);
    // The reference: the same job on this machine under mpirun, uninterrupted.
    if (!fs::exists(*root_ / "reference/FINISHED")) {
      fs::remove_all(*root_ / "reference");
      std::vector<std::string> argv = {kDuet, "launch", "--launcher", "mpirun"};
      const auto opts = job_options(*root_, "reference");
      argv.insert(argv.end(), opts.begin(), opts.end());
      const auto r = run_command(argv, 300);
      ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    }
    reference_ = new std::map<int, double>(losses(*root_ / "reference/metrics.jsonl"));
    ASSERT_EQ(reference_->size(), (size_t)kSteps);
    std::vector<double> step_s;
    std::stringstream ss(read_file(*root_ / "reference/metrics.jsonl"));
    const std::regex re("\"step_time_s\":([0-9.eE+-]+)");
    for (std::string line; std::getline(ss, line);)
      if (std::smatch m; std::regex_search(line, m, re)) step_s.push_back(std::stod(m[1]));
    ASSERT_FALSE(step_s.empty());
    std::nth_element(step_s.begin(), step_s.begin() + step_s.size() / 2, step_s.end());
    reference_step_s_ = step_s[step_s.size() / 2];
  }
  static void TearDownTestSuite() {
    delete root_;
    delete reference_;
  }
  void TearDown() override { cancel_all_jobs(); }
  static fs::path* root_;
  static std::map<int, double>* reference_;
  static double reference_step_s_;  // its median step time
};
fs::path* SlurmJob::root_ = nullptr;
std::map<int, double>* SlurmJob::reference_ = nullptr;
double SlurmJob::reference_step_s_ = 0;

TEST_F(SlurmJob, SubmittedTwoNodeJobTrainsLikeALocalLaunch) {
  auto args = job_options(*root_, "two-nodes");
  args.insert(args.end(), {"--nodes", "2", "--ranks-per-node", "2", "--time", "10"});
  const Submitted s = submit(args);
  ASSERT_EQ(s.exit_code, 0) << s.output;
  ASSERT_FALSE(s.job_id.empty()) << s.output;
  EXPECT_NE(s.output.find("squeue -j " + s.job_id), std::string::npos) << s.output;
  EXPECT_EQ(wait_finished(s.job_id, 180), "COMPLETED");
  const fs::path run = *root_ / "two-nodes";
  const std::string out = read_file(run / ("slurm-" + s.job_id + ".out"));
  EXPECT_NE(out.find("ranks start with srun --mpi=pmix"), std::string::npos) << out;
  EXPECT_NE(out.find("srun --mpi=pmix --export=ALL --nodes=2 --ntasks=4 --nodelist=n[1-2]"), std::string::npos) << out;
  // The two nodes are slurmd on this one machine: its cores are the job's peak, once.
  EXPECT_NE(out.find("thread(s) measured here, times 1 machine(s) for 2 node(s)"), std::string::npos) << out;
  expect_same_losses(losses(run / "metrics.jsonl"), *reference_);
  // The run adopted the lineage id duet submit chose.
  std::smatch id;
  ASSERT_TRUE(std::regex_search(s.output, id, std::regex(", run ([0-9a-f]{16}):"))) << s.output;
  EXPECT_NE(read_file(run / "config.yaml").find("id: \"" + id[1].str() + "\""), std::string::npos);
  // duet status reads the same story back.
  const auto st = run_command({kDuet, "status", run.string()});
  EXPECT_EQ(st.exit_code, 0) << st.err;
  EXPECT_NE(st.out.find("job " + s.job_id + " COMPLETED"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("last step " + std::to_string(kSteps) + " (finished)"), std::string::npos) << st.out;
}

// Slurm's time-limit warning, sent at once: the supervisor stops at the next step boundary
// with a checkpoint, requeues the job, and the next start resumes from that checkpoint.
TEST_F(SlurmJob, UsrSignalCheckpointsRequeuesAndResumes) {
  auto args = job_options(*root_, "usr1");
  args.insert(args.end(), {"--nodes", "2", "--ranks-per-node", "2", "--time", "10"});
  const Submitted s = submit(args);
  ASSERT_EQ(s.exit_code, 0) << s.output;
  const fs::path run = *root_ / "usr1";
  const fs::path out = run / ("slurm-" + s.job_id + ".out");
  ASSERT_TRUE(wait_for([&] { return read_file(out).find("checkpoint: step 4 committed") != std::string::npos; }, 120))
      << read_file(out);
  ASSERT_EQ(run_command({"scancel", "--signal=USR1", "--batch", s.job_id}).exit_code, 0);
  EXPECT_EQ(wait_finished(s.job_id, 180), "COMPLETED");
  const auto f = duet::slurm::job_fields(s.job_id);
  EXPECT_EQ(f.at("Restarts"), "1");
  const std::string text = read_file(out);
  EXPECT_NE(text.find("requeued: it resumes from the newest verified checkpoint"), std::string::npos) << text;
  EXPECT_NE(text.find("restart count 1"), std::string::npos) << text;
  EXPECT_NE(text.find("resuming from"), std::string::npos) << text;
  expect_same_losses(losses(run / "metrics.jsonl"), *reference_);
}

// How docs/slurm.md ends a job with a checkpoint: SIGTERM to the batch shell only (a plain
// `scancel JOB` saves one too, but cancels the job: below). The supervisor stops every rank
// at the next step boundary with a checkpoint, and the job completes, its run not finished.
// The same `duet submit` command again continues that run (its lineage, from that checkpoint)
// to the end, with the losses of an uninterrupted run. It used to give the job a new run id:
// its start skipped to <name>-2 and trained from step 0, while Slurm's output went to <name>.
TEST_F(SlurmJob, AJobStoppedAndSubmittedAgainContinuesItsRun) {
  auto args = job_options(*root_, "again");
  fs::remove_all(*root_ / "again-2");
  args.insert(args.end(), {"--nodes", "2", "--ranks-per-node", "2", "--time", "10"});
  const Submitted first = submit(args);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  std::smatch id;
  ASSERT_TRUE(std::regex_search(first.output, id, std::regex("run ([0-9a-f]{16})"))) << first.output;
  const fs::path run = *root_ / "again";
  const fs::path out1 = run / ("slurm-" + first.job_id + ".out");
  ASSERT_TRUE(wait_for([&] { return read_file(out1).find("checkpoint: step 4 committed") != std::string::npos; }, 120))
      << read_file(out1);
  ASSERT_EQ(run_command({"scancel", "--signal=TERM", "--batch", first.job_id}).exit_code, 0);
  EXPECT_EQ(wait_finished(first.job_id, 180), "COMPLETED") << job_story(read_file(out1));
  const std::string text1 = read_file(out1);
  EXPECT_EQ(duet::slurm::job_fields(first.job_id).at("Restarts"), "0") << job_story(text1);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text1, m, std::regex("stopping after step ([0-9]+) \\(the supervisor asked\\)")))
      << job_story(text1);
  const std::string stopped = m[1];
  ASSERT_FALSE(fs::exists(run / "FINISHED")) << job_story(text1);

  const Submitted second = submit(args);
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("the job continues run " + id[1].str() + " in " + run.string()), std::string::npos)
      << second.output;
  EXPECT_NE(second.output.find("run " + id[1].str()), std::string::npos) << second.output;
  const fs::path out2 = run / ("slurm-" + second.job_id + ".out");
  EXPECT_EQ(wait_finished(second.job_id, 300), "COMPLETED") << job_story(read_file(out2));
  const std::string text2 = read_file(out2);
  char step_dir[32];
  std::snprintf(step_dir, sizeof step_dir, "step-%06d", std::stoi(stopped));
  EXPECT_NE(text2.find("resuming from " + (run / "checkpoints" / step_dir).string()), std::string::npos)
      << job_story(text2);
  EXPECT_TRUE(fs::exists(run / "FINISHED")) << job_story(text2);
  EXPECT_FALSE(fs::exists(*root_ / "again-2"));
  expect_same_losses(losses(run / "metrics.jsonl"), *reference_);
}

// A plain `scancel JOB` signals every process of the job at once, the ranks included, and
// SIGKILLs what is left KillWait (here 5 s) later. The ranks stop at the next step boundary
// with a checkpoint of that step all the same (runtime/term_stop.h): with no periodic
// checkpoint, it is the only state there is — they used to die where they were, leaving none.
TEST_F(SlurmJob, APlainScancelStillSavesACheckpoint) {
  auto args = job_options(*root_, "scancel", 5000);
  *(std::find(args.begin(), args.end(), "--checkpoint.every") + 1) = "100000";
  args.insert(args.end(), {"--nodes", "2", "--ranks-per-node", "2", "--time", "10"});
  const Submitted s = submit(args);
  ASSERT_EQ(s.exit_code, 0) << s.output;
  const fs::path run = *root_ / "scancel";
  const fs::path out = run / ("slurm-" + s.job_id + ".out");
  ASSERT_TRUE(wait_for([&] { return losses(run / "metrics.jsonl").size() >= 3; }, 120)) << read_file(out);
  ASSERT_EQ(run_command({"scancel", s.job_id}).exit_code, 0);
  EXPECT_EQ(wait_finished(s.job_id, 120), "CANCELLED") << job_story(read_file(out));
  const std::string text = read_file(out);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text, m, std::regex("stopping after step ([0-9]+) \\((SIGTERM|the supervisor asked)")))
      << job_story(text);
  const int stopped = std::stoi(m[1]);
  EXPECT_GE(stopped, 3);
  char step_dir[32];
  std::snprintf(step_dir, sizeof step_dir, "step-%06d", stopped);
  const fs::path ckpt = run / "checkpoints" / step_dir;
  ASSERT_TRUE(fs::exists(ckpt / "COMMITTED")) << job_story(text);
  const auto v = run_command({kDuet, "ckpt", "verify", ckpt.string()});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
}

// A real time limit: 1 minute, USR1 50 s before it. Slurm checks limits every 30 s, so the
// warning lands 10-40 s into a start, wherever the job is. The job is sized from the
// reference run's step time to 45 s of training, longer than the longest first start: each
// start is cut short by Slurm's warning (checkpoint, requeue) until one finishes it —
// typically the fourth or the fifth here (4-8 seen). Nothing is lost: every start resumes exactly at the step
// the one before stopped at, no step is missing or trained twice, and the job completes. (A
// fault inside a start — seen once in CI, on a loaded machine — restarts the ranks from the
// last checkpoint as any fault does; the steps it recomputed are accounted for, and the job's
// story is printed.)
TEST_F(SlurmJob, TimeLimitCheckpointsRequeuesResumesAndFinishes) {
  const int kTimeLimitSteps = std::clamp((int)std::ceil(45.0 / reference_step_s_), 40, 1000);
  auto args = job_options(*root_, "time-limit", kTimeLimitSteps);
  fs::remove_all(*root_ / "time-limit-2");
  // Only the stops' checkpoints: every 4 steps would add a save of 42 MiB each time.
  *(std::find(args.begin(), args.end(), "--checkpoint.every") + 1) = "100000";
  args.insert(args.end(), {"--nodes", "2", "--ranks-per-node", "2", "--time", "1", "--signal-seconds", "50"});
  const Submitted s = submit(args);
  ASSERT_EQ(s.exit_code, 0) << s.output;
  const fs::path run = *root_ / "time-limit";
  const fs::path out = run / ("slurm-" + s.job_id + ".out");
  EXPECT_EQ(wait_finished(s.job_id, 400), "COMPLETED") << read_file(out);
  const int restarts = std::stoi(duet::slurm::job_fields(s.job_id).at("Restarts"));
  EXPECT_GE(restarts, 1) << "the time limit never cut a start short";
  const std::string text = read_file(out);
  const std::string story = job_story(text);
  // A fault (a rank died, a hang) would restart the ranks inside a start from the newest
  // checkpoint or snapshot, recomputing the steps after it: that is recovery, not the time
  // limit's doing. Such faults are counted from the supervisor's records and printed.
  int faults = 0;
  std::string fault_lines;
  {
    std::stringstream ev(read_file(run / "events.jsonl"));
    const std::regex fault("\"kind\": *\"(rank-died|hang|job-died|non-finite|host-lost)\"");
    for (std::string line; std::getline(ev, line);)
      if (std::regex_search(line, fault)) ++faults, fault_lines += line + "\n";
  }
  if (faults > 0) std::printf("faults inside a start:\n%s%s", fault_lines.c_str(), story.c_str());
  EXPECT_NE(text.find("SIGUSR1: every rank stops at the next step boundary with a checkpoint"), std::string::npos) << text;
  EXPECT_NE(text.find("requeued: it resumes from the newest verified checkpoint"), std::string::npos) << text;
  EXPECT_NE(text.find("restart count " + std::to_string(restarts)), std::string::npos) << text;
  EXPECT_TRUE(fs::exists(run / "FINISHED"));
  // A warning as the last step ended finishes the run; no later start trains it again elsewhere.
  EXPECT_FALSE(fs::exists(*root_ / "time-limit-2")) << story;
  EXPECT_EQ(text.find("this run starts in"), std::string::npos) << story;
  // Walk metrics.jsonl: the last step before each resume is the step it resumes from (a resume
  // from an earlier step needs a fault to explain it), and the steps are 1..N, each trained
  // once — but for those a fault's restart recomputed.
  std::stringstream ss(read_file(run / "metrics.jsonl"));
  int last = 0, resumes = 0, lines = 0, trainer_starts = 0, rewinds = 0, recomputed = 0, loads = 0;
  std::set<int> trained;
  const std::regex resume("\"event\":\"resume\",\"from_step\":(\\d+)");
  const std::regex step("\"step\":(\\d+),\"loss\"");
  const std::regex header("\"event\":\"run\",");
  for (std::string line; std::getline(ss, line);) {
    std::smatch m;
    if (std::regex_search(line, header)) ++trainer_starts;
    if (std::regex_search(line, m, resume)) {
      const int from = std::stoi(m[1]);
      EXPECT_LE(from, last) << "resumed from step " << from << " after training step " << last << "\n" << story;
      if (from < last) ++rewinds, recomputed += last - from;
      ++resumes, loads += from > 0;  // from step 0 nothing is loaded
    } else if (std::regex_search(line, m, step)) {
      last = std::stoi(m[1]);
      trained.insert(last);
      ++lines;
    }
  }
  EXPECT_LE(rewinds, faults) << "a start resumed from before the step the one before it stopped at, with no fault "
                                "to explain it: a time-limit stop lost steps\n"
                             << fault_lines << story;
  // The same, start by start in the job's output: the first trainer of each Slurm start resumes
  // exactly where the last stop left off; a second trainer in one start follows a fault in it.
  {
    std::stringstream in(text);
    int last_stop = 0, start = 0, trainers = 0, resumed_lines = 0, trainer_lines = 0;  // trainers: of this start
    bool fault_here = false;
    const std::regex resumed("^resuming from (?:the in-memory snapshot of step (\\d+)|.*\\(step (\\d+),)");
    const std::regex stopped("^stopping after step (\\d+)");
    const std::regex fault("^supervisor: (rank-died|hang|job-died|non-finite|host-lost):");
    for (std::string line; std::getline(in, line);) {
      std::smatch m;
      if (line.starts_with("duet job ")) {
        ++start, trainers = 0, fault_here = false;
      } else if (line.starts_with("duet train: run directory ")) {
        ++trainer_lines;
        if (++trainers > 1) EXPECT_TRUE(fault_here) << "start " << start << " ran a second trainer without a fault\n" << story;
      } else if (std::regex_search(line, m, resumed)) {
        const int from = std::stoi(m[1].matched ? m[1].str() : m[2].str());
        ++resumed_lines;
        if (trainers == 1)
          EXPECT_EQ(from, last_stop) << "start " << start << " resumed from step " << from << ", the last stop was at "
                                     << last_stop << "\n" << story;
      } else if (std::regex_search(line, m, stopped)) {
        last_stop = std::stoi(m[1]);
      } else if (std::regex_search(line, fault)) {
        fault_here = true;
      }
    }
    // The output's trainer starts and resumes are metrics.jsonl's: none of the checks above
    // passes for want of the lines it reads.
    EXPECT_EQ(trainer_lines, trainer_starts) << story;
    EXPECT_EQ(resumed_lines, loads) << story;
  }
  // Every start that reached the trainer after the first resumed (a resume line); a start the
  // warning cut before its ranks got there (seen once, on a loaded machine: 10 starts, 5 of
  // them before training) resumes nothing and loses nothing.
  EXPECT_EQ(resumes, trainer_starts - 1);
  EXPECT_GE(resumes, 1);
  EXPECT_LE(resumes, restarts + faults);
  EXPECT_EQ((int)trained.size(), kTimeLimitSteps) << "a step is missing";
  EXPECT_EQ(*trained.rbegin(), kTimeLimitSteps);
  EXPECT_EQ(lines, kTimeLimitSteps + recomputed) << "a step was trained twice\n" << story;
  std::printf("time limit: %d start(s), %d of them training, %d fault(s), for %d steps (%.2f s each in the reference "
              "run)\n",
              restarts + 1, trainer_starts, faults, kTimeLimitSteps, reference_step_s_);
}

// Crashes the node of `job` that is not its batch host (its slurmd, slurmstepd and ranks
// SIGKILLed, by PID) once step 4's checkpoint is committed, then follows the job: each stage's
// pattern in the job's output is seen first (polled every 100 ms) at the time returned, in
// seconds after the crash; the last entry is "training again" (a step in metrics.jsonl after
// the next attempt's run header). Returns the crashed node.
std::string crash_other_node(const std::string& job, const fs::path& run,
                             const std::vector<std::pair<std::string, std::string>>& stages) {
  const fs::path out = run / ("slurm-" + job + ".out");
  EXPECT_TRUE(wait_for([&] { return read_file(out).find("checkpoint: step 4 committed") != std::string::npos; }, 120))
      << read_file(out);
  const auto f = duet::slurm::job_fields(job);
  const auto nodes = duet::slurm::hostlist_expand(f.at("NodeList"));
  EXPECT_EQ(nodes.size(), 2u);
  if (nodes.size() != 2) return "";
  const std::string victim = nodes[0] == f.at("BatchHost") ? nodes[1] : nodes[0];
  const size_t metrics_before = read_file(run / "metrics.jsonl").size(), out_before = read_file(out).size();
  const auto crash = Clock::now();
  const auto r = cluster_script({"crash-node", victim});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  std::printf("%s", r.out.c_str());
  std::vector<double> seen(stages.size() + 1, -1);
  EXPECT_TRUE(wait_for(
      [&] {
        const double t = std::chrono::duration<double>(Clock::now() - crash).count();
        const std::string o = read_file(out);
        for (size_t i = 0; i < stages.size(); ++i)
          if (seen[i] < 0 && o.find(stages[i].second, out_before) != std::string::npos) seen[i] = t;
        const std::string m = read_file(run / "metrics.jsonl");
        const size_t header = m.find("\"event\":\"run\"", metrics_before);
        if (header != std::string::npos && std::regex_search(m.substr(header), std::regex("\"step\":\\d+,\"loss\"")))
          seen.back() = t;
        return seen.back() >= 0;
      },
      120))
      << read_file(out);
  std::printf("node crash -> (s)");
  for (size_t i = 0; i < stages.size(); ++i) std::printf(" %s %.1f,", stages[i].first.c_str(), seen[i]);
  std::printf(" training again %.1f\n", seen.back());
  return victim;
}

// Without --no-kill: the supervisor sees the crashed node's ranks die, finds the node dead
// before relaunching, and requeues the job without it; the next start resumes from the newest
// checkpoint on two other nodes.
TEST_F(SlurmJob, NodeCrashRequeuesWithoutTheNodeAndResumes) {
  auto args = job_options(*root_, "crash");
  args.insert(args.end(), {"--nodes", "2", "--ranks-per-node", "2", "--time", "10"});
  const Submitted s = submit(args);
  ASSERT_EQ(s.exit_code, 0) << s.output;
  const fs::path run = *root_ / "crash";
  const std::string victim = crash_other_node(s.job_id, run,
                                              {{"rank died", "rank-died"},
                                               {"requeued", "requeued without"},
                                               {"job started again", "restart count 1"},
                                               {"checkpoint loaded", "resuming from"}});
  ASSERT_FALSE(victim.empty());
  EXPECT_EQ(wait_finished(s.job_id, 180), "COMPLETED");
  const auto after = duet::slurm::job_fields(s.job_id);
  EXPECT_EQ(after.at("Restarts"), "1");
  EXPECT_EQ(duet::slurm::hostlist_expand(after.at("NodeList")).size(), 2u);
  EXPECT_EQ(after.at("NodeList").find(victim), std::string::npos) << "restarted on the crashed node";
  EXPECT_NE(after.at("ExcNodeList").find(victim), std::string::npos);
  const std::string text = read_file(run / ("slurm-" + s.job_id + ".out"));
  EXPECT_NE(text.find("node " + victim + " excluded"), std::string::npos) << text;
  expect_same_losses(losses(run / "metrics.jsonl"), *reference_);
  // The node comes back for the next tests.
  cluster_script({"restart-node", victim});
  EXPECT_EQ(cluster_script({"wait-idle", "4", "60"}).exit_code, 0);
}

// With --no-kill the allocation outlives the node: the supervisor relaunches at once on the
// node left, PP 2 x DP 1 with the same global batch (twice the micro-batches per pipeline),
// from step 4's checkpoint, in the same start of the job (no requeue), and the losses are
// those of the uninterrupted DP 2 run.
TEST_F(SlurmJob, NodeCrashWithNoKillShrinksOntoTheNodeLeft) {
  auto args = job_options(*root_, "no-kill");
  args.insert(args.end(), {"--nodes", "2", "--ranks-per-node", "2", "--time", "10", "--no-kill"});
  const Submitted s = submit(args);
  ASSERT_EQ(s.exit_code, 0) << s.output;
  const fs::path run = *root_ / "no-kill";
  EXPECT_NE(read_file(run / "job.sbatch").find("#SBATCH --no-kill\n"), std::string::npos);
  EXPECT_NE(read_file(run / "job.sbatch").find("'launch' '--elastic'"), std::string::npos) << read_file(run / "job.sbatch");
  const std::string victim = crash_other_node(s.job_id, run,
                                              {{"rank died", "rank-died"},
                                               {"node excluded", "excluded:"},
                                               {"relaunched", "elastic: attempt 2 runs"},
                                               {"checkpoint loaded", "resuming from"}});
  ASSERT_FALSE(victim.empty());
  EXPECT_EQ(wait_finished(s.job_id, 180), "COMPLETED");
  EXPECT_EQ(duet::slurm::job_fields(s.job_id).at("Restarts"), "0");
  const std::string text = read_file(run / ("slurm-" + s.job_id + ".out"));
  EXPECT_NE(text.find("node " + victim + " excluded"), std::string::npos) << text;
  EXPECT_NE(text.find("elastic: attempt 2 runs pp 2 x dp 1 x ep 1"), std::string::npos) << text;
  EXPECT_NE(text.find("the global batch stays"), std::string::npos) << text;
  EXPECT_EQ(text.find("requeued"), std::string::npos) << text;
  expect_same_losses(losses(run / "metrics.jsonl"), *reference_);
  // duet status tells the layout the job finished in and the node it lost.
  const auto st = run_command({kDuet, "status", run.string()});
  EXPECT_NE(st.out.find("layout: pp 2 x dp 1 x ep 1, dualpipe on "), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("nodes excluded by the supervisor: " + victim + " ("), std::string::npos) << st.out;
  cluster_script({"restart-node", victim});
  EXPECT_EQ(cluster_script({"wait-idle", "4", "60"}).exit_code, 0);
}

// Every user-supplied field: a hostile value is refused naming the field (nothing written),
// or — where it is legitimately free text, like a config's file name — runs as plain text.
TEST_F(SlurmSubmit, ShellInjectionInEveryFieldIsInert) {
  const fs::path dir = *root_ / "inject";
  fs::create_directories(dir);
  // Relative: a command that ran would create it in the job's working directory, which is
  // this test's (duet submit records its own).
  const std::string marker = "pwned-by-slurm-test";
  const fs::path marker_path = fs::current_path() / marker;
  fs::remove(marker_path);
  const std::string touch = "$(touch " + marker + ")";
  struct Case {
    std::string field, name;
    std::vector<std::string> extra;
  };
  const std::vector<Case> refused = {
      {"--partition", "refused", {"--partition", "debug;touch " + marker}},
      {"--partition", "refused", {"--partition", "`touch " + marker + "`"}},
      {"--account", "refused", {"--account", touch}},
      {"--time", "refused", {"--time", "10\n#SBATCH --exclusive"}},
      {"run.name", "x" + touch, {}},
      {"run.name", "a'b\"c", {}},
      {"run.name", "a\nb", {}},
  };
  for (const auto& c : refused) {
    auto args = job_options(dir, c.name, 2);
    args.insert(args.end(), {"--nodes", "2", "--ranks-per-node", "2"});
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    const Submitted s = submit(args);
    EXPECT_EQ(s.exit_code, 2) << s.output;
    EXPECT_NE(s.output.find("error: " + c.field + " '"), std::string::npos) << s.output;
    EXPECT_TRUE(s.job_id.empty());
  }
  EXPECT_TRUE(fs::is_empty(dir)) << "a refused submission wrote something";
  // A config file whose name holds a command substitution, quotes and a ';': the job reads
  // it as a file of that name, and nothing runs.
  const fs::path config = dir / ("c" + touch + "';\"x.yaml");
  fs::copy_file(std::string(DUET_SOURCE_DIR) + "/configs/tiny.yaml", config);
  auto args = job_options(dir, "quoted", 2);
  args.insert(args.end(), {"--config", config.string(), "--nodes", "2", "--ranks-per-node", "2"});
  const Submitted s = submit(args);
  ASSERT_EQ(s.exit_code, 0) << s.output;
  EXPECT_NE(read_file(dir / "quoted/job.sbatch").find(touch), std::string::npos);
  EXPECT_EQ(wait_finished(s.job_id, 180), "COMPLETED") << read_file(dir / "quoted" / ("slurm-" + s.job_id + ".err"));
  EXPECT_EQ(losses(dir / "quoted/metrics.jsonl").size(), 2u);
  EXPECT_FALSE(fs::exists(marker_path)) << "a hostile value ran a command";
  EXPECT_FALSE(fs::exists(dir / "quoted" / marker)) << "a hostile value ran a command";
}

// Slurm's refusals come back with the command that was run and Slurm's own words.
TEST_F(SlurmSubmit, SlurmErrorsNameWhatWasAsked) {
  try {
    duet::slurm::job_fields("999999");
    ADD_FAILURE() << "an unknown job was found";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("`scontrol show job -o 999999` failed"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Invalid job id"), std::string::npos) << e.what();
  }
  const fs::path script = *root_ / "no-such-partition.sbatch";
  std::ofstream(script) << "#!/bin/bash\n#SBATCH --partition=nosuch\ntrue\n";
  try {
    duet::slurm::submit(script.string());
    ADD_FAILURE() << "a job for a partition that does not exist was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("`sbatch --parsable " + script.string() + "` failed"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("invalid partition specified: nosuch"), std::string::npos) << e.what();
  }
}

// A requeue keeps the job's earlier exclusions (the user's --exclude, an earlier start's lost
// nodes): `scontrol update ExcNodeList=` replaces the list, so a second lost node used to put
// the first back among the nodes the job could get.
TEST_F(SlurmSubmit, ARequeueAddsToTheJobsExcludedNodes) {
  const fs::path script = *root_ / "exclude.sbatch";
  std::ofstream(script) << "#!/bin/bash\n#SBATCH --nodes=1\n#SBATCH --requeue\n#SBATCH --exclude=n4\n#SBATCH --output="
                        << (*root_ / "exclude-%j.out").string() << "\nsleep 300\n";
  const std::string job = duet::slurm::submit(script.string());
  std::string state;
  ASSERT_TRUE(wait_for([&] { return (state = duet::slurm::job_state(job)) == "RUNNING"; }, 60)) << state;
  EXPECT_EQ(duet::slurm::job_fields(job).at("ExcNodeList"), "n4");
  EXPECT_EQ(duet::slurm::requeue(job, {"n3"}), "");
  EXPECT_EQ(duet::slurm::job_fields(job).at("ExcNodeList"), "n[3-4]");
}

TEST_F(SlurmSubmit, DryRunOfA256NodeJobAndTestOnlySubmission) {
  // PP 16 x DP 128 on 256 nodes x 8 ranks: printed, nothing written.
  const auto big = run_command({kDuet, "submit", "--dry-run", "--nodes", "256", "--ranks-per-node", "8",
                                "--gpus-per-node", "8", "--time", "2-00:00:00", "--partition", "gpu", "--set",
                                "parallel.pp=16", "--set", "parallel.dp=128", "--set", "parallel.ep=1", "--set", "train.global_batch=4096",
                                "--run.dir", (*root_ / "big").string(), "--run.name", "big"});
  ASSERT_EQ(big.exit_code, 0) << big.err;
  EXPECT_NE(big.out.find("#SBATCH --nodes=256\n#SBATCH --ntasks-per-node=8\n"), std::string::npos) << big.out;
  EXPECT_NE(big.out.find("#SBATCH --gpus-per-node=8\n"), std::string::npos) << big.out;
  EXPECT_FALSE(fs::exists(*root_ / "big"));
  // The same shape at a size this cluster has, checked by sbatch itself (--test-only).
  const auto small = run_command({kDuet, "submit", "--dry-run", "--nodes", "4", "--ranks-per-node", "2", "--set",
                                  "parallel.pp=2", "--set", "parallel.dp=4", "--set", "parallel.ep=1", "--time", "5",
                                  "--run.dir", (*root_ / "small").string(), "--run.name", "small"});
  ASSERT_EQ(small.exit_code, 0) << small.err;
  const fs::path script = *root_ / "small.sbatch";
  std::ofstream(script) << small.out;
  const auto test_only = run_command({"sbatch", "--test-only", script.string()});
  EXPECT_EQ(test_only.exit_code, 0) << test_only.err;
  EXPECT_NE(test_only.err.find("to start at"), std::string::npos) << test_only.err;
  // A simulate-only config is refused by name before anything is written.
  const auto dsv3 = run_command({kDuet, "submit", "--config", std::string(DUET_SOURCE_DIR) + "/configs/deepseek-v3-2048xh800.yaml",
                                 "--nodes", "256", "--ranks-per-node", "8", "--run.dir", (*root_ / "dsv3").string()});
  EXPECT_EQ(dsv3.exit_code, 2);
  EXPECT_NE(dsv3.err.find("mla"), std::string::npos) << dsv3.err;
  EXPECT_FALSE(fs::exists(*root_ / "dsv3"));
}

}  // namespace
