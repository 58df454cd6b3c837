#include "runtime/comm_nccl.h"

#include <stdexcept>

#if DUET_HAVE_CUDA

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "io/trace.h"

namespace duet::runtime {

namespace {

[[noreturn]] void fail(const std::string& what, const char* call, const char* file, int line, int rank) {
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": rank " + std::to_string(rank) + ": " +
                           call + ": " + what);
}

#define DUET_CUDA_OK(call, rank)                                                                  \
  do {                                                                                            \
    const cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) fail(cudaGetErrorString(e_), #call, __FILE__, __LINE__, (rank));       \
  } while (0)

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::F32: return ncclFloat32;
    case DType::F64: return ncclFloat64;
    case DType::I32: return ncclInt32;
    case DType::I64: return ncclInt64;
    case DType::Byte: return ncclUint8;
  }
  throw std::logic_error("unknown DType");
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::LogicalAnd: return ncclMin;  // on 0/1 flags
  }
  throw std::logic_error("unknown ReduceOp");
}

// Non-blocking (the host never waits inside NCCL: a hang can be aborted), and at most
// kMaxCtas thread blocks per operation: several of duet's communicators have an operation
// pending at once (a receive posted ahead on each message stream, expert all-to-alls,
// gradient reductions), and CUDA does not promise that blocked kernels leave room for the
// kernels they wait for — capped, a dozen pending operations take a third of an H200's SMs.
constexpr int kMaxCtas = 4;
// An NCCL call failed: the communicator is aborted; issue() then aborts the rank's others.
struct NcclFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

ncclConfig_t nccl_config() {
  ncclConfig_t c = NCCL_CONFIG_INITIALIZER;
  c.blocking = 0;
  c.maxCTAs = kMaxCtas;
  return c;
}

// One NCCL communicator with its streams; shared by the Communicator and its requests, so a
// request outliving its communicator still tests safely.
struct Shared {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;       // the operations, in issue order
  cudaStream_t copy_stream = nullptr;  // staging to and from the host (never waits for stream)
  cudaEvent_t staged_in = nullptr;     // under mu: the latest host buffer staged on copy_stream
  int rank = 0, size = 0;
  std::mutex mu;                          // NCCL communicators are not thread-safe
  std::atomic<bool> abort_requested{false};  // read by a thread polling NCCL under mu
  std::atomic<bool> aborted{false};          // ncclCommAbort has run: comm is gone
  std::atomic<io::TraceRecorder*> trace{nullptr};  // set_trace: operations recorded there
  std::string error;                         // under mu: why it was aborted ("" = asked to)

  ~Shared() {
    if (comm && !aborted) {
      // Flush what was issued, but never wait forever: a peer that is gone would hang it.
      ncclResult_t r = ncclCommFinalize(comm);
      const auto give_up = Clock::now() + std::chrono::seconds(10);
      while (r == ncclInProgress && Clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        ncclCommGetAsyncError(comm, &r);
      }
      if (r != ncclSuccess) ncclCommAbort(comm);  // frees the communicator as well
      else ncclCommDestroy(comm);
    }  // aborted: ncclCommAbort freed it already
    if (stream) cudaStreamDestroy(stream);
    if (copy_stream) cudaStreamDestroy(copy_stream);
    if (staged_in) cudaEventDestroy(staged_in);
  }

  // Under mu. Ends every operation of the communicator; `why` is what its requests raise.
  void abort_locked(const std::string& why) {
    abort_requested = true;
    if (aborted.exchange(true)) return;
    error = why;
    if (comm) ncclCommAbort(comm);
  }

