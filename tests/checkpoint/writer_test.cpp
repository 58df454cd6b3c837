// ckpt::CheckpointWriter: asynchronous saves (the caller waits only for the copy), a save that
// waits for the previous one, failures reported and not committed, a full disk.
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <future>
#include <system_error>

#include "checkpoint/writer.h"
#include "tests/checkpoint/test_util.h"

namespace duet::ckpt {
namespace {
using namespace duet::ckpt::test;


// Collects log lines; lets a test wait until a line containing some text has been logged.
class LogWatch {
 public:
  LogFn fn() {
    return [this](std::string_view line) {
      std::lock_guard lk(mu_);
      lines_.emplace_back(line);
      cv_.notify_all();
    };
  }
  void wait_for(const std::string& text) {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return contains_locked(text); });
  }
  bool contains(const std::string& text) {
    std::lock_guard lk(mu_);
    return contains_locked(text);
  }

 private:
  bool contains_locked(const std::string& text) const {
    return std::any_of(lines_.begin(), lines_.end(), [&](const std::string& l) { return l.find(text) != std::string::npos; });
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
};

TEST(CheckpointWriter, AsyncSaveCommitsACopyTakenAtTheCall) {
  ScratchDir dir("async");
  auto model = test_model();
  CheckpointWriter writer({dir.str(), 0, test_layout(1), {}, {}});
  RankSlices rs = rank_slices(model, 0, 1);
  writer.save_async(10, rs.slices, rs.state);
  // The caller may change its tensors as soon as save_async returns: the copy is saved.
  for (auto& buf : rs.storage) std::fill(buf.begin(), buf.end(), 123.f);
  const auto r = writer.wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->committed) << r->error;
  EXPECT_EQ(r->step, 10);
  EXPECT_GT(r->stall_seconds, 0);
  EXPECT_LT(r->stall_seconds, r->seconds);
  EXPECT_FALSE(writer.wait().has_value()) << "each result is reported once";
  CheckpointReader reader(r->path);
  for (const GlobalTensor& t : model) EXPECT_EQ(reader.read(t.name), t.values);
}

TEST(CheckpointWriter, SaveWhileThePreviousIsWritingWaitsAndSaysSo) {
  ScratchDir dir("busy");
  const auto model = test_model();
  LogWatch log;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> writes{0};
  SaveOptions opt;
  opt.log = log.fn();
  opt.before_shard_close = [&](int, std::int64_t) {
    if (writes++ == 0) released.wait();  // hold the first save in the middle of its write
  };
  CheckpointWriter writer({dir.str(), 0, test_layout(1), {}, opt});
  RankSlices rs = rank_slices(model, 0, 1);
  writer.save_async(10, rs.slices, rs.state);
  EXPECT_TRUE(writer.busy());

  std::atomic<bool> second_returned{false};
  std::thread second([&] {
    writer.save_async(20, rs.slices, rs.state);
    second_returned = true;
  });
  log.wait_for("step 20 waits for the save of step 10, still writing");
  EXPECT_FALSE(second_returned) << "returned while step 10 was still being written";
  EXPECT_FALSE(fs::exists(dir.path / "step-000010"));
  release.set_value();
  second.join();
  const auto first = writer.poll();  // step 10 finished before step 20 started
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->step, 10);
  EXPECT_TRUE(first->committed);
  const auto r20 = writer.wait();
  ASSERT_TRUE(r20.has_value());
  EXPECT_EQ(r20->step, 20);
  EXPECT_TRUE(r20->committed) << r20->error;
  EXPECT_GT(r20->wait_seconds, 0);
  EXPECT_EQ(list_checkpoints(dir.str()).size(), 2u);
}

