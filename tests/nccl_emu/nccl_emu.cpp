// Host stand-ins for the CUDA runtime and NCCL calls of runtime/comm_nccl.cpp (see the two
// headers under include/ and tests/nccl_emu/nccl_emu.h).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cuda_runtime.h"
#include "nccl.h"
#include "tests/cuda_emu/device_sync.h"

namespace duet_nccl_emu {

std::atomic<long> g_stream_waits{0};

// ---- streams and events ----------------------------------------------------------------

// A stream: a worker thread running its work in the order queued. Its thread ends once the
// stream is destroyed and drained (work still blocked then — an operation nobody meets, on a
// communicator nobody aborts — keeps it, as a hung kernel keeps a device); the object stays.
struct Stream {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> work;
  bool stop = false;
  long pushed = 0, finished = 0;  // pieces of work (under mu)

  void run() {
    std::unique_lock lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return stop || !work.empty(); });
      if (work.empty()) return;
      auto f = std::move(work.front());
      work.pop_front();
      lock.unlock();
      f();
      lock.lock();
      ++finished;
      cv.notify_all();
    }
  }
  void push(std::function<void()> f) {
    std::lock_guard lock(mu);
    work.push_back(std::move(f));
    ++pushed;
    cv.notify_all();
  }
};

std::mutex& streams_mu() {
  static auto* m = new std::mutex;
  return *m;
}
std::vector<Stream*>& streams() {  // live ones
  static auto* s = new std::vector<Stream*>;
  return *s;
}

// cudaDeviceSynchronize, as a GPU does it: waits until every stream has finished the work
// queued before the call — NCCL operations included. One that is never met makes it wait
// forever, as on a device; that is reported here (and the process ends) instead of hanging.
void device_synchronize() {
  std::vector<std::pair<Stream*, long>> targets;
  {
    std::lock_guard lock(streams_mu());
    for (Stream* s : streams()) {
      std::lock_guard slock(s->mu);
      targets.push_back({s, s->pushed});
    }
  }
  constexpr auto kDeadlock = std::chrono::seconds(30);
  for (auto [s, target] : targets) {
    std::unique_lock lock(s->mu);
    if (!s->cv.wait_for(lock, kDeadlock, [&] { return s->finished >= target; })) {
      std::fprintf(stderr,
                   "emulated cudaDeviceSynchronize: an NCCL stream has not finished its work for %lld s: a "
                   "device-wide wait while a receive is pending deadlocks on a GPU (wait for this thread's "
                   "stream instead)\n",
                   (long long)kDeadlock.count());
      std::abort();
    }
  }
}

void* allocate(size_t bytes);  // "device" memory, below
void release(void* p);
[[maybe_unused]] const bool g_hooked = [] {
  duet_emu::device_synchronize_hook = &device_synchronize;
  duet_emu::device_alloc_hook = [](size_t bytes) -> void* { return allocate(bytes); };
  duet_emu::device_free_hook = [](void* p) { release(p); };
  return true;
}();

// An event: the number of its latest record, the latest its stream has reached, and when (the
// host's steady clock, seconds). `progress`: for a record on cudaStreamPerThread with the kernels' emulation linked, what
// makes that stream get there (it runs its work only when waited for: tests/cuda_emu/emu.h).
struct Event {
  std::atomic<long> recorded{0};
  std::shared_ptr<std::atomic<long>> reached = std::make_shared<std::atomic<long>>(0);
  std::shared_ptr<std::atomic<double>> when = std::make_shared<std::atomic<double>>(0);
  std::shared_ptr<const std::function<void()>> progress;  // the latest record's
};

// Waits until `reached` gets to `target`, making `progress` first.
void wait_reached(const std::shared_ptr<const std::function<void()>>& progress,
                  const std::shared_ptr<std::atomic<long>>& reached, long target) {
  if (progress && *progress) (*progress)();
  while (reached->load() < target) std::this_thread::sleep_for(std::chrono::microseconds(20));
}

// ---- "device" memory: host memory allocated here ---------------------------------------