  // Under mu: waits until a non-blocking call's work is enqueued (ncclInProgress →
  // ncclSuccess) — first point-to-point between two ranks connects them, which needs the peer
  // — unless the communicator is being aborted meanwhile.
  void settle(ncclResult_t r, const char* call, const char* file, int line) {
    while (r == ncclInProgress) {
      if (abort_requested)
        throw std::runtime_error("rank " + std::to_string(rank) + ": " + call + ": the NCCL communicator was aborted");
      std::this_thread::yield();
      ncclCommGetAsyncError(comm, &r);
    }
    if (r == ncclSuccess) return;
    const std::string why = std::string(file) + ":" + std::to_string(line) + ": rank " + std::to_string(rank) + ": " +
                            call + ": NCCL: " + ncclGetErrorString(r) + " (" + ncclGetLastError(comm) +
                            "); this rank's NCCL communicators are aborted";
    abort_locked(why);
    throw NcclFailure(why);
  }
};

#define DUET_NCCL_OK(shared, call) (shared).settle((call), #call, __FILE__, __LINE__)

// Every live communicator of this process: an error on one aborts them all, so no thread
// waits for ever on a request of another (the job is lost either way; the supervisor
// restarts it), and each of their requests raises the error.
std::mutex g_registry_mu;
std::vector<std::weak_ptr<Shared>>* g_registry = new std::vector<std::weak_ptr<Shared>>;  // outlives statics

void register_communicator(const std::shared_ptr<Shared>& s) {
  std::lock_guard lock(g_registry_mu);
  std::erase_if(*g_registry, [](const std::weak_ptr<Shared>& w) { return w.expired(); });
  g_registry->push_back(s);
}

void abort_all(const std::string& why) {
  std::vector<std::shared_ptr<Shared>> live;
  {
    std::lock_guard lock(g_registry_mu);
    for (auto& w : *g_registry)
      if (auto s = w.lock()) live.push_back(std::move(s));
  }
  for (auto& s : live) {  // one lock at a time
    s->abort_requested = true;
    std::lock_guard lock(s->mu);
    s->abort_locked(why);
  }
}

bool is_host_memory(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    (void)cudaGetLastError();
    return true;
  }
  return a.type == cudaMemoryTypeUnregistered || a.type == cudaMemoryTypeHost;
}

// CUDA event times on the host's steady clock, for the trace: an anchor event recorded on an
// idle stream of its own and waited for (so its time is the host's, off by the wait's
// microseconds). cudaEventElapsedTime is float milliseconds: a new anchor every 10 s keeps the
// offsets fine. A request keeps the anchor it was issued under (shared), so it never measures
// against an anchor recorded after it began.
struct Anchor {
  cudaEvent_t event = nullptr;
  double host = 0;
  ~Anchor() {
    if (event) cudaEventDestroy(event);
  }
};

std::shared_ptr<Anchor> current_anchor(int rank) {
  static std::mutex mu;
  static cudaStream_t stream = nullptr;
  static std::shared_ptr<Anchor> anchor;
  std::lock_guard lock(mu);
  if (anchor && io::TraceRecorder::now() - anchor->host < 10.0) return anchor;
  if (!stream) DUET_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), rank);
  auto a = std::make_shared<Anchor>();
  DUET_CUDA_OK(cudaEventCreate(&a->event), rank);
  DUET_CUDA_OK(cudaEventRecord(a->event, stream), rank);
  DUET_CUDA_OK(cudaEventSynchronize(a->event), rank);
  a->host = io::TraceRecorder::now();
  anchor = a;
  return anchor;
}

// What a traced operation records: its name and kind, the trace, and a start event on the
// communicator's stream (the end is the request's `done` event).
struct Traced {
  io::TraceRecorder* trace = nullptr;
  std::string name;
  io::TraceCategory category = io::TraceCategory::P2p;
  std::shared_ptr<Anchor> anchor;
  std::shared_ptr<std::remove_pointer_t<cudaEvent_t>> start;  // destroyed with the last holder
};

// The device-side view of one buffer of an operation: the buffer itself when the GPU can
// use it, else device scratch (copied in when the operation reads it).
struct Staged {
  void* host = nullptr;  // set when staged
  void* device = nullptr;
  size_t bytes = 0;
  bool copy_out = false;  // the operation writes it: copy back when done
};

