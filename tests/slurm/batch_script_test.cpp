// The batch script of `duet submit`: its #SBATCH lines, and that no user-supplied value can
// do anything but be itself — proven by running the generated script.
#include "slurm/batch_script.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "slurm/client.h"

using namespace duet::slurm;
namespace fs = std::filesystem;

namespace {

BatchJob example() {
  BatchJob j;
  j.job_name = "dv3-pp16-dp128";
  j.run_dir = "/scratch/runs/dv3-pp16-dp128";
  j.work_dir = "/home/me/duet";
  j.nodes = 256, j.ranks_per_node = 8, j.gpus_per_node = 8, j.cpus_per_task = 4;
  j.time = "2-00:00:00", j.partition = "gpu", j.account = "proj42", j.signal_seconds = 300;
  j.command = {"/opt/duet/bin/duet", "launch", "--config", "configs/x.yaml", "--set", "run.id=0123456789abcdef"};
  return j;
}

// Every "#SBATCH --key[=value]" line, as sbatch reads them (before the first command).
std::multimap<std::string, std::string> sbatch_options(const std::string& script) {
  std::multimap<std::string, std::string> out;
  std::istringstream in(script);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "#!/bin/bash");
  while (std::getline(in, line) && line.rfind("#", 0) == 0) {
    if (line.rfind("#SBATCH ", 0) != 0) continue;
    const std::string opt = line.substr(8);
    const auto eq = opt.find('=');
    out.emplace(opt.substr(0, eq), eq == std::string::npos ? "" : opt.substr(eq + 1));
  }
  return out;
}

TEST(BatchScript, HasTheAllocationOfA256NodeJob) {
  const auto opts = sbatch_options(make_batch_script(example()));
  const std::map<std::string, std::string> want = {
      {"--job-name", "dv3-pp16-dp128"}, {"--nodes", "256"}, {"--ntasks-per-node", "8"}, {"--gpus-per-node", "8"},
      {"--cpus-per-task", "4"}, {"--time", "2-00:00:00"}, {"--partition", "gpu"}, {"--account", "proj42"},
      {"--requeue", ""}, {"--signal", "B:USR1@300"}, {"--open-mode", "append"},
      {"--output", "/scratch/runs/dv3-pp16-dp128/slurm-%j.out"}, {"--error", "/scratch/runs/dv3-pp16-dp128/slurm-%j.err"}};
  for (const auto& [k, v] : want) {
    ASSERT_EQ(opts.count(k), 1u) << k;
    EXPECT_EQ(opts.find(k)->second, v) << k;
  }
  EXPECT_EQ(opts.count("--no-kill"), 0u);
  EXPECT_EQ(opts.size(), want.size());
}

TEST(BatchScript, OptionalLinesFollowTheOptions) {
  BatchJob j = example();
  j.gpus_per_node = 0, j.time = "", j.partition = "", j.account = "", j.no_kill = true, j.requeue = false;
  const auto opts = sbatch_options(make_batch_script(j));
  for (const char* k : {"--gpus-per-node", "--time", "--partition", "--account", "--requeue"}) EXPECT_EQ(opts.count(k), 0u) << k;
  EXPECT_EQ(opts.count("--no-kill"), 1u);
}

TEST(BatchScript, ExecsTheCommandSoSignalsReachIt) {
  const std::string s = make_batch_script(example());
  EXPECT_NE(s.find("\nexec '/opt/duet/bin/duet' 'launch' '--config' 'configs/x.yaml' '--set' 'run.id=0123456789abcdef'\n"),
            std::string::npos)
      << s;
}

TEST(BatchScript, RejectsValuesSbatchWouldMisreadNamingTheField) {
  const std::vector<std::pair<std::string, std::function<void(BatchJob&)>>> cases = {
      {"run.name", [](BatchJob& j) { j.job_name = "x$(touch pwned)"; }},
      {"run.name", [](BatchJob& j) { j.job_name = "a\n#SBATCH --uid=0"; }},
      {"--partition", [](BatchJob& j) { j.partition = "gpu;rm -rf ~"; }},
      {"--partition", [](BatchJob& j) { j.partition = "`id`"; }},
      {"--account", [](BatchJob& j) { j.account = "a'b"; }},
      {"--time", [](BatchJob& j) { j.time = "10\n#SBATCH --exclusive"; }},
      {"--time", [](BatchJob& j) { j.time = "ten minutes"; }},
      {"run.dir/run.name", [](BatchJob& j) { j.run_dir = "/tmp/a b"; }},
      {"run.dir/run.name", [](BatchJob& j) { j.run_dir = "/tmp/$(id)"; }},
      {"run.dir/run.name", [](BatchJob& j) { j.run_dir = "relative/dir"; }},
      {"--nodes", [](BatchJob& j) { j.nodes = 0; }},
      {"--signal-seconds", [](BatchJob& j) { j.signal_seconds = -1; }},
  };
  for (const auto& [field, mutate] : cases) {
    BatchJob j = example();
    mutate(j);
    try {
      make_batch_script(j);
      ADD_FAILURE() << field << ": accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).rfind(field + " '", 0), 0u) << e.what();
    }
  }
}