std::mutex& memory_mu() {
  static auto* m = new std::mutex;  // never destroyed: detached stream workers may outlive main
  return *m;
}
std::map<const char*, size_t>& allocations() {
  static auto* a = new std::map<const char*, size_t>;
  return *a;
}
void* allocate(size_t bytes) {
  void* p = std::aligned_alloc(256, std::max<size_t>((bytes + 255) / 256 * 256, 256));
  std::lock_guard lock(memory_mu());
  allocations()[(const char*)p] = bytes;
  return p;
}
void release(void* p) {
  if (!p) return;
  {
    std::lock_guard lock(memory_mu());
    allocations().erase((const char*)p);
  }
  std::free(p);
}
bool is_device(const void* p) {
  std::lock_guard lock(memory_mu());
  auto& a = allocations();
  auto it = a.upper_bound((const char*)p);
  if (it == a.begin()) return false;
  --it;
  return (const char*)p < it->first + std::max<size_t>(it->second, 1);
}

// ---- communicators ---------------------------------------------------------------------

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: return 2;
    case ncclInt32: case ncclUint32: return 4;
    case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
  }
  return 0;
}

template <class T>
void reduce_into(T* acc, const T* x, size_t n, ncclRedOp_t op) {
  for (size_t i = 0; i < n; ++i) switch (op) {
      case ncclSum: acc[i] += x[i]; break;
      case ncclProd: acc[i] *= x[i]; break;
      case ncclMax: acc[i] = std::max(acc[i], x[i]); break;
      case ncclMin: acc[i] = std::min(acc[i], x[i]); break;
    }
}
void reduce_into(void* acc, const void* x, size_t n, ncclDataType_t t, ncclRedOp_t op) {
  switch (t) {
    case ncclInt8: return reduce_into((int8_t*)acc, (const int8_t*)x, n, op);
    case ncclUint8: return reduce_into((uint8_t*)acc, (const uint8_t*)x, n, op);
    case ncclInt32: return reduce_into((int32_t*)acc, (const int32_t*)x, n, op);
    case ncclUint32: return reduce_into((uint32_t*)acc, (const uint32_t*)x, n, op);
    case ncclInt64: return reduce_into((int64_t*)acc, (const int64_t*)x, n, op);
    case ncclUint64: return reduce_into((uint64_t*)acc, (const uint64_t*)x, n, op);
    case ncclFloat32: return reduce_into((float*)acc, (const float*)x, n, op);
    case ncclFloat64: return reduce_into((double*)acc, (const double*)x, n, op);
    case ncclFloat16: break;
  }
  std::abort();  // not used by duet
}

struct Comm;

// One operation of one rank, as issued.
struct Op {
  enum Kind { Send, Recv, AllReduce, ReduceScatter, Reduce, AllGather, Broadcast } kind;
  const void* send = nullptr;
  void* recv = nullptr;
  size_t count = 0;
  ncclDataType_t type = ncclFloat32;
  ncclRedOp_t op = ncclSum;
  int peer = 0;  // Send/Recv: the peer; Reduce/Broadcast: the root
};

// A posted operation: done once met (or failed).
struct Posted {
  Op op;
  Comm* owner = nullptr;
  bool done = false;
};

struct Collective {
  Op::Kind kind;
  std::vector<std::shared_ptr<Posted>> parts;  // by rank
  int arrived = 0;
  bool poisoned = false;  // a member aborted after posting: its buffers may be gone
};

struct SplitCall {
  std::vector<int> color, key;
  std::vector<ncclComm_t*> out;
  int arrived = 0;
  bool done = false;
};

// The ranks of one communicator.
struct Clique {
  explicit Clique(int n) : size(n), members(n, nullptr), coll_seq(n, 0), split_seq(n, 0) {}
  int size;
  std::mutex mu;
  std::condition_variable cv;
  int joined = 0;
  // Point-to-point connections are made on first use, by both sides: (rank, peer) pairs that
  // asked, and the unordered pairs connected.
  std::set<std::pair<int, int>> wants, connected;
  std::vector<Comm*> members;
  std::map<std::pair<int, int>, std::deque<std::shared_ptr<Posted>>> sends, recvs;  // by (src, dst)
  std::vector<long> coll_seq, split_seq;
  std::map<long, Collective> collectives;
  std::map<long, SplitCall> splits;
};

