// The trainer, engine, ZeRO-1 and expert exchange on ranks that are threads of this process
// (runtime/comm_local.h): no mpirun. Pipelined layouts agree with one rank on the same
// global batch (first loss to 1e-6, every loss to 1e-4, as under MPI), and the same layout
// twice is bit-identical.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <thread>
#include <tuple>
#include <vector>

#include "io/config.h"
#include "io/metrics.h"
#include "model/tensor_spec.h"
#include "runtime/comm_local.h"
#include "runtime/train_setup.h"
#include "runtime/trainer.h"
#include "tests/cuda_emu/backend.h"
#include "tests/nccl_emu/nccl_emu.h"

namespace fs = std::filesystem;
using namespace duet;

namespace {

// The values of `key` in a run's metrics.jsonl, step by step ("loss": every logged step;
// "val_loss": the steps that validated, the last one included).
std::vector<double> metric(const fs::path& metrics, const std::string& key) {
  std::ifstream in(metrics);
  std::vector<double> out;
  const std::regex re("\"" + key + "\":([-0-9.eE+]+)");
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, re)) out.push_back(std::stod(m[1]));
  }
  return out;
}
std::vector<double> losses(const fs::path& metrics) { return metric(metrics, "loss"); }

fs::path local_run_dir(const std::string& name) { return fs::temp_directory_path() / "duet-train-local" / name; }

// A model small enough for the emulated CUDA kernels (every CUDA thread a fiber), with `more`.
std::vector<std::string> small_model(std::vector<std::string> more) {
  const std::vector<std::string> small = {"model.d_model=16", "model.heads=2",       "model.layers=2",
                                          "model.d_ff=24",    "model.moe.experts=4", "model.moe.d_expert=8",
                                          "train.seq_len=8",  "train.eval_every=0"};
  for (const std::string& d : small) {  // a value of `more` wins
    const std::string key = d.substr(0, d.find('=') + 1);
    if (std::none_of(more.begin(), more.end(), [&](const std::string& m) { return m.rfind(key, 0) == 0; }))
      more.insert(more.begin(), d);
  }
  return more;
}

// Trains `layout` (config overrides) on pp·dp threads; returns the losses of its steps.
// `backend`: the kernels (nullptr: runtime.device's). `fresh`: start from an empty run
// directory (else the run resumes from what the directory holds).
// `plane`: the pipeline's data plane (empty: the pipeline group itself).
std::vector<double> train_local(const std::string& name, const std::vector<std::string>& layout,
                                const kernels::Backend* backend = nullptr, bool fresh = true,
                                const runtime::DataPlane& plane = {}) {
  std::vector<std::string> o;
  for (std::string d : {"train.steps=6", "train.log_every=6", "train.eval_batches=1", "runtime.trace=false"}) {
    const std::string key = d.substr(0, d.find('=') + 1);  // the layout's own value wins
    if (std::none_of(layout.begin(), layout.end(), [&](const std::string& l) { return l.rfind(key, 0) == 0; }))
      o.push_back(d);
  }
  o.push_back("run.dir=" + (fs::temp_directory_path() / "duet-train-local").string());
  o.push_back("run.name=" + name);
  o.insert(o.end(), layout.begin(), layout.end());
  const io::RunConfig cfg = io::parse_config(io::default_config_text(), o, "<test>");
  if (fresh) fs::remove_all(fs::temp_directory_path() / "duet-train-local" / name);
  const std::string dir = io::make_run_dir(cfg);
  runtime::run_local_ranks(cfg.parallel.pp * cfg.parallel.dp, [&](runtime::Communicator& world) {
    io::RunLog log("", /*echo=*/false);
    runtime::train(cfg, dir, log, world.dup(), backend, plane);
  });
  return losses(fs::path(dir) / "metrics.jsonl");
}

}  // namespace

