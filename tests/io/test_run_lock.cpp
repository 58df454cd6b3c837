// io/run_lock: the lock file's format, when a lock may be taken over, and taking it for real
// (a live holder refused and named, a dead PID and an expired lease taken over).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "io/run_lock.h"

namespace duet::io {
namespace {
namespace fs = std::filesystem;

struct Scratch {
  fs::path path = fs::temp_directory_path() / ("duet-lock-" + std::to_string(::getpid()) + "-" +
                                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  Scratch() {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The PID of a process that has exited (and been reaped): no process has it now.
long dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

LockHolder holder(long pid, std::string host, std::string slurm = "") {
  return {pid, std::move(host), 1764627601, "00ff00ff00ff00ff", std::move(slurm)};
}

TEST(RunLock, FormatParsesBack) {
  for (const LockHolder& h : {holder(41213, "node07"), holder(7, "n1", "81234")}) {
    const std::string text = format_lock(h);
    EXPECT_NE(text.find("start_text 2025-12-01"), std::string::npos) << text;
    EXPECT_EQ(parse_lock(text), h) << text;
  }
  EXPECT_EQ(parse_lock("duet run lock\npid 5\n"), std::nullopt);  // half written
  EXPECT_EQ(parse_lock("something else"), std::nullopt);
  EXPECT_EQ(describe_holder(holder(41213, "node07", "9")),
            "PID 41213 on host node07, started 2025-12-01 22:20:01 UTC, Slurm job 9");
}

TEST(RunLock, TakeoverRules) {
  const LockContext here{"nodeA", "", 60};
  const auto alive = [](long) { return true; };
  const auto dead = [](long) { return false; };
  EXPECT_EQ(judge_lock(holder(1, "nodeA"), 1000, here, alive), LockVerdict::held);  // same host: the PID decides
  EXPECT_EQ(judge_lock(holder(1, "nodeA"), 0, here, dead), LockVerdict::dead_pid);
  EXPECT_EQ(judge_lock(holder(1, "nodeB"), 10, here, dead), LockVerdict::held);  // another host: the lease decides
  EXPECT_EQ(judge_lock(holder(1, "nodeB"), 61, here, alive), LockVerdict::lease_expired);
  const LockContext requeued{"nodeC", "81234", 60};  // the same Slurm job, restarted elsewhere
  EXPECT_EQ(judge_lock(holder(1, "nodeB", "81234"), 0, requeued, alive), LockVerdict::same_job);
  EXPECT_EQ(judge_lock(holder(1, "nodeB", "99"), 0, requeued, alive), LockVerdict::held);
}

TEST(RunLock, SecondJobIsRefusedNamingTheHolder) {
  Scratch dir;
  auto first = RunLock::acquire(dir.path.string(), 60);
  ASSERT_TRUE(fs::exists(dir.path / "run.lock"));
  try {
    RunLock::acquire(dir.path.string(), 60);
    ADD_FAILURE() << "a second lock was granted";
  } catch (const RunLockHeld& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("in use by another job: PID " + std::to_string(::getpid())), std::string::npos) << msg;
    EXPECT_NE(msg.find("on host " + this_process_context(60).host), std::string::npos) << msg;
    EXPECT_NE(msg.find("started "), std::string::npos) << msg;
  }
  EXPECT_NO_THROW(RunLock::check_held(dir.path.string(), first->token()));
  EXPECT_THROW(RunLock::check_held(dir.path.string(), "not-the-token"), std::runtime_error);
  first.reset();  // released: the file goes, the next job gets it
  EXPECT_FALSE(fs::exists(dir.path / "run.lock"));
  EXPECT_NO_THROW(RunLock::acquire(dir.path.string(), 60));
}

TEST(RunLock, StaleLockOfADeadProcessIsTakenOver) {
  Scratch dir;
  LockHolder stale = holder(dead_pid(), this_process_context(60).host);
  std::ofstream(dir.path / "run.lock") << format_lock(stale);
  std::vector<std::string> said;
  auto lock = RunLock::acquire(dir.path.string(), 60, [&](std::string_view l) { said.emplace_back(l); });
  ASSERT_EQ(said.size(), 1u);
  EXPECT_NE(said[0].find("taking over"), std::string::npos) << said[0];
  EXPECT_NE(said[0].find("PID " + std::to_string(stale.pid)), std::string::npos) << said[0];
  EXPECT_NE(said[0].find("its process is gone"), std::string::npos) << said[0];
  EXPECT_EQ(parse_lock([&] {
              std::ifstream f(dir.path / "run.lock");
              return std::string(std::istreambuf_iterator<char>(f), {});
            }())->pid,
            (long)::getpid());
}

TEST(RunLock, LeaseFromAnotherHostExpires) {
  Scratch dir;
  const fs::path file = dir.path / "run.lock";
  std::ofstream(file) << format_lock(holder(1, "some-other-host.invalid"));
  EXPECT_THROW(RunLock::acquire(dir.path.string(), 60), RunLockHeld);  // just renewed
  const timespec old[2] = {{std::time(nullptr) - 120, 0}, {std::time(nullptr) - 120, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, file.c_str(), old, 0), 0);
  std::vector<std::string> said;
  auto lock = RunLock::acquire(dir.path.string(), 60, [&](std::string_view l) { said.emplace_back(l); });
  ASSERT_EQ(said.size(), 1u);
  EXPECT_NE(said[0].find("lease was not renewed"), std::string::npos) << said[0];
}

TEST(RunLock, LeaseIsRenewedWhileHeld) {
  Scratch dir;
  auto lock = RunLock::acquire(dir.path.string(), 2);  // renewed every 0.5 s
  const fs::path file = dir.path / "run.lock";
  const timespec old[2] = {{std::time(nullptr) - 100, 0}, {std::time(nullptr) - 100, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, file.c_str(), old, 0), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_GT(st.st_mtim.tv_sec, std::time(nullptr) - 10);
}

}  // namespace
}  // namespace duet::io