struct Comm {
  std::shared_ptr<Clique> clique;
  int rank = 0;
  bool blocking = true;
  std::atomic<bool> aborted{false};
  std::atomic<int> error{ncclSuccess};
  std::atomic<long> outstanding{0};  // queued or running operations
  std::atomic<bool> finalizing{false};
  std::atomic<bool> freed{false};  // ncclCommAbort or ncclCommDestroy ran: any later call is a bug
  std::string last_error;  // under clique->mu
  std::vector<int> connecting;  // under clique->mu: peers a point-to-point waits to connect to
  std::chrono::steady_clock::time_point connecting_since;
};

// Any call on a communicator that ncclCommAbort or ncclCommDestroy freed: on a device, a
// use after free. Reported, and the process ends.
Comm* live(Comm* c, const char* call) {
  if (c && c->freed) {
    std::fprintf(stderr, "emulated NCCL: %s on a communicator already freed (ncclCommAbort/ncclCommDestroy)\n", call);
    std::abort();
  }
  return c;
}

// Under the clique's lock: records an error on `c`.
void fail(Comm* c, const std::string& why) {
  c->error = ncclInvalidUsage;
  c->last_error = why;
}

void finish_collective(Clique& q, Collective& col) {
  const int n = q.size;
  auto part = [&](int r) -> Op& { return col.parts[r]->op; };
  // Every member must issue the same operation with agreeing sizes: else all fail.
  for (int r = 1; r < n; ++r)
    if (part(r).kind != part(0).kind || part(r).type != part(0).type || part(r).count != part(0).count ||
        part(r).op != part(0).op || part(r).peer != part(0).peer) {
      for (int m = 0; m < n; ++m)
        fail(col.parts[m]->owner, "members issued different collectives (or counts) at the same place");
      return;
    }
  const size_t es = type_size(part(0).type), count = part(0).count, bytes = es * count;
  switch (col.kind) {
    case Op::AllReduce: {
      std::vector<char> acc((const char*)part(0).send, (const char*)part(0).send + bytes);
      for (int r = 1; r < n; ++r) reduce_into(acc.data(), part(r).send, count, part(0).type, part(0).op);
      for (int r = 0; r < n; ++r) std::memcpy(part(r).recv, acc.data(), bytes);
      break;
    }
    case Op::ReduceScatter: {  // count = per-member block
      std::vector<std::vector<char>> out(n);
      for (int b = 0; b < n; ++b) {
        out[b].assign((const char*)part(0).send + b * bytes, (const char*)part(0).send + (b + 1) * bytes);
        for (int r = 1; r < n; ++r)
          reduce_into(out[b].data(), (const char*)part(r).send + b * bytes, count, part(0).type, part(0).op);
      }
      for (int r = 0; r < n; ++r) std::memcpy(part(r).recv, out[r].data(), bytes);
      break;
    }
    case Op::Reduce: {
      const int root = part(0).peer;
      std::vector<char> acc((const char*)part(0).send, (const char*)part(0).send + bytes);
      for (int r = 1; r < n; ++r) reduce_into(acc.data(), part(r).send, count, part(0).type, part(0).op);
      std::memcpy(part(root).recv, acc.data(), bytes);
      break;
    }
    case Op::AllGather: {
      std::vector<char> all((size_t)n * bytes);
      for (int r = 0; r < n; ++r) std::memcpy(all.data() + r * bytes, part(r).send, bytes);
      for (int r = 0; r < n; ++r) std::memcpy(part(r).recv, all.data(), all.size());
      break;
    }
    case Op::Broadcast: {
      const int root = part(0).peer;
      std::vector<char> v((const char*)part(root).send, (const char*)part(root).send + bytes);
      for (int r = 0; r < n; ++r) std::memcpy(part(r).recv, v.data(), bytes);
      break;
    }
    default: std::abort();
  }
}