TEST(TrainLocal, PipelinedLayoutsAgreeWithOneRank) {
  const auto ref = train_local("one", {"parallel.pp=1", "parallel.dp=1", "parallel.ep=1"});
  ASSERT_EQ(ref.size(), 6u);
  for (const auto& [name, layout] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"dualpipe-pp2dp2ep2", {"parallel.pp=2", "parallel.dp=2", "parallel.ep=2", "parallel.schedule=dualpipe"}},
           {"zb1p-pp2", {"parallel.pp=2", "parallel.dp=1", "parallel.ep=1", "parallel.schedule=zb1p"}},
           {"dualpipev-pp2-no-overlap",
            {"parallel.pp=2", "parallel.dp=1", "parallel.ep=1", "parallel.schedule=dualpipev", "runtime.overlap=false"}}}) {
    SCOPED_TRACE(name);
    const auto got = train_local(name, layout);
    ASSERT_EQ(got.size(), ref.size());
    EXPECT_LE(std::abs(got[0] - ref[0]) / ref[0], 1e-6);
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_LE(std::abs(got[i] - ref[i]) / ref[i], 1e-4) << "step " << i + 1;
  }
  EXPECT_LT(ref.back(), ref.front());
}

// Over a data plane with NCCL's point-to-point rules (no tags, the n-th send meets the n-th
// receive, a send waits for its receive, one operation at a time per communicator), carrying
// the pipeline's messages, the expert all-to-alls and the gradient reductions, every
// schedule trains exactly as over the in-process communicator — with overlap on and off, a modelled
// latency, an expert exchange, DualPipeV's local turn, and four stages in a row (where a rank
// both receives and sends a stream). Two such planes: runtime/comm_local.h's ordered mode,
// and the NCCL communicator's own code over emulated NCCL (tests/nccl_emu: each
// communicator's operations on its stream thread, host buffers staged).
TEST(TrainLocal, PipelinesOverATaglessDataPlaneTrainBitForBitAsOverTaggedMessages) {
  const runtime::DataPlane ordered = [](runtime::Communicator& g) { return runtime::ordered_p2p_dup(g); };
  const runtime::DataPlane nccl = [](runtime::Communicator& g) { return runtime::emulated_make_nccl_communicator(g); };
  for (const auto& [name, layout] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"dualpipe-pp4", {"parallel.pp=4", "parallel.dp=1", "parallel.ep=1", "parallel.schedule=dualpipe"}},
           {"1f1b-pp4-no-overlap",
            {"parallel.pp=4", "parallel.dp=1", "parallel.ep=1", "parallel.schedule=1f1b", "runtime.overlap=false"}},
           {"zb1p-pp2dp2ep2", {"parallel.pp=2", "parallel.dp=2", "parallel.ep=2", "parallel.schedule=zb1p"}},
           {"dualpipe-pp2dp2ep2", {"parallel.pp=2", "parallel.dp=2", "parallel.ep=2", "parallel.schedule=dualpipe"}},
           {"dualpipev-pp4-delay",
            {"parallel.pp=4", "parallel.dp=1", "parallel.ep=1", "parallel.schedule=dualpipev", "runtime.comm_delay_us=50"}}}) {
    SCOPED_TRACE(name);
    std::vector<std::string> with = layout;
    for (std::string o : {"model.layers=8", "train.steps=3", "train.log_every=3"}) with.push_back(o);
    with = small_model(with);
    const auto tagged = train_local("tagged-" + name, with);
    ASSERT_EQ(tagged.size(), 3u);
    EXPECT_EQ(train_local("ordered-" + name, with, nullptr, true, ordered), tagged);
    EXPECT_EQ(train_local("nccl-emulated-" + name, with, nullptr, true, nccl), tagged);
  }
}