class NcclRequest final : public RequestState {
 public:
  NcclRequest(std::shared_ptr<Shared> s, std::vector<Staged> staged, Traced traced)
      : s_(std::move(s)), staged_(std::move(staged)), traced_(std::move(traced)) {
    // Timing costs a little per event: only when the operation is traced.
    DUET_CUDA_OK(cudaEventCreateWithFlags(&done_, traced_.trace ? 0u : cudaEventDisableTiming), s_->rank);
    DUET_CUDA_OK(cudaEventRecord(done_, s_->stream), s_->rank);
  }
  ~NcclRequest() override {
    for (auto& b : staged_) cudaFreeAsync(b.device, s_->stream);  // abandoned (an error raised)
    if (done_) cudaEventDestroy(done_);
  }

  bool test() override {
    std::string failed;
    bool done = false;
    {
      std::lock_guard lock(s_->mu);
      if (s_->aborted) {
        if (!s_->error.empty()) throw std::runtime_error(s_->error);
        return finish();  // asked to: every operation ended, results undefined (and untraced)
      }
      // The event first, then the communicator's state: an error that ended the operation
      // (and so reached the event) is seen before the operation counts as done.
      const cudaError_t e = cudaEventQuery(done_);
      ncclResult_t r = ncclSuccess;
      ncclCommGetAsyncError(s_->comm, &r);
      if (r != ncclSuccess && r != ncclInProgress) {
        failed = "rank " + std::to_string(s_->rank) + ": NCCL: " + ncclGetErrorString(r) + " (" +
                 ncclGetLastError(s_->comm) + "); this rank's NCCL communicators are aborted";
        s_->abort_locked(failed);
      } else {
        if (e == cudaErrorNotReady) return false;
        DUET_CUDA_OK(e, s_->rank);
        done = finish();
      }
    }
    if (done) {
      record();  // outside the lock: the trace may write a chunk to its file
      return true;
    }
    abort_all(failed);  // outside this communicator's lock: abort_all takes each in turn
    throw std::runtime_error(failed);
  }

 private:
  bool finish() {  // under mu
    for (auto& b : staged_) {
      if (b.copy_out && !s_->aborted) {
        DUET_CUDA_OK(cudaMemcpyAsync(b.host, b.device, b.bytes, cudaMemcpyDeviceToHost, s_->copy_stream), s_->rank);
        DUET_CUDA_OK(cudaStreamSynchronize(s_->copy_stream), s_->rank);
      }
      // On the copy stream: the host has seen the operation end. Freed on the operations'
      // stream, a block could go back to the pool behind a pending receive there, and the pool
      // may hand it to the next copy in on the copy stream with a wait for that stream (its
      // default reuse across streams): the copy stream would then be behind a receive again.
      // After an abort the operation's end is not known: its stream orders the free.
      cudaFreeAsync(b.device, s_->aborted ? s_->stream : s_->copy_stream);
    }
    staged_.clear();
    return true;
  }

  // A completed traced operation's span: from its stream reaching it to its end, on the host
  // clock through the anchor it was issued under.
  void record() {
    if (!traced_.trace || !traced_.start) return;
    float from_anchor = 0, length = 0;
    if (cudaEventElapsedTime(&from_anchor, traced_.anchor->event, traced_.start.get()) != cudaSuccess ||
        cudaEventElapsedTime(&length, traced_.start.get(), done_) != cudaSuccess) {
      (void)cudaGetLastError();  // a trace entry is not worth failing the operation for
      return;
    }
    const double t0 = traced_.anchor->host + from_anchor * 1e-3, t1 = t0 + length * 1e-3;
    traced_.trace->add(std::move(traced_.name), traced_.category, io::TraceThread::NcclStreams, t0, t1, {}, 0,
                       t1 - t0);
    traced_.trace = nullptr;
  }