// Under the clique's lock: posts one operation of `c` and meets what it can.
std::shared_ptr<Posted> post(Comm* c, const Op& op) {
  Clique& q = *c->clique;
  auto p = std::make_shared<Posted>();
  p->op = op, p->owner = c;
  if (op.kind == Op::Send || op.kind == Op::Recv) {
    if (op.peer < 0 || op.peer >= q.size) {
      fail(c, "peer " + std::to_string(op.peer) + " out of range");
      p->done = true;
      return p;
    }
    const bool send = op.kind == Op::Send;
    const auto link = send ? std::make_pair(c->rank, op.peer) : std::make_pair(op.peer, c->rank);
    auto& other = send ? q.recvs[link] : q.sends[link];
    if (other.empty()) {
      (send ? q.sends[link] : q.recvs[link]).push_back(p);
      return p;
    }
    auto m = other.front();  // the n-th send meets the n-th receive
    other.pop_front();
    const Posted& s = send ? *p : *m;
    const Posted& r = send ? *m : *p;
    const size_t sb = s.op.count * type_size(s.op.type), rb = r.op.count * type_size(r.op.type);
    if (sb != rb) {
      const std::string why = "a send of " + std::to_string(sb) + " bytes met a receive of " + std::to_string(rb);
      fail(p->owner, why), fail(m->owner, why);
    } else {
      std::memcpy(r.op.recv, s.op.send, sb);
    }
    p->done = m->done = true;
    return p;
  }
  const long seq = q.coll_seq[c->rank]++;
  auto [it, fresh] = q.collectives.try_emplace(seq);
  Collective& col = it->second;
  if (fresh) col.kind = op.kind, col.parts.resize(q.size);
  col.parts[c->rank] = p;
  if (++col.arrived == q.size) {
    if (col.poisoned)
      for (auto& part : col.parts) fail(part->owner, "a member aborted during the collective");
    else
      finish_collective(q, col);
    for (auto& part : col.parts) part->done = true;
    q.collectives.erase(it);
  }
  return p;
}

// Under the clique's lock: an aborted communicator's operations leave the queues (nobody
// writes into its buffers any more).
void withdraw(Comm* c) {
  Clique& q = *c->clique;
  for (auto* links : {&q.sends, &q.recvs})
    for (auto& [link, posted] : *links)
      posted.erase(std::remove_if(posted.begin(), posted.end(), [&](const auto& p) { return p->owner == c; }),
                   posted.end());
  for (auto& [seq, col] : q.collectives)  // the others complete it with an error, touching nothing
    if (col.parts[c->rank]) col.poisoned = true;
}

// Runs on a stream: posts the operations together (a group), then waits until every one is
// met or its communicator aborted.
void run_group(const std::vector<std::pair<Comm*, Op>>& ops) {
  std::map<Clique*, std::vector<std::pair<Comm*, std::shared_ptr<Posted>>>> by_clique;
  for (const auto& [c, op] : ops) {
    std::lock_guard lock(c->clique->mu);
    if (c->aborted) continue;
    by_clique[c->clique.get()].push_back({c, post(c, op)});
    c->clique->cv.notify_all();
  }
  for (auto& [q, posted] : by_clique) {
    std::unique_lock lock(q->mu);
    q->cv.wait(lock, [&] {
      return std::all_of(posted.begin(), posted.end(), [](const auto& p) { return p.second->done || p.first->aborted; });
    });
  }
  for (const auto& [c, op] : ops) --c->outstanding;
}

struct GroupState {
  int depth = 0;
  std::vector<std::tuple<Comm*, cudaStream_t, Op>> ops;
};
thread_local GroupState t_group;

// A point-to-point operation toward `peer`: true once the pair is connected. The first one
// between two ranks connects them, which takes the peer's first one toward this rank; a
// non-blocking communicator reports ncclInProgress until then (NCCL makes p2p connections
// on first use, and connecting needs both sides).
bool connect(Comm* c, int peer) {
  Clique& q = *c->clique;
  std::lock_guard lock(q.mu);
  const auto pair = std::minmax(c->rank, peer);
  if (q.connected.count(pair)) return true;
  q.wants.insert({c->rank, peer});
  if (q.wants.count({peer, c->rank})) {
    q.connected.insert(pair);
    return true;
  }
  if (c->connecting.empty()) c->connecting_since = std::chrono::steady_clock::now();
  c->connecting.push_back(peer);
  return false;
}