// The CUDA backend's code (tests/cuda_emu) with the NCCL data plane's code (tests/nccl_emu),
// as two ranks with a GPU each would run them: the same losses as over the in-process
// communicator. NCCL's receives are posted a step ahead and occupy their streams until met, so
// a backend that waited for the whole device (cudaDeviceSynchronize) would wait for a receive
// whose sender waits for it — 1F1B's steady state has one: the emulated device-wide wait
// reports it (kernels/cuda/streams.h says why the backend waits for its own stream only).
TEST(TrainLocal, TheCudaBackendsCodeTrainsOverEmulatedNcclWithoutWaitingForTheWholeDevice) {
  const runtime::DataPlane nccl = [](runtime::Communicator& g) { return runtime::emulated_make_nccl_communicator(g); };
  // DualPipeV with data and expert parallelism adds the all-to-alls and ZeRO's collectives over
  // NCCL, and its two executors take either direction's forward: the losses are summed per
  // micro-batch in a fixed order (summed as the executors finished, they changed in the last
  // bit in about one run in seven).
  for (const std::string schedule : {"1f1b", "dualpipe", "dualpipev"}) {
    SCOPED_TRACE(schedule);
    const std::string dp = schedule == "dualpipev" ? "2" : "1";
    const auto with = small_model({"parallel.pp=2", "parallel.dp=" + dp, "parallel.ep=" + dp, "parallel.schedule=" + schedule,
                                   "train.global_batch=8", "train.steps=2", "train.log_every=2", "runtime.trace=true"});
    // The emulated CUDA backend, its host waits for the device counted.
    static std::atomic<long> host_waits{0};
    static const kernels::Backend cuda = [] {
      kernels::Backend b = duet::test::emulated_cuda_backend();
      b.synchronize = [] {
        ++host_waits;
        duet::test::emulated_cuda_backend().synchronize();
      };
      return b;
    }();
    const long waits0 = duet::test::emulated_stream_waits(), host0 = host_waits;
    const auto local = train_local("emu-local-" + schedule, with, &cuda);
    const long waits1 = duet::test::emulated_stream_waits(), host1 = host_waits;
    const auto over_nccl = train_local("emu-nccl-" + schedule, with, &cuda, true, nccl);
    const long host2 = host_waits;
    ASSERT_EQ(local.size(), 2u);
    EXPECT_EQ(over_nccl, local);
    // Validation reads the stages' outputs on the host too: on the CPU's kernels the same
    // losses within the CUDA code's rounding (a missing wait would read stale values).
    const auto cpu = train_local("emu-cpu-" + schedule, with, &kernels::cpu_backend());
    const auto val = metric(local_run_dir("emu-nccl-" + schedule) / "metrics.jsonl", "val_loss"),
               cpu_val = metric(local_run_dir("emu-cpu-" + schedule) / "metrics.jsonl", "val_loss");
    ASSERT_EQ(val.size(), 1u);
    ASSERT_EQ(cpu_val.size(), 1u);
    EXPECT_NEAR(val[0], cpu_val[0], 1e-4 * cpu_val[0]);
    ASSERT_EQ(cpu.size(), local.size());
    for (size_t i = 0; i < cpu.size(); ++i) EXPECT_NEAR(local[i], cpu[i], 1e-4 * cpu[i]) << "step " << i + 1;
    // Over NCCL the sends wait for their producer's kernels on the device (an event per
    // send), not on the host: 2 steps × 8 micro-batches per pipeline (4 at DP 2), an activation
    // one way and a gradient the other, and so forward and input backward end without a host
    // wait — at least 2 × 8 fewer over the ranks. The in-process communicator reads host memory: no device waits.
    EXPECT_EQ(waits1, waits0);
    EXPECT_GE(duet::test::emulated_stream_waits() - waits1, 2 * 8);
    EXPECT_LE((host2 - host1) + 2 * 8, host1 - host0) << "host waits: " << host1 - host0 << " in-process, "
                                                       << host2 - host1 << " over NCCL";
    // NCCL's operations have the trace's NCCL-streams row (tid 6): each rank's sends and
    // receives of the pipeline; the in-process communicator has none.
    const std::regex nccl_event("\"name\":\"(ncclSend to|ncclRecv from) \\d+\",\"cat\":\"p2p\",\"ph\":\"X\",\"pid\":\\d+,\"tid\":6,");
    for (const std::string run : {"emu-local-", "emu-nccl-"})
      for (int rank = 0; rank < 2 * std::stoi(dp); ++rank) {
        std::ifstream in(local_run_dir(run + schedule) / "trace" / ("rank-0000" + std::to_string(rank) + ".json"));
        ASSERT_TRUE(in) << run << " rank " << rank << "'s trace";
        std::set<std::string> kinds;
        for (std::string line; std::getline(in, line);) {
          std::smatch m;
          if (std::regex_search(line, m, nccl_event)) kinds.insert(m[1]);
        }
        if (run == "emu-local-")
          EXPECT_TRUE(kinds.empty()) << "rank " << rank;
        else
          EXPECT_EQ(kinds, (std::set<std::string>{"ncclSend to", "ncclRecv from"})) << "rank " << rank;
      }
  }
}