TEST(CheckpointWriter, FailedBackgroundWriteIsReportedAndNotCommitted) {
  ScratchDir dir("bgfail");
  const auto model = test_model();
  LogWatch log;
  bool fail = false;
  SaveOptions opt;
  opt.log = log.fn();
  opt.before_shard_close = [&](int, std::int64_t) {
    if (fail) throw std::system_error(ENOSPC, std::generic_category(), "injected write failure");
  };
  CheckpointWriter writer({dir.str(), 0, test_layout(1), {}, opt});
  RankSlices rs = rank_slices(model, 0, 1);
  writer.save_async(10, rs.slices, rs.state);
  ASSERT_TRUE(writer.wait()->committed);
  fail = true;
  writer.save_async(20, rs.slices, rs.state);
  const auto r = writer.wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->committed);
  EXPECT_NE(r->error.find("cannot write shard"), std::string::npos) << r->error;
  EXPECT_NE(r->error.find("No space left on device"), std::string::npos) << r->error;
  EXPECT_TRUE(log.contains("rank 0: rank 0: cannot write shard"));
  EXPECT_FALSE(fs::exists(dir.path / "step-000020"));
  EXPECT_FALSE(fs::exists(dir.path / "step-000020.staging"));
  EXPECT_EQ(fs::read_symlink(dir.path / "latest"), "step-000010");
  EXPECT_EQ(find_resumable_checkpoint(dir.str(), full_check()).step, 10);
}

TEST(CheckpointWriter, FourAsyncRanksAgreeOnFailure) {
  ScratchDir dir("bgranks");
  const auto model = test_model();
  ThreadAgreement agree(4);
  SaveOptions opt;
  opt.before_shard_close = [](int rank, std::int64_t) {
    if (rank == 3) throw std::runtime_error("injected failure on rank 3");
  };
  std::vector<std::unique_ptr<CheckpointWriter>> writers;
  std::vector<RankSlices> data;
  for (int r = 0; r < 4; ++r) {
    writers.push_back(std::make_unique<CheckpointWriter>(
        CheckpointWriter::Options{dir.str(), r, test_layout(4), std::ref(agree), opt}));
    data.push_back(rank_slices(model, r, 4));
  }
  for (int r = 0; r < 4; ++r) writers[r]->save_async(30, data[r].slices, data[r].state);
  for (int r = 0; r < 4; ++r) {
    const auto res = writers[r]->wait();
    ASSERT_TRUE(res.has_value());
    EXPECT_FALSE(res->committed) << "rank " << r;
  }
  EXPECT_TRUE(list_checkpoints(dir.str()).empty());
}

TEST(CheckpointWriter, RealWriteFailureFromTheFileSizeLimit) {
  // RLIMIT_FSIZE makes write() fail (EFBIG) inside HDF5 like a full disk does, without root.
  ScratchDir dir("fsize");
  CheckpointWriter writer({dir.str(), 0, test_layout(1), {}, {}});
  auto small = test_model();
  RankSlices rs = rank_slices(small, 0, 1);
  ASSERT_TRUE(writer.save(1, rs.slices, rs.state).committed);

  std::vector<float> big(1 << 20, 0.5f);  // 4 MiB
  TensorSlice s{"big", {1 << 20}, {0}, {1 << 20}, big};
  struct rlimit old {};
  getrlimit(RLIMIT_FSIZE, &old);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 1 << 20;  // 1 MiB per file
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  const SaveResult r = writer.save(2, std::span(&s, 1), {});
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);

  EXPECT_FALSE(r.committed);
  EXPECT_NE(r.error.find("File too large"), std::string::npos) << r.error;
  EXPECT_FALSE(fs::exists(dir.path / "step-000002.staging" / "shard-00000.h5.tmp")) << "partial shard removed";
  EXPECT_EQ(find_resumable_checkpoint(dir.str(), full_check()).step, 1);
}

