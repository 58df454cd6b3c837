// Checkpoint save and load throughput against dd on the same disk, in the same run
// (docs/checkpoints.md, docs/PERFORMANCE.md). A standalone main rather than Google Benchmark:
// each measurement is seconds of fsync'd I/O by forked "ranks", repeated a few times, and
// the comparison with dd is the result.
//
//   build/bench/bench_checkpoint [--dir /tmp/duet-bench] [--gib 1] [--writers 4] [--runs 5] [--warmup 1]
//
// Per run, with `--gib` GiB of float32 state cut into row slices of 32 tensors over
// `--writers` processes (one shard each, as ranks would):
//   dd           dd if=/dev/zero of=FILE bs=4M count=N conv=fsync     (the same bytes, one stream)
//   dd_xW        W such dd's at once, each 1/W of the bytes
//   save         save_checkpoint on every rank: shards written, fsync'd, hashed, agreed,
//                committed by rank 0 (index.h5, manifest, COMMITTED, renames, fsyncs)
//   async        CheckpointWriter::save_async on every rank (buffers reserved beforehand):
//                stall = how long save_async blocked the caller (the snapshot copy), the
//                largest over the ranks, all ranks copying at once; async = until committed
//   stall_1      the same copy by one rank alone (no other rank competing for the cores)
//   dd_read      dd if=FILE of=/dev/null bs=4M, after evicting FILE from the page cache
//   load         every tensor read whole (across all shards) by W processes, after evicting
//                the checkpoint from the page cache (posix_fadvise DONTNEED of clean pages)
// The disk here is a VM's virtual disk whose speed depends on what was written just before,
// so dd and save swap order every other run (likewise dd_read and load).
// Prints each run (the warm-up ones marked w and left out of the summary), then the median,
// the spread (min..max) and the ratios.
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/writer.h"

namespace fs = std::filesystem;
using namespace duet;

namespace {

constexpr int kTensors = 32;
constexpr int kMaxWriters = 64;
constexpr std::int64_t kCols = 1024;

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Shared between the parent and the forked ranks: a process-shared barrier, the agreement
// flags, and each rank's timings.
struct Shared {
  pthread_barrier_t barrier;
  std::atomic<int> bad[256];
  double t_start[kMaxWriters], t_end[kMaxWriters], stall[kMaxWriters][2];
  int failed[kMaxWriters];
};
Shared* g_shared = nullptr;

void reset_shared(int writers) {
  std::memset(static_cast<void*>(g_shared), 0, sizeof(Shared));
  pthread_barrierattr_t attr;
  pthread_barrierattr_init(&attr);
  pthread_barrierattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_barrier_init(&g_shared->barrier, &attr, static_cast<unsigned>(writers));
}

// all_agree between forked ranks: AND over a shared flag per round.
ckpt::AgreeFn process_agreement() {
  auto round = std::make_shared<int>(0);
  return [round](bool ok) {
    const int r = (*round)++;
    if (!ok) g_shared->bad[r] = 1;
    pthread_barrier_wait(&g_shared->barrier);
    return g_shared->bad[r].load() == 0;
  };
}

// Runs fn(rank) in `writers` forked processes; returns false if any failed.
bool run_ranks(int writers, const std::function<int(int)>& fn) {
  reset_shared(writers);
  std::fflush(stdout);  // or the children would print the parent's buffered lines again
  std::vector<pid_t> kids;
  for (int r = 0; r < writers; ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      int rc = 1;
      try {
        rc = fn(r);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", r, e.what());
      }
      _exit(rc);
    }
    kids.push_back(pid);
  }
  bool ok = true;
  for (pid_t pid : kids) {
    int status = 0;
    waitpid(pid, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  return ok;
}

double span_seconds(int writers) {
  double t0 = 1e300, t1 = 0;
  for (int r = 0; r < writers; ++r) t0 = std::min(t0, g_shared->t_start[r]), t1 = std::max(t1, g_shared->t_end[r]);
  return t1 - t0;
}

// One rank's slices: rows [rank*R, (rank+1)*R) of each of the kTensors [W*R, kCols] tensors.
struct RankState {
  std::vector<std::vector<float>> storage;
  std::vector<ckpt::TensorSlice> slices;
};

RankState make_state(int rank, int writers, std::int64_t rows) {
  RankState s;
  s.storage.resize(kTensors);
  for (int t = 0; t < kTensors; ++t) {
    auto& v = s.storage[t];
    v.resize(static_cast<std::size_t>(rows * kCols));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(rank * 1000 + t) + static_cast<float>(i) * 1e-7f;
    s.slices.push_back({"layers." + std::to_string(t) + ".w", {rows * writers, kCols}, {rows * rank, 0}, {rows, kCols}, v});
  }
  return s;
}

ckpt::CheckpointLayout layout(int writers) {
  ckpt::CheckpointLayout l;
  l.world = l.pp = writers;
  l.schedule = "bench";
  l.model_hash = "bench";
  return l;
}

void evict(const fs::path& p) {
  std::error_code ec;
  auto one = [](const fs::path& f) {
    const int fd = ::open(f.c_str(), O_RDONLY);
    if (fd < 0) return;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  };
  if (fs::is_directory(p, ec)) {
    for (const auto& e : fs::recursive_directory_iterator(p, ec))
      if (e.is_regular_file()) one(e.path());
  } else {
    one(p);
  }
}

double timed_system(const std::string& cmd) {
  const double t0 = now();
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "failed: %s\n", cmd.c_str());
    std::exit(1);
  }
  return now() - t0;
}