// model.precision: bf16 through the engine: each step holds the weights fixed, so the BF16
// table casts each weight once per step and both executors of an overlapped pair use the kept
// copies — the same losses, bit for bit, as the same table casting at every call.
TEST(TrainLocal, Bf16WeightCopiesKeptForAStepTrainAsCastsAtEveryCall) {
  const kernels::Backend& kept = duet::test::emulated_cuda_bf16_backend();
  static kernels::Backend every_call = kept;  // the trainer keeps a pointer for the run
  every_call.weights_fixed = nullptr;
  const auto with = small_model({"parallel.pp=2", "parallel.dp=1", "parallel.ep=1", "parallel.schedule=dualpipe",
                                 "train.global_batch=4", "train.steps=3", "train.log_every=3"});
  const long before = duet::test::emulated_bf16_weight_casts();
  const auto a = train_local("bf16-every-call", with, &every_call);
  EXPECT_EQ(duet::test::emulated_bf16_weight_casts(), before);
  const auto b = train_local("bf16-kept", with, &kept);
  EXPECT_GT(duet::test::emulated_bf16_weight_casts(), before);
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(b, a);
}

TEST(TrainLocal, SameLayoutTwiceIsBitIdentical) {
  const std::vector<std::string> layout = {"parallel.pp=2", "parallel.dp=2", "parallel.ep=2"};
  const auto a = train_local("twice-a", layout), b = train_local("twice-b", layout);
  ASSERT_EQ(a.size(), 6u);
  EXPECT_EQ(a, b);
}

// PP 2 DualPipe, both ranks on the CUDA backend's code (run by the host emulation,
// tests/cuda_emu: what two ranks sharing one GPU run, minus the device): the losses agree
// with one CPU rank, and each op of each rank has an event on the trace's GPU thread whose
// kernel time lies within its span.
TEST(TrainLocal, TheCudaBackendsCodeTrainsAPipelineAndTracesItsKernelTime) {
  auto with = [](std::vector<std::string> more) {
    for (std::string o : {"train.global_batch=4", "train.steps=3", "train.log_every=3"}) more.push_back(o);
    return small_model(more);
  };
  const auto cpu = train_local("emu-cpu", with({"parallel.pp=1", "parallel.dp=1", "parallel.ep=1"}));
  const auto emu = train_local("emu-pp2", with({"parallel.pp=2", "parallel.dp=1", "parallel.ep=1",
                                                "parallel.schedule=dualpipe", "runtime.trace=true"}),
                               &duet::test::emulated_cuda_backend());
  ASSERT_EQ(cpu.size(), 3u);
  ASSERT_EQ(emu.size(), cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) EXPECT_LE(std::abs(emu[i] - cpu[i]) / cpu[i], 1e-4) << "step " << i + 1;

  const std::regex gpu_event("\"tid\":([45]),\"ts\":[-0-9.e]+,\"dur\":([-0-9.e]+),.*\"op\":\"([FBIW])\".*\"gpu_busy_us\":([-0-9.e]+)");
  for (int rank = 0; rank < 2; ++rank) {
    std::ifstream in(local_run_dir("emu-pp2") / "trace" / ("rank-0000" + std::to_string(rank) + ".json"));
    ASSERT_TRUE(in) << "rank " << rank << "'s trace";
    int ops = 0;
    std::set<std::string> streams;
    for (std::string line; std::getline(in, line);) {
      std::smatch m;
      if (!std::regex_search(line, m, gpu_event)) continue;
      ++ops;
      streams.insert(m[1]);
      const double dur = std::stod(m[2]), busy = std::stod(m[4]);
      EXPECT_GT(busy, 0) << line;
      EXPECT_LE(busy, dur + 0.2) << line;  // µs, as written (one decimal)
    }
    // 3 steps × 4 micro-batches: every F and every backward op has its GPU event, on the
    // stream of the executor that ran it — both executors' (an F&B pair's halves overlap).
    EXPECT_GE(ops, 3 * 4 * 2) << "rank " << rank;
    EXPECT_EQ(streams, (std::set<std::string>{"4", "5"})) << "rank " << rank;
  }
}