  std::shared_ptr<Shared> s_;
  std::vector<Staged> staged_;
  Traced traced_;
  cudaEvent_t done_ = nullptr;
};

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(std::shared_ptr<Shared> s) : s_(std::move(s)) {}
  int rank() const override { return s_->rank; }
  int size() const override { return s_->size; }
  bool p2p_matches_tags() const override { return false; }
  void set_trace(io::TraceRecorder* trace) override { s_->trace = trace; }

  // Sends ordered on the device: an event on the producer's stream (the calling thread's),
  // which the communicator's stream waits for before the send.
  bool orders_sends_by_device() const override { return true; }
  DeviceMark mark_device_work() override {
    cudaEvent_t e = nullptr;
    DUET_CUDA_OK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), s_->rank);
    DeviceMark mark(static_cast<void*>(e), [](void* p) { cudaEventDestroy(static_cast<cudaEvent_t>(p)); });
    DUET_CUDA_OK(cudaEventRecord(e, cudaStreamPerThread), s_->rank);
    return mark;
  }
  Request isend_after(std::span<const float> buf, int peer, int /*tag*/, const DeviceMark& after) override {
    return issue(
        "ncclSend to " + std::to_string(peer), io::TraceCategory::P2p,
        [&](Op& op) {
          void* d = op.in(buf.data(), buf.size_bytes());
          ok(ncclSend(d, buf.size(), ncclFloat32, peer, s_->comm, s_->stream), "ncclSend");
        },
        static_cast<cudaEvent_t>(after.get()));
  }

  void abort() {
    s_->abort_requested = true;  // first: a thread polling NCCL under mu lets go
    std::lock_guard lock(s_->mu);
    s_->abort_locked("");
  }

  Request isend(std::span<const float> buf, int peer, int /*tag*/) override {
    return issue("ncclSend to " + std::to_string(peer), io::TraceCategory::P2p, [&](Op& op) {
      void* d = op.in(buf.data(), buf.size_bytes());
      ok(ncclSend(d, buf.size(), ncclFloat32, peer, s_->comm, s_->stream), "ncclSend");
    });
  }
  Request irecv(std::span<float> buf, int peer, int /*tag*/) override {
    return issue("ncclRecv from " + std::to_string(peer), io::TraceCategory::P2p, [&](Op& op) {
      void* d = op.out(buf.data(), buf.size_bytes());
      ok(ncclRecv(d, buf.size(), ncclFloat32, peer, s_->comm, s_->stream), "ncclRecv");
    });
  }

  Request ialltoall(const int32_t* send, int32_t* recv, int count) override {
    const size_t bytes = sizeof(int32_t) * (size_t)count * s_->size;
    return issue("all-to-all (counts)", io::TraceCategory::All2all, [&](Op& op) {
      auto* ds = (const int32_t*)op.in(send, bytes);
      auto* dr = (int32_t*)op.out(recv, bytes);
      group([&] {
        for (int q = 0; q < s_->size; ++q) {
          ok(ncclSend(ds + (size_t)q * count, count, ncclInt32, q, s_->comm, s_->stream), "ncclSend");
          ok(ncclRecv(dr + (size_t)q * count, count, ncclInt32, q, s_->comm, s_->stream), "ncclRecv");
        }
      });
    });
  }

  Request ialltoallv(const float* send, const int* sc, const int* sd, float* recv, const int* rc,
                     const int* rd) override {
    size_t send_end = 0, recv_end = 0;  // floats each buffer spans
    for (int q = 0; q < s_->size; ++q)
      send_end = std::max(send_end, (size_t)sd[q] + sc[q]), recv_end = std::max(recv_end, (size_t)rd[q] + rc[q]);
    return issue("all-to-all", io::TraceCategory::All2all, [&](Op& op) {
      auto* ds = (const float*)op.in(send, sizeof(float) * send_end);
      auto* dr = (float*)op.out(recv, sizeof(float) * recv_end);
      group([&] {
        for (int q = 0; q < s_->size; ++q) {  // an empty block is skipped on both sides
          if (sc[q] > 0) ok(ncclSend(ds + sd[q], sc[q], ncclFloat32, q, s_->comm, s_->stream), "ncclSend");
          if (rc[q] > 0) ok(ncclRecv(dr + rd[q], rc[q], ncclFloat32, q, s_->comm, s_->stream), "ncclRecv");
        }
      });
    });
  }

  Request ireduce_scatter_sum(const float* send, float* recv, const int* counts) override {
    const int n = s_->size, me = s_->rank;
    size_t total = 0;
    bool equal = true;
    for (int q = 0; q < n; ++q) {
      total += counts[q];
      equal = equal && counts[q] == counts[0];
    }
    return issue("reduce-scatter", io::TraceCategory::Dp, [&](Op& op) {
      auto* ds = (const float*)op.in(send, sizeof(float) * total);
      auto* dr = (float*)op.out(recv, sizeof(float) * counts[me]);
      if (equal) {
        ok(ncclReduceScatter(ds, dr, counts[0], ncclFloat32, ncclSum, s_->comm, s_->stream), "ncclReduceScatter");
        return;
      }
      group([&] {  // unequal blocks: one reduce per block, to its owner
        size_t at = 0;
        for (int q = 0; q < n; at += counts[q], ++q)
          ok(ncclReduce(ds + at, q == me ? dr : nullptr, counts[q], ncclFloat32, ncclSum, q, s_->comm, s_->stream),
             "ncclReduce");
      });
    });
  }

  Request iallgatherv_inplace(float* buf, const int* counts, const int* displs) override {
    const int n = s_->size;
    bool packed = true;  // equal blocks, back to back: one all-gather
    size_t end = 0;
    for (int q = 0; q < n; ++q) {
      packed = packed && counts[q] == counts[0] && displs[q] == q * counts[0];
      end = std::max(end, (size_t)displs[q] + counts[q]);
    }
    return issue("all-gather", io::TraceCategory::Dp, [&](Op& op) {
      auto* d = (float*)op.inout(buf, sizeof(float) * end);
      if (packed) {
        ok(ncclAllGather(d + displs[s_->rank], d, counts[0], ncclFloat32, s_->comm, s_->stream), "ncclAllGather");
        return;
      }
      group([&] {
        for (int q = 0; q < n; ++q)
          ok(ncclBroadcast(d + displs[q], d + displs[q], counts[q], ncclFloat32, q, s_->comm, s_->stream),
             "ncclBroadcast");
      });
    });
  }

  Request iallreduce(void* buf, int count, DType type, ReduceOp rop) override {
    return issue("all-reduce", io::TraceCategory::Dp, [&](Op& op) {
      void* d = op.inout(buf, dtype_size(type) * count);
      ok(ncclAllReduce(d, d, count, nccl_type(type), nccl_op(rop), s_->comm, s_->stream), "ncclAllReduce");
    });
  }
  void allreduce_inplace(void* buf, int count, DType type, ReduceOp op) override {
    Request r = iallreduce(buf, count, type, op);
    wait(r);
  }
  Request ibroadcast(void* buf, int count, DType type, int root) override {
    return issue("broadcast", io::TraceCategory::Dp, [&](Op& op) {
      void* d = op.inout(buf, dtype_size(type) * count);
      ok(ncclBroadcast(d, d, count, nccl_type(type), root, s_->comm, s_->stream), "ncclBroadcast");
    });
  }
  Request ibarrier() override {
    return issue("barrier", io::TraceCategory::Dp, [&](Op& op) {
      void* d = op.scratch(sizeof(int32_t));
      ok(ncclAllReduce(d, d, 1, ncclInt32, ncclSum, s_->comm, s_->stream), "ncclAllReduce (barrier)");
    });
  }

  std::unique_ptr<Communicator> dup() override { return split(0, s_->rank); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    auto s = std::make_shared<Shared>();
    s->rank = s_->rank;  // for messages, until the new rank is known
    try {
      {
        std::lock_guard lock(s_->mu);
        if (s_->aborted) throw std::runtime_error("rank " + std::to_string(s_->rank) + ": NCCL communicator aborted");
        ncclConfig_t config = nccl_config();
        DUET_NCCL_OK(*s_, ncclCommSplit(s_->comm, color, key, &s->comm, &config));
      }
      register_communicator(s);  // from here an abort of the rank's communicators reaches it too
      {
        std::lock_guard lock(s->mu);
        DUET_NCCL_OK(*s, ncclInProgress);  // the new communicator's own initialisation
      }
    } catch (const NcclFailure& f) {
      abort_all(f.what());
      throw;
    }
    ncclCommUserRank(s->comm, &s->rank);
    ncclCommCount(s->comm, &s->size);
    s->trace = s_->trace.load();
    DUET_CUDA_OK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), s_->rank);
    DUET_CUDA_OK(cudaStreamCreateWithFlags(&s->copy_stream, cudaStreamNonBlocking), s_->rank);
    return std::make_unique<NcclCommunicator>(std::move(s));
  }

 private:
  // The buffers of one operation being issued.
  class Op {
   public:
    explicit Op(Shared& s) : s_(s) {}
    ~Op() {  // not handed to a request (an error while issuing): give the scratch back
      for (auto& b : staged) cudaFreeAsync(b.device, s_.stream);
    }
    void* in(const void* p, size_t bytes) { return stage(const_cast<void*>(p), bytes, true, false); }
    void* out(void* p, size_t bytes) { return stage(p, bytes, false, true); }
    void* inout(void* p, size_t bytes) { return stage(p, bytes, true, true); }
    void* scratch(size_t bytes) { return stage(nullptr, bytes, false, false); }
    std::vector<Staged> staged;

   private:
    void* stage(void* p, size_t bytes, bool copy_in, bool copy_out) {
      if (p && (bytes == 0 || !is_host_memory(p))) return p;
      Staged b{p, nullptr, std::max<size_t>(bytes, 4), copy_out && p};
      if (copy_in && p) {
        // On the copy stream, which the operations' stream then waits for on the device: CUDA
        // may synchronise a stream before a copy from pageable memory (to stage it), and the
        // operations' stream may hold a receive whose sender waits for this very send.
        if (!s_.staged_in) DUET_CUDA_OK(cudaEventCreateWithFlags(&s_.staged_in, cudaEventDisableTiming), s_.rank);
        DUET_CUDA_OK(cudaMallocAsync(&b.device, b.bytes, s_.copy_stream), s_.rank);
        DUET_CUDA_OK(cudaMemcpyAsync(b.device, p, bytes, cudaMemcpyHostToDevice, s_.copy_stream), s_.rank);
        DUET_CUDA_OK(cudaEventRecord(s_.staged_in, s_.copy_stream), s_.rank);
        DUET_CUDA_OK(cudaStreamWaitEvent(s_.stream, s_.staged_in, 0), s_.rank);
      } else {
        DUET_CUDA_OK(cudaMallocAsync(&b.device, b.bytes, s_.stream), s_.rank);
        if (!p) DUET_CUDA_OK(cudaMemsetAsync(b.device, 0, b.bytes, s_.stream), s_.rank);
      }
      staged.push_back(b);
      return b.device;
    }
    Shared& s_;
  };

  // `name`, `category`: the operation's trace entry, when the communicator is traced. `after`:
  // device work the operation waits for first (its trace span starts after it).
  template <class F>
  Request issue(std::string name, io::TraceCategory category, F&& body, cudaEvent_t after = nullptr) {
    try {
      Traced traced;
      if ((traced.trace = s_->trace.load())) {
        traced.name = std::move(name), traced.category = category;
        traced.anchor = current_anchor(s_->rank);  // before the lock: it may wait (briefly) for its own stream
      }
      std::lock_guard lock(s_->mu);
      if (s_->aborted)
        throw std::runtime_error(!s_->error.empty() ? s_->error
                                                    : "rank " + std::to_string(s_->rank) + ": NCCL communicator aborted");
      if (after) DUET_CUDA_OK(cudaStreamWaitEvent(s_->stream, after, 0), s_->rank);
      if (traced.trace) {  // before the operation's staging copies: they are part of its time
        cudaEvent_t start = nullptr;
        DUET_CUDA_OK(cudaEventCreate(&start), s_->rank);
        traced.start.reset(start, cudaEventDestroy);
        DUET_CUDA_OK(cudaEventRecord(start, s_->stream), s_->rank);
      }
      Op op(*s_);
      body(op);
      auto staged = std::move(op.staged);
      op.staged.clear();
      return Request(std::make_unique<NcclRequest>(s_, std::move(staged), std::move(traced)));
    } catch (const NcclFailure& f) {  // this communicator is aborted; the rank's others go too
      abort_all(f.what());
      throw;
    }
  }
  void ok(ncclResult_t r, const char* call) { s_->settle(r, call, __FILE__, __LINE__); }
  template <class F>
  void group(F&& body) {
    ok(ncclGroupStart(), "ncclGroupStart");
    struct Close {  // an error inside leaves no group open on this thread
      bool open = true;
      ~Close() {
        if (open) ncclGroupEnd();
      }
    } close;
    body();
    close.open = false;
    ok(ncclGroupEnd(), "ncclGroupEnd");
  }

  std::shared_ptr<Shared> s_;
};

}  // namespace

