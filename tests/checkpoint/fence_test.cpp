// Attempt fencing (checkpoint/fence.h): once a newer attempt has started, an older attempt's
// commit is refused and never becomes `latest`; each generation stages in its own directory.
#include <gtest/gtest.h>

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "checkpoint/fence.h"
#include "tests/checkpoint/test_util.h"

namespace duet::ckpt {
namespace {
using namespace duet::ckpt::test;

TEST(Fence, GenerationsIncreaseFromOne) {
  ScratchDir dir("fence-gen");
  const std::string f = (dir.path / "fence").string();
  EXPECT_EQ(read_fence(f), 0);
  EXPECT_EQ(advance_fence(f), 1);
  EXPECT_EQ(advance_fence(f), 2);
  EXPECT_EQ(read_fence(f), 2);
}

TEST(Fence, AnOlderAttemptsCommitIsRefusedAndLatestStays) {
  ScratchDir dir("fence-old");
  const std::string f = (dir.path / "fence").string();
  const auto model = test_model(1), newer = test_model(2);
  SaveOptions old_attempt;
  old_attempt.fence = {f, advance_fence(f)};
  save_sequential(dir.str(), 100, model, test_layout(2), old_attempt);  // its own generation: fine
  EXPECT_EQ(fs::read_symlink(dir.path / "latest"), "step-000100");

  SaveOptions new_attempt;
  new_attempt.fence = {f, advance_fence(f)};  // the restart
  try {
    save_sequential(dir.str(), 200, newer, test_layout(2), old_attempt);
    FAIL() << "an older attempt committed";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("fenced"), std::string::npos) << e.what();
  }
  EXPECT_EQ(fs::read_symlink(dir.path / "latest"), "step-000100");
  EXPECT_FALSE(fs::exists(dir.path / "step-000200"));
  EXPECT_FALSE(fs::exists(staging_path(dir.str(), 200, old_attempt.fence.generation)));  // cleaned up

  // The newer attempt commits the same step without trouble.
  save_sequential(dir.str(), 200, newer, test_layout(2), new_attempt);
  EXPECT_EQ(fs::read_symlink(dir.path / "latest"), "step-000200");
  const ResumePoint rp = find_resumable_checkpoint(dir.str(), full_check("model-A"));
  EXPECT_EQ(rp.step, 200);
}

TEST(Fence, GenerationsStageApart) {
  ScratchDir dir("fence-staging");
  EXPECT_NE(staging_path(dir.str(), 5, 1), staging_path(dir.str(), 5, 2));
  EXPECT_EQ(staging_path(dir.str(), 5, 0), staging_path(dir.str(), 5));
  // A staging directory of any generation is never listed as a checkpoint.
  fs::create_directories(staging_path(dir.str(), 5, 3));
  EXPECT_TRUE(list_checkpoints(dir.str()).empty());
}

// A commit holding the shared lock finishes before a new generation is handed out: the
// advance waits until the guard is released, and the generation it returns is the next one.
TEST(Fence, AdvanceWaitsForACommitInProgress) {
  ScratchDir dir("fence-wait");
  const std::string f = (dir.path / "fence").string();
  const Fence mine{f, advance_fence(f)};
  std::atomic<bool> released{false};
  std::atomic<std::int64_t> got{0};
  std::atomic<bool> advanced_while_held{false};
  std::atomic<long> tid{0};
  std::thread next_attempt;
  {
    FenceGuard guard(mine);
    next_attempt = std::thread([&] {
      tid = syscall(SYS_gettid);
      got = advance_fence(f);
      advanced_while_held = !released.load();
    });
    // Give the other thread every chance to get past the lock if it wrongly could: wait until
    // it is blocked in the kernel (its wchan names the lock wait) — never a plain sleep.
    while (tid == 0) std::this_thread::yield();
    const std::string wchan = "/proc/self/task/" + std::to_string(tid.load()) + "/wchan";
    for (int i = 0; i < 2000 && got == 0; ++i) {
      std::ifstream w(wchan);
      std::string where;
      w >> where;
      if (where.find("lock") != std::string::npos) break;
      std::this_thread::yield();
    }
    released = true;
  }
  next_attempt.join();
  EXPECT_FALSE(advanced_while_held) << "the generation moved under a commit";
  EXPECT_EQ(got, mine.generation + 1);
}

}  // namespace
}  // namespace duet::ckpt

namespace duet::ckpt {
namespace {

int open_descriptors() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// A fence that cannot be read is an error, not a newer attempt (Fenced), and a guard that
// fails closes what it opened: rank 0 checks the fence at every step, and one descriptor per
// failed check ran a process out of them.
TEST(Fence, AnUnreadableFenceIsAnErrorThatLeaksNothing) {
  test::ScratchDir dir("fence-unreadable");
  const std::string f = (dir.path / "fence").string();
  std::filesystem::create_directory(f);  // opens, but cannot be read as the generation
  const int before = open_descriptors();
  for (int i = 0; i < 50; ++i) {
    try {
      FenceGuard guard(Fence{f, 1});
      ADD_FAILURE() << "a folder was taken for a fence";
    } catch (const Fenced& e) {
      ADD_FAILURE() << "taken for a newer attempt: " << e.what();
    } catch (const std::runtime_error& e) {
      if (i == 0) EXPECT_NE(std::string(e.what()).find("fence '" + f + "'"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(open_descriptors(), before);
}

}  // namespace
}  // namespace duet::ckpt