// On a GPU an allocation inside a step synchronises the device (cudaMallocManaged, cudaFree:
// the CUDA backend caches freed blocks, kernels/caching_allocator.h, so only a request it
// cannot serve from its cache gets there). After warm-up a run asks its backend for no memory
// at all, though with expert parallelism the owners' rows change every micro-batch (buffers
// keep their storage and data-dependent ones grow with headroom, model/buffers.h). Two runs
// with the same schedule, stopped after 20 and after 40 steps: steps 21–40 made no request.
TEST(TrainLocal, StepsAfterWarmUpAskTheBackendForNoMemory) {
  static std::atomic<long> calls{0};
  kernels::Backend b = kernels::cpu_backend();
  b.alloc = [](size_t n) { return ++calls, kernels::cpu_backend().alloc(n); };
  auto run = [&](int stop_at) {
    calls = 0;
    train_local("alloc-" + std::to_string(stop_at),
                {"parallel.pp=2", "parallel.dp=2", "parallel.ep=2", "model.d_model=16", "model.heads=2",
                 "model.layers=2", "model.d_ff=24", "model.moe.experts=4", "model.moe.d_expert=8", "train.seq_len=16",
                 "train.global_batch=8", "train.steps=60", "train.eval_every=5", "train.stop_at=" + std::to_string(stop_at)},
                &b);
    return calls.load();
  };
  const long at5 = run(5), at20 = run(20), at40 = run(40);
  EXPECT_GT(at20, at5);  // it counts: the first steps still meet larger micro-batches
  EXPECT_EQ(at40, at20);
}

// A GPU backend keeps a stream, a cuBLAS handle and kernel scratch per host thread: the
// threads that compute must be the same every step. Two ranks with overlap on compute on four
// threads over eight steps (the engine's second executor lives as long as the engine), not on
// a new thread each step.
TEST(TrainLocal, TheSameThreadsComputeEveryStep) {
  static std::mutex mu;
  static std::set<long> threads;  // a serial per thread: std::thread::id values are reused
  static std::atomic<long> serials{0};
  kernels::Backend b = kernels::cpu_backend();
  b.synchronize = [] {
    thread_local const long serial = ++serials;
    std::lock_guard<std::mutex> lock(mu);
    threads.insert(serial);
  };
  threads.clear();
  const auto losses = train_local("same-threads", small_model({"parallel.pp=2", "parallel.dp=1", "parallel.ep=1",
                                                               "parallel.schedule=dualpipe", "train.steps=8",
                                                               "train.log_every=8"}),
                                  &b);
  ASSERT_EQ(losses.size(), 8u);
  EXPECT_EQ(threads.size(), 4u);
}