TEST(CheckpointWriter, FullDiskOnASmallTmpfs) {
  ScratchDir dir("tmpfs");
  const fs::path mnt = dir.path / "mnt";
  fs::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0)
    GTEST_SKIP() << "cannot mount a 1 MiB tmpfs here (" << std::strerror(errno)
                 << "; needs root/CAP_SYS_ADMIN). ENOSPC is still covered by the injected-failure and RLIMIT_FSIZE tests.";
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};

  CheckpointWriter writer({mnt.string(), 0, test_layout(1), {}, {}});
  auto model = test_model();
  RankSlices rs = rank_slices(model, 0, 1);
  writer.save_async(1, rs.slices, rs.state);
  ASSERT_TRUE(writer.wait()->committed);

  std::vector<float> big(512 * 1024, 0.25f);  // 2 MiB: cannot fit
  TensorSlice s{"big", {512 * 1024}, {0}, {512 * 1024}, big};
  writer.save_async(2, std::span(&s, 1), {});
  const auto r = writer.wait();
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->committed);
  EXPECT_NE(r->error.find("No space left on device"), std::string::npos) << r->error;
  EXPECT_EQ(find_resumable_checkpoint(mnt.string(), full_check()).step, 1);
  // The failed save gave its space back: a small checkpoint still fits afterwards.
  writer.save_async(3, rs.slices, rs.state);
  const auto r3 = writer.wait();
  EXPECT_TRUE(r3->committed) << r3->error;
  CheckpointReader reader(r3->path);
  for (const GlobalTensor& t : model) EXPECT_EQ(reader.read(t.name), t.values);
}

TEST(CheckpointWriter, DestructorFinishesTheSaveInFlight) {
  ScratchDir dir("dtor");
  auto model = test_model();
  {
    CheckpointWriter writer({dir.str(), 0, test_layout(1), {}, {}});
    RankSlices rs = rank_slices(model, 0, 1);
    writer.save_async(5, rs.slices, rs.state);
  }
  EXPECT_TRUE(verify_checkpoint((dir.path / "step-000005").string(), full_check()).ok());
}

}  // namespace
}  // namespace duet::ckpt

namespace duet::ckpt {
namespace {
using namespace duet::ckpt::test;

TEST(CheckpointWriterSnapshot, DeferredSnapshotIsTakenBeforeWaitSnapshotReturns) {
  ScratchDir dir("deferred");
  auto model = test_model();
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  SaveOptions opt;
  opt.before_shard_close = [&](int, std::int64_t) { released.wait(); };  // the write is held; the copy is not
  CheckpointWriter writer({dir.str(), 0, test_layout(1), {}, opt});
  RankSlices rs = rank_slices(model, 0, 1);
  writer.reserve(rs.slices);
  writer.save_async(10, rs.slices, rs.state, Snapshot::deferred);
  writer.wait_snapshot();  // returns while the save is still held in the middle of its write
  EXPECT_TRUE(writer.busy());
  for (auto& buf : rs.storage) std::fill(buf.begin(), buf.end(), -7.f);  // the "optimizer step"
  release.set_value();
  const auto r = writer.wait();
  ASSERT_TRUE(r && r->committed) << (r ? r->error : "no result");
  CheckpointReader reader(r->path);
  for (const GlobalTensor& t : model) EXPECT_EQ(reader.read(t.name), t.values) << t.name;
}

TEST(CheckpointWriterSnapshot, ReserveThenCopyIsTheSameCheckpoint) {
  ScratchDir dir("reserve");
  auto model = test_model();
  CheckpointWriter writer({dir.str(), 0, test_layout(1), {}, {}});
  RankSlices rs = rank_slices(model, 0, 1);
  writer.reserve(rs.slices);
  writer.save_async(1, rs.slices, rs.state);
  writer.wait_snapshot();  // no-op for Snapshot::copy
  const auto r = writer.wait();
  ASSERT_TRUE(r && r->committed);
  CheckpointReader reader(r->path);
  EXPECT_EQ(reader.state(0), rs.state);
  for (const GlobalTensor& t : model) EXPECT_EQ(reader.read(t.name), t.values) << t.name;
}

}  // namespace
}  // namespace duet::ckpt