ncclResult_t issue(Comm* c, cudaStream_t s, const Op& op) {
  if (!live(c, "an operation") || !s) return ncclInvalidArgument;
  if (c->aborted) return ncclInvalidUsage;
  if (c->error != ncclSuccess) return (ncclResult_t)c->error.load();
  const bool p2p = op.kind == Op::Send || op.kind == Op::Recv;
  if (t_group.depth > 0) {
    t_group.ops.emplace_back(c, s, op);
    return ncclSuccess;
  }
  const bool connected = !p2p || connect(c, op.peer);
  ++c->outstanding;
  s->push([c, op] { run_group({{c, op}}); });
  return connected || c->blocking ? ncclSuccess : ncclInProgress;
}

std::mutex& registry_mu() {
  static auto* m = new std::mutex;
  return *m;
}
std::map<std::string, std::shared_ptr<Clique>>& registry() {
  static auto* r = new std::map<std::string, std::shared_ptr<Clique>>;
  return *r;
}

}  // namespace duet_nccl_emu

using namespace duet_nccl_emu;

// ---- CUDA runtime ------------------------------------------------------------------------

cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated CUDA error"; }
cudaError_t cudaGetLastError() { return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  auto* stream = new Stream;
  {
    std::lock_guard lock(streams_mu());
    streams().push_back(stream);
  }
  std::thread([stream] { stream->run(); }).detach();  // never deleted: device_synchronize may look at it
  *s = stream;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  std::lock_guard lock(s->mu);
  s->stop = true;
  s->cv.notify_all();
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  std::unique_lock lock(s->mu);
  const long target = s->pushed;
  s->cv.wait(lock, [&] { return s->finished >= target; });
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new Event;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;  // a pending record keeps only the shared counter
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  const long target = ++e->recorded;
  auto reach = [reached = e->reached, when = e->when, target] {
    when->store(std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count());
    reached->store(target);
  };
  if (s == cudaStreamPerThread) {  // the compute kernels' stream (tests/cuda_emu)
    if (duet_emu::queue_on_thread_stream)
      e->progress = std::make_shared<const std::function<void()>>(duet_emu::queue_on_thread_stream(reach));
    else
      reach(), e->progress = nullptr;
  } else {
    s->push(reach);
    e->progress = nullptr;
  }
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  ++g_stream_waits;
  const long target = e->recorded.load();
  s->push([progress = e->progress, reached = e->reached, target] { wait_reached(progress, reached, target); });
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
  return e->reached->load() >= e->recorded.load() ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  wait_reached(e->progress, e->reached, e->recorded.load());
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (cudaEventQuery(start) != cudaSuccess || cudaEventQuery(end) != cudaSuccess) return cudaErrorNotReady;
  *ms = (float)((end->when->load() - start->when->load()) * 1e3);
  return cudaSuccess;
}
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) {
  *p = allocate(bytes);
  return cudaSuccess;
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t s) {
  s->push([p] { release(p); });
  return cudaSuccess;
}
cudaError_t cudaMallocManaged(void** p, size_t bytes, unsigned) {
  *p = allocate(bytes);
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  release(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t s) {
  if (!is_device(src)) {
    // From pageable host memory, the worst case CUDA allows: the stream is synchronised first
    // (its pending receives included), and the source is read before the call returns.
    cudaStreamSynchronize(s);
    auto copy = std::make_shared<std::vector<char>>((const char*)src, (const char*)src + bytes);
    s->push([dst, copy] { std::memcpy(dst, copy->data(), copy->size()); });
  } else {
    s->push([dst, src, bytes] { std::memcpy(dst, src, bytes); });
  }
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s) {
  s->push([p, value, bytes] { std::memset(p, value, bytes); });
  return cudaSuccess;
}
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p) {
  *a = {};
  a->type = is_device(p) ? cudaMemoryTypeManaged : cudaMemoryTypeUnregistered;
  return cudaSuccess;
}