struct Stats {
  double median, lo, hi;
};
Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return {n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v.front(), v.back()};
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/tmp/duet-bench";
  double gib = 1;
  int writers = 4, runs = 5, warmup = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--dir") dir = argv[i + 1];
    else if (k == "--gib") gib = std::atof(argv[i + 1]);
    else if (k == "--writers") writers = std::atoi(argv[i + 1]);
    else if (k == "--runs") runs = std::atoi(argv[i + 1]);
    else if (k == "--warmup") warmup = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: bench_checkpoint [--dir D] [--gib G] [--writers W] [--runs N] [--warmup N]\n");
      return 2;
    }
  }
  if (writers < 1 || writers > kMaxWriters || runs < 1 || gib <= 0) return 2;
  const std::int64_t rows = std::max<std::int64_t>(
      1, static_cast<std::int64_t>(gib * (1 << 30) / sizeof(float) / kCols / kTensors / writers));
  const double bytes = static_cast<double>(rows) * writers * kCols * kTensors * sizeof(float);
  const double mib = bytes / (1 << 20);
  const std::int64_t dd_blocks = static_cast<std::int64_t>(bytes / (4 << 20));
  g_shared = static_cast<Shared*>(mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string ckpt = dir + "/ckpt", dd_file = dir + "/dd.bin";
  std::printf("bench_checkpoint: %.2f GiB of float32 in %d tensors over %d writer processes, %d runs (+%d warm-up), in %s\n",
              bytes / (1 << 30), kTensors, writers, runs, warmup, dir.c_str());
  std::printf("%4s %8s %8s %8s %8s %9s %9s %8s %8s   (MiB/s; stalls in ms)\n", "run", "dd", "dd_xW", "save", "async",
              "stall", "stall_1", "dd_read", "load");

  std::vector<double> v_dd, v_ddw, v_save, v_async, v_stall, v_stall1, v_ddr, v_load;
  std::vector<double> r_dd, r_ddw, r_stall, r_stall1, r_load;
  std::int64_t step = 0;
  for (int run = -warmup; run < runs; ++run) {
    const bool dd_first = (run + warmup) % 2 == 0;

    auto dd_write = [&](double& t_dd, double& t_ddw) {
      fs::remove(dd_file);
      t_dd = timed_system("dd if=/dev/zero of=" + dd_file + " bs=4M count=" + std::to_string(dd_blocks) +
                          " conv=fsync status=none");  // kept for the read comparison
      std::string par;
      for (int w = 0; w < writers; ++w)
        par += "dd if=/dev/zero of=" + dd_file + "." + std::to_string(w) + " bs=4M count=" +
               std::to_string(dd_blocks / writers) + " conv=fsync status=none & ";
      t_ddw = timed_system("(" + par + "wait)");
      for (int w = 0; w < writers; ++w) fs::remove(dd_file + "." + std::to_string(w));
    };
    const std::int64_t save_step = ++step;
    auto save_sync = [&]() {
      if (!run_ranks(writers, [&](int r) {
            RankState st = make_state(r, writers, rows);
            auto agree = process_agreement();
            pthread_barrier_wait(&g_shared->barrier);
            g_shared->t_start[r] = now();
            ckpt::SaveResult res = ckpt::save_checkpoint({ckpt, save_step, r, layout(writers), st.slices, {}}, agree);
            g_shared->t_end[r] = now();
            if (!res.committed) std::fprintf(stderr, "rank %d: %s\n", r, res.error.c_str());
            return res.committed ? 0 : 1;
          }))
        std::exit(1);
      return span_seconds(writers);
    };
    double t_dd = 0, t_ddw = 0, t_save = 0;
    if (dd_first) dd_write(t_dd, t_ddw), t_save = save_sync();
    else t_save = save_sync(), dd_write(t_dd, t_ddw);

    // Asynchronous save on every rank, then one rank's copy alone.
    auto async_save = [&](int ranks, std::int64_t at_step) {
      if (!run_ranks(ranks, [&](int r) {
            RankState st = make_state(r, ranks, rows);  // each rank's share is the same size either way
            ckpt::CheckpointWriter w({ckpt + (ranks == writers ? "" : "-alone"), r, layout(ranks), process_agreement(), {}});
            w.reserve(st.slices);
            pthread_barrier_wait(&g_shared->barrier);
            g_shared->t_start[r] = now();
            w.save_async(at_step, st.slices, {});
            g_shared->stall[r][0] = now() - g_shared->t_start[r];
            const auto res = w.wait();
            g_shared->t_end[r] = now();
            if (!res || !res->committed) std::fprintf(stderr, "rank %d: %s\n", r, res ? res->error.c_str() : "no result");
            return res && res->committed ? 0 : 1;
          }))
        std::exit(1);
      double stall = 0;
      for (int r = 0; r < ranks; ++r) stall = std::max(stall, g_shared->stall[r][0]);
      return std::pair(stall, span_seconds(ranks));
    };
    const auto [stall, t_async] = async_save(writers, ++step);
    const double stall1 = async_save(1, ++step).first;
    fs::remove_all(ckpt + "-alone");

    // Reads from the disk, not the page cache.
    const std::string load_path = ckpt::checkpoint_path(ckpt, save_step);
    auto dd_read = [&]() {
      evict(dd_file);
      return timed_system("dd if=" + dd_file + " of=/dev/null bs=4M status=none");
    };
    auto load = [&]() {
      evict(ckpt);
      if (!run_ranks(writers, [&](int r) {
            ckpt::CheckpointReader reader(load_path, "bench");
            pthread_barrier_wait(&g_shared->barrier);
            g_shared->t_start[r] = now();
            std::vector<float> buf;
            for (int t = r; t < kTensors; t += writers) {
              const auto& info = reader.tensor("layers." + std::to_string(t) + ".w");
              buf.resize(static_cast<std::size_t>(ckpt::element_count(info.shape)));
              reader.read(info.name, std::vector<std::int64_t>{0, 0}, info.shape, buf);
              if (buf[1] != static_cast<float>(t) + 1e-7f) return 1;  // rank 0's first row
            }
            g_shared->t_end[r] = now();
            return 0;
          }))
        std::exit(1);
      return span_seconds(writers);
    };
    double t_ddr = 0, t_load = 0;
    if (dd_first) t_ddr = dd_read(), t_load = load();
    else t_load = load(), t_ddr = dd_read();
    fs::remove_all(ckpt);
    fs::remove(dd_file);

    std::printf("%4s %8.0f %8.0f %8.0f %8.0f %9.1f %9.1f %8.0f %8.0f\n",
                run < 0 ? "w" : std::to_string(run).c_str(), mib / t_dd, mib / t_ddw, mib / t_save, mib / t_async,
                1e3 * stall, 1e3 * stall1, mib / t_ddr, mib / t_load);
    if (run < 0) continue;  // warm-up: the first writes to a fresh area run slower, for dd and us alike
    v_dd.push_back(mib / t_dd), v_ddw.push_back(mib / t_ddw), v_save.push_back(mib / t_save);
    v_async.push_back(mib / t_async), v_stall.push_back(stall), v_stall1.push_back(stall1);
    v_ddr.push_back(mib / t_ddr), v_load.push_back(mib / t_load);
    r_dd.push_back(t_dd / t_save), r_ddw.push_back(t_ddw / t_save);
    r_stall.push_back(stall / t_save), r_stall1.push_back(stall1 / t_save), r_load.push_back(t_ddr / t_load);
  }
  fs::remove_all(dir);

  auto line = [](const char* name, const std::vector<double>& v, const char* unit, double scale = 1) {
    const Stats s = stats(v);
    std::printf("  %-40s median %8.2f %-5s (min %.2f, max %.2f)\n", name, s.median * scale, unit, s.lo * scale,
                s.hi * scale);
  };
  std::printf("\nsummary over %d runs (ratios are per run, then the median)\n", runs);
  line("dd write, 1 stream, conv=fsync", v_dd, "MiB/s");
  line("dd write, W streams, conv=fsync", v_ddw, "MiB/s");
  line("checkpoint save, W ranks", v_save, "MiB/s");
  line("checkpoint async save, until committed", v_async, "MiB/s");
  line("async stall, W ranks copying at once", v_stall, "ms", 1e3);
  line("async stall, one rank alone", v_stall1, "ms", 1e3);
  line("dd read, cache evicted", v_ddr, "MiB/s");
  line("checkpoint load, W ranks, cache evicted", v_load, "MiB/s");
  line("save / dd (1 stream)", r_dd, "x");
  line("save / dd (W streams)", r_ddw, "x");
  line("stall / save time (W ranks at once)", r_stall, "x");
  line("stall / save time (one rank alone)", r_stall1, "x");
  line("load / dd read", r_load, "x");
  return 0;
}