TEST(BatchScript, SlurmTimeFormats) {
  for (const char* t : {"30", "30:00", "1:30:00", "2-0", "2-12:30", "2-12:30:00"}) EXPECT_TRUE(valid_slurm_time(t)) << t;
  for (const char* t : {"", "1h", "-5", "1:2:3:4", "now", "1-", "30;id"}) EXPECT_FALSE(valid_slurm_time(t)) << t;
  EXPECT_EQ(slurm_time_seconds("30"), 1800);
  EXPECT_EQ(slurm_time_seconds("30:15"), 1815);
  EXPECT_EQ(slurm_time_seconds("1:30:00"), 5400);
  EXPECT_EQ(slurm_time_seconds("2-0"), 172800);
  EXPECT_EQ(slurm_time_seconds("2-12:30"), 217800);
  EXPECT_EQ(slurm_time_seconds("2-12:30:05"), 217805);
  EXPECT_EQ(slurm_time_seconds("1h"), -1);
}

// A time-limit warning due at or before the start (--time 2 with the default 120 s) would stop
// every start at its first step and requeue it, forever: refused, naming both options.
TEST(BatchScript, AWarningNoEarlierThanTheStartIsRefused) {
  BatchJob j = example();
  j.time = "2", j.signal_seconds = 120;
  try {
    make_batch_script(j);
    ADD_FAILURE() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--signal-seconds '120': must be shorter than the time limit (--time 2 = 120 s)"),
              std::string::npos)
        << e.what();
  }
  j.signal_seconds = 119;
  EXPECT_NO_THROW(make_batch_script(j));
  j.time = "", j.signal_seconds = 600;  // the partition's limit: not known here
  EXPECT_NO_THROW(make_batch_script(j));
  j.time = "0";  // Slurm's "no limit"
  EXPECT_NO_THROW(make_batch_script(j));
  j.time = "99999999999999999999";  // a number no long holds: refused as a time, not thrown as stol's
  try {
    make_batch_script(j);
    ADD_FAILURE() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).rfind("--time '", 0), 0u) << e.what();
  }
}

// Values that reach the script body are quoted: running it prints each one back unchanged,
// and none of the commands hidden in them runs.
TEST(BatchScript, HostileValuesInTheBodyAreInert) {
  const fs::path dir = fs::temp_directory_path() / ("duet-batch-inert-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string marker = (dir / "pwned").string();
  const std::vector<std::string> hostile = {
      "$(touch " + marker + ")", "`touch " + marker + "`", "x'; touch " + marker + "; echo '",
      "\"; touch " + marker + "; echo \"", "a\ntouch " + marker, "; touch " + marker, "$HOME ${PATH} \\ *", "it's"};
  BatchJob j = example();
  j.run_dir = dir.string();
  j.work_dir = (dir / "it's a dir; $(id)").string();
  fs::create_directories(j.work_dir);
  j.command = {"printf", "[%s]\\n"};
  j.command.insert(j.command.end(), hostile.begin(), hostile.end());
  j.env = {{"DUET_TEST_VALUE", "$(touch " + marker + ")"}};
  j.command.push_back("env:");
  const fs::path script = dir / "job.sbatch";
  std::ofstream(script) << make_batch_script(j);
  // The environment variable is printed by a second command after the script's own.
  const auto r = run_command({"bash", "-c", "bash " + script.string() + " && printf '[%s]\\n' \"$DUET_TEST_VALUE\""});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string want;
  for (const auto& h : hostile) want += "[" + h + "]\n";
  want += "[env:]\n";
  EXPECT_NE(r.out.find(want), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(marker)) << "a hostile value ran a command";
  // The exported variable holds the text too.
  const auto env = run_command({"bash", "-c", "source <(grep '^export ' " + script.string() + ") && printf '%s' \"$DUET_TEST_VALUE\""});
  EXPECT_EQ(env.out, "$(touch " + marker + ")");
  EXPECT_FALSE(fs::exists(marker));
  fs::remove_all(dir);
}

}  // namespace