// ---- NCCL ----------------------------------------------------------------------------------

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclInProgress: return "operation in progress";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    default: return "emulated NCCL error";
  }
}
const char* ncclGetLastError(ncclComm_t c) {
  thread_local std::string last;
  if (!live(c, "ncclGetLastError")) return "";
  std::lock_guard lock(c->clique->mu);
  last = c->last_error;
  return last.c_str();
}
ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  static std::atomic<long> next{0};
  std::memset(id->internal, 0, sizeof id->internal);
  const std::string s = "emulated-" + std::to_string(next++);
  std::memcpy(id->internal, s.data(), s.size());
  return ncclSuccess;
}
ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank, ncclConfig_t* config) {
  if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  std::shared_ptr<Clique> q;
  {
    std::lock_guard lock(registry_mu());
    auto& slot = registry()[std::string(id.internal, sizeof id.internal)];
    if (!slot) slot = std::make_shared<Clique>(nranks);
    q = slot;
  }
  if (q->size != nranks) return ncclInvalidUsage;
  auto* c = new Comm;  // never freed: stream work may still name it (ncclCommDestroy is a no-op)
  c->clique = q, c->rank = rank, c->blocking = !config || config->blocking != 0;
  std::unique_lock lock(q->mu);
  if (q->members[rank]) return ncclInvalidUsage;
  q->members[rank] = c;
  ++q->joined;
  q->cv.notify_all();
  *comm = c;
  if (!c->blocking) return q->joined == q->size ? ncclSuccess : ncclInProgress;
  q->cv.wait(lock, [&] { return q->joined == q->size; });
  return ncclSuccess;
}
ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t* state) {
  live(c, "ncclCommGetAsyncError");
  if (c->error != ncclSuccess) {
    *state = (ncclResult_t)c->error.load();
    return ncclSuccess;
  }
  Clique& q = *c->clique;
  std::lock_guard lock(q.mu);
  std::erase_if(c->connecting, [&](int peer) { return q.connected.count(std::minmax(c->rank, peer)) > 0; });
  constexpr auto kDeadlock = std::chrono::seconds(30);
  if (!c->connecting.empty() && !c->aborted && std::chrono::steady_clock::now() - c->connecting_since > kDeadlock) {
    std::fprintf(stderr,
                 "emulated NCCL: rank %d has waited %lld s to connect to rank %d: a first point-to-point between "
                 "two ranks needs the peer's first one toward it, in its own call (see runtime/engine.h)\n",
                 c->rank, (long long)kDeadlock.count(), c->connecting.front());
    std::abort();
  }
  const bool initialising = q.joined < q.size;
  const bool flushing = c->finalizing && c->outstanding > 0;
  *state = !c->aborted && (initialising || flushing || !c->connecting.empty()) ? ncclInProgress : ncclSuccess;
  return ncclSuccess;
}
ncclResult_t ncclCommUserRank(ncclComm_t c, int* rank) {
  *rank = c->rank;
  return ncclSuccess;
}
ncclResult_t ncclCommCount(ncclComm_t c, int* count) {
  *count = c->clique->size;
  return ncclSuccess;
}
ncclResult_t ncclCommSplit(ncclComm_t c, int color, int key, ncclComm_t* newcomm, ncclConfig_t* config) {
  Clique& q = *live(c, "ncclCommSplit")->clique;
  std::unique_lock lock(q.mu);
  const long seq = q.split_seq[c->rank]++;
  SplitCall& call = q.splits[seq];
  if (call.out.empty()) call.color.resize(q.size), call.key.resize(q.size), call.out.resize(q.size);
  call.color[c->rank] = color, call.key[c->rank] = key, call.out[c->rank] = newcomm;
  if (++call.arrived == q.size) {
    std::map<int, std::vector<std::pair<int, int>>> by_color;  // color -> (key, rank)
    for (int r = 0; r < q.size; ++r) {
      if (call.color[r] < 0) *call.out[r] = nullptr;  // NCCL_SPLIT_NOCOLOR
      else by_color[call.color[r]].push_back({call.key[r], r});
    }
    for (auto& [col, members] : by_color) {
      std::sort(members.begin(), members.end());
      auto nq = std::make_shared<Clique>((int)members.size());
      nq->joined = nq->size;
      for (int i = 0; i < nq->size; ++i) {
        auto* nc = new Comm;
        nc->clique = nq, nc->rank = i, nc->blocking = !config || config->blocking != 0;
        nq->members[i] = nc;
        *call.out[members[i].second] = nc;
      }
    }
    call.done = true;
    q.cv.notify_all();
  }
  q.cv.wait(lock, [&] { return call.done || c->aborted; });
  if (c->aborted) return ncclInvalidUsage;
  return config && config->blocking == 0 ? ncclInProgress : ncclSuccess;  // the caller polls
}
ncclResult_t ncclCommFinalize(ncclComm_t c) {
  live(c, "ncclCommFinalize")->finalizing = true;
  if (!c->blocking) return c->outstanding > 0 ? ncclInProgress : ncclSuccess;
  std::unique_lock lock(c->clique->mu);
  c->clique->cv.wait(lock, [&] { return c->outstanding == 0 || c->aborted; });
  return ncclSuccess;
}
ncclResult_t ncclCommDestroy(ncclComm_t c) {
  live(c, "ncclCommDestroy")->freed = true;  // the object stays: a later call is reported, not undefined
  return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t c) {
  live(c, "ncclCommAbort");
  std::lock_guard lock(c->clique->mu);
  c->aborted = true;
  c->freed = true;  // ncclCommAbort frees the communicator too
  withdraw(c);
  c->clique->cv.notify_all();
  return ncclSuccess;
}
ncclResult_t ncclGroupStart() {
  ++t_group.depth;
  return ncclSuccess;
}
ncclResult_t ncclGroupEnd() {
  if (t_group.depth == 0) return ncclInvalidUsage;
  if (--t_group.depth > 0) return ncclSuccess;
  // One piece of work per stream, holding that stream's operations of the group.
  std::map<cudaStream_t, std::vector<std::pair<Comm*, Op>>> by_stream;
  bool nonblocking = false;
  for (auto& [c, s, op] : t_group.ops) {
    by_stream[s].push_back({c, op});
    ++c->outstanding;
    nonblocking = nonblocking || !c->blocking;
    if (op.kind == Op::Send || op.kind == Op::Recv) connect(c, op.peer);
  }
  t_group.ops.clear();
  for (auto& [s, ops] : by_stream) s->push([ops = std::move(ops)] { run_group(ops); });
  // A non-blocking communicator says "in progress" here; the caller polls its state.
  return nonblocking ? ncclInProgress : ncclSuccess;
}
ncclResult_t ncclSend(const void* buf, size_t count, ncclDataType_t type, int peer, ncclComm_t c, cudaStream_t s) {
  Op op{Op::Send};
  op.send = buf, op.count = count, op.type = type, op.peer = peer;
  return issue(c, s, op);
}
ncclResult_t ncclRecv(void* buf, size_t count, ncclDataType_t type, int peer, ncclComm_t c, cudaStream_t s) {
  Op op{Op::Recv};
  op.recv = buf, op.count = count, op.type = type, op.peer = peer;
  return issue(c, s, op);
}
ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t rop,
                           ncclComm_t c, cudaStream_t s) {
  Op op{Op::AllReduce};
  op.send = send, op.recv = recv, op.count = count, op.type = type, op.op = rop;
  return issue(c, s, op);
}
ncclResult_t ncclReduceScatter(const void* send, void* recv, size_t recvcount, ncclDataType_t type, ncclRedOp_t rop,
                               ncclComm_t c, cudaStream_t s) {
  Op op{Op::ReduceScatter};
  op.send = send, op.recv = recv, op.count = recvcount, op.type = type, op.op = rop;
  return issue(c, s, op);
}
ncclResult_t ncclReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t rop, int root,
                        ncclComm_t c, cudaStream_t s) {
  Op op{Op::Reduce};
  op.send = send, op.recv = recv, op.count = count, op.type = type, op.op = rop, op.peer = root;
  return issue(c, s, op);
}
ncclResult_t ncclAllGather(const void* send, void* recv, size_t sendcount, ncclDataType_t type, ncclComm_t c,
                           cudaStream_t s) {
  Op op{Op::AllGather};
  op.send = send, op.recv = recv, op.count = sendcount, op.type = type;
  return issue(c, s, op);
}
ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root, ncclComm_t c,
                           cudaStream_t s) {
  Op op{Op::Broadcast};
  op.send = send, op.recv = recv, op.count = count, op.type = type, op.peer = root;
  return issue(c, s, op);
}

namespace duet::test {
void* emulated_device_alloc(size_t bytes) { return duet_nccl_emu::allocate(bytes); }
void emulated_device_free(void* p) { duet_nccl_emu::release(p); }
long emulated_stream_waits() { return duet_nccl_emu::g_stream_waits.load(); }
}  // namespace duet::test