// runtime.device: checkpoints are written from and read into the backend's memory and are the
// same files on every backend. A run on the CUDA backend's code (emulated) stops at step 3
// with a checkpoint and resumes on the CPU; a CPU run's checkpoint resumes on the CUDA code.
// Both continue as an uninterrupted CPU run does (the backends agree to 1e-4, not bit for bit).
// A synchronous save hands HDF5 host copies of a device backend's memory, never that memory
// (docs/gpu.md: a system call may be refused on managed memory): on the emulated CUDA backend
// the save copies every parameter and both AdamW moments to the host through copy_to_host,
// and a run resumed from it on the CPU goes on as an uninterrupted one.
TEST(TrainLocal, ASynchronousSaveOnADeviceBackendWritesFromHostCopies) {
  static std::atomic<long> copied{0};
  static const kernels::Backend cuda = [] {
    kernels::Backend b = duet::test::emulated_cuda_backend();
    b.copy_to_host = [](void* dst, const void* src, size_t bytes) {
      copied += (long)bytes;
      duet::test::emulated_cuda_backend().copy_to_host(dst, src, bytes);
    };
    return b;
  }();
  const auto with = [](int steps, int every) {
    return small_model({"train.steps=" + std::to_string(steps), "train.log_every=1", "checkpoint.async=false",
                       "checkpoint.memory=off", "checkpoint.every=" + std::to_string(every)});
  };
  copied = 0;
  ASSERT_EQ(train_local("sync-save-none", with(2, 0), &cuda).size(), 2u);
  const long without = copied;
  copied = 0;
  ASSERT_EQ(train_local("sync-save-every-2", with(2, 2), &cuda).size(), 2u);
  ASSERT_TRUE(fs::exists(local_run_dir("sync-save-every-2") / "checkpoints")) << "no checkpoint written";
  const int64_t params =
      model::total_params(runtime::to_model_config(io::parse_config(io::default_config_text(), with(2, 2), "<test>")));
  EXPECT_GE(copied - without, 3 * (long)sizeof(float) * params) << "parameters, m and v, each at least once";

  const auto ref = train_local("sync-save-ref", with(3, 0));
  const auto resumed = train_local("sync-save-every-2", with(3, 0), nullptr, /*fresh=*/false);  // step 3 added
  ASSERT_EQ(ref.size(), 3u);
  ASSERT_EQ(resumed.size(), 3u);
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_LE(std::abs(resumed[i] - ref[i]) / ref[i], 1e-4) << "step " << i + 1;
}

TEST(TrainLocal, CheckpointsMoveBetweenTheCudaCodeAndTheCpu) {
  auto with = [](std::vector<std::string> more) {
    for (std::string o : {"train.global_batch=2", "train.steps=6", "checkpoint.every=3"}) more.push_back(o);
    return small_model(more);
  };
  const kernels::Backend* emulated = &duet::test::emulated_cuda_backend();
  const auto ref = train_local("ckpt-ref", with({}));
  ASSERT_EQ(ref.size(), 6u);
  for (const auto& [name, first, second] :
       std::vector<std::tuple<std::string, const kernels::Backend*, const kernels::Backend*>>{
           {"ckpt-cuda-to-cpu", emulated, nullptr}, {"ckpt-cpu-to-cuda", nullptr, emulated}}) {
    SCOPED_TRACE(name);
    ASSERT_EQ(train_local(name, with({"train.stop_at=3"}), first).size(), 3u);
    ASSERT_TRUE(fs::exists(local_run_dir(name) / "checkpoints")) << "no checkpoint written";
    const auto resumed = train_local(name, with({}), second, /*fresh=*/false);  // steps 4–6 added
    ASSERT_EQ(resumed.size(), 6u);
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_LE(std::abs(resumed[i] - ref[i]) / ref[i], 1e-4) << "step " << i + 1;
  }
}