std::string nccl_absent_reason() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    (void)cudaGetLastError();
    return "no CUDA device is visible to this process (driver, CUDA_VISIBLE_DEVICES)";
  }
  return "";
}

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& control, Clock::duration init_timeout) {
  const std::string absent = nccl_absent_reason();
  if (!absent.empty()) throw std::runtime_error("NCCL data plane: " + absent);
  ncclUniqueId id{};
  if (control.rank() == 0) {
    const ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) fail(ncclGetErrorString(r), "ncclGetUniqueId", __FILE__, __LINE__, 0);
  }
  Request b = control.ibroadcast(&id, (int)sizeof(id), DType::Byte, 0);
  wait(b);
  auto s = std::make_shared<Shared>();
  s->rank = control.rank(), s->size = control.size();
  DUET_CUDA_OK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), s->rank);
  DUET_CUDA_OK(cudaStreamCreateWithFlags(&s->copy_stream, cudaStreamNonBlocking), s->rank);
  ncclConfig_t config = nccl_config();
  std::unique_lock lock(s->mu);
  ncclResult_t r = ncclCommInitRankConfig(&s->comm, s->size, id, s->rank, &config);
  if (r == ncclSuccess || r == ncclInProgress) register_communicator(s);  // an abort of the rank's reaches it
  const Deadline give_up = Clock::now() + init_timeout;
  while (r == ncclInProgress) {
    if (Clock::now() >= give_up || s->abort_requested) {
      s->abort_locked("");
      throw std::runtime_error("rank " + std::to_string(s->rank) + ": NCCL communicator of " +
                               std::to_string(s->size) + " ranks not ready " +
                               (s->abort_requested ? "when aborted" : "within its timeout (a rank missing?)"));
    }
    lock.unlock();  // abort_all takes it
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    lock.lock();
    ncclCommGetAsyncError(s->comm, &r);
  }
  if (r != ncclSuccess) {
    s->abort_locked("");
    fail(ncclGetErrorString(r), "ncclCommInitRankConfig", __FILE__, __LINE__, s->rank);
  }
  lock.unlock();
  return std::make_unique<NcclCommunicator>(std::move(s));
}

void abort_nccl_communicator(Communicator& nccl) {
  auto* c = dynamic_cast<NcclCommunicator*>(&nccl);
  if (!c) throw std::logic_error("abort_nccl_communicator: not an NCCL communicator");
  c->abort();
}

}  // namespace duet::runtime

#else  // built without CUDA

namespace duet::runtime {

std::string nccl_absent_reason() { return "this build has no CUDA (configure with nvcc found, or -DDUET_CUDA=ON)"; }

std::unique_ptr<Communicator> make_nccl_communicator(Communicator&, Clock::duration) {
  throw std::runtime_error("NCCL data plane: " + nccl_absent_reason());
}

void abort_nccl_communicator(Communicator&) { throw std::logic_error("abort_nccl_communicator: built without CUDA"); }

}  // namespace duet::runtime

#endif
