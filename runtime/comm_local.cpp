#include "runtime/comm_local.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace duet::runtime {

namespace {

template <class T>
void reduce_into(T* acc, const T* x, int n, ReduceOp op) {
  for (int i = 0; i < n; ++i) switch (op) {
      case ReduceOp::Sum: acc[i] += x[i]; break;
      case ReduceOp::Max: acc[i] = std::max(acc[i], x[i]); break;
      case ReduceOp::LogicalAnd: acc[i] = (acc[i] != T(0)) && (x[i] != T(0)); break;
    }
}

void reduce_into(void* acc, const void* x, int n, DType t, ReduceOp op) {
  switch (t) {
    case DType::F32: return reduce_into((float*)acc, (const float*)x, n, op);
    case DType::F64: return reduce_into((double*)acc, (const double*)x, n, op);
    case DType::I32: return reduce_into((int32_t*)acc, (const int32_t*)x, n, op);
    case DType::I64: return reduce_into((int64_t*)acc, (const int64_t*)x, n, op);
    case DType::Byte: throw std::logic_error("cannot reduce bytes");
  }
}

using Flag = std::shared_ptr<std::atomic<bool>>;

class FlagRequest final : public RequestState {
 public:
  explicit FlagRequest(Flag f) : f_(std::move(f)) {}
  bool test() override { return f_->load(std::memory_order_acquire); }

 private:
  Flag f_;
};

Request flag_request(const Flag& f) { return Request(std::make_unique<FlagRequest>(f)); }

struct Group;

// One member's part of a collective: its arguments, as given.
struct Part {
  const void* send = nullptr;
  void* recv = nullptr;
  const int *send_counts = nullptr, *send_displs = nullptr, *recv_counts = nullptr, *recv_displs = nullptr;
  int count = 0;
  int color = 0, key = 0;                 // split
  bool ordered = false;                   // split: the new group follows NCCL's p2p rules
  std::shared_ptr<Group>* new_group = nullptr;  // split: where this member's group goes
  int* new_rank = nullptr;
  Flag done;
};

enum class Kind { Alltoall, Alltoallv, ReduceScatter, Allgatherv, Allreduce, Broadcast, Barrier, Split };

struct Collective {
  Kind kind;
  DType type = DType::F32;
  ReduceOp op = ReduceOp::Sum;
  int root = 0;
  std::vector<Part> parts;  // by member rank
  int arrived = 0;
};

struct Message {
  int src, tag;
  std::vector<float> data;
};
struct PostedRecv {
  int src, tag;
  std::span<float> buf;
  Flag done;
};

// A point-to-point operation of an ordered group (NCCL's rules, runtime/comm.h).
struct OrderedP2P {
  bool send;
  int peer;
  std::span<const float> from;  // send
  std::span<float> into;        // receive
  Flag done;
};

struct Group {
  Group(int n, bool ordered_p2p) : size(n), ordered(ordered_p2p), inbox(n), posted(n), queue(n), next_seq(n, 0) {}
  int size;
  const bool ordered;  // point-to-point as NCCL does it (p2p_matches_tags() false)
  std::mutex mu;
  std::vector<std::deque<Message>> inbox;      // per destination: arrived, not yet received
  std::vector<std::deque<PostedRecv>> posted;  // per destination: receives waiting
  // Ordered groups: per member, its point-to-point operations in the order issued; only the
  // front one is running (one stream), and it completes when it meets its peer's front one.
  std::vector<std::deque<OrderedP2P>> queue;
  std::vector<long> next_seq;                  // per member: its next collective's number
  std::map<long, Collective> pending;
};

void run(Collective& c, int n) {
  switch (c.kind) {
    case Kind::Alltoall:
      for (int q = 0; q < n; ++q)
        for (int p = 0; p < n; ++p)
          std::memcpy((int32_t*)c.parts[q].recv + (size_t)p * c.parts[q].count,
                      (const int32_t*)c.parts[p].send + (size_t)q * c.parts[p].count, sizeof(int32_t) * c.parts[p].count);
      break;
    case Kind::Alltoallv:
      for (int q = 0; q < n; ++q)
        for (int p = 0; p < n; ++p) {
          const Part &to = c.parts[q], &from = c.parts[p];
          if (from.send_counts[q] != to.recv_counts[p]) throw std::logic_error("alltoallv: counts disagree");
          std::memcpy((float*)to.recv + to.recv_displs[p], (const float*)from.send + from.send_displs[q],
                      sizeof(float) * from.send_counts[q]);
        }
      break;
    case Kind::ReduceScatter: {
      const int* counts = c.parts[0].recv_counts;
      for (int q = 0, off = 0; q < n; off += counts[q], ++q) {
        std::vector<float> acc(counts[q], 0.0f);  // Σ in rank order: deterministic
        for (int p = 0; p < n; ++p) reduce_into(acc.data(), (const float*)c.parts[p].send + off, counts[q], DType::F32, ReduceOp::Sum);
        std::memcpy(c.parts[q].recv, acc.data(), sizeof(float) * acc.size());
      }
      break;
    }
    case Kind::Allgatherv:
      for (int q = 0; q < n; ++q)
        for (int p = 0; p < n; ++p)
          if (p != q)
            std::memcpy((float*)c.parts[q].recv + c.parts[p].recv_displs[p], (const float*)c.parts[p].recv + c.parts[p].recv_displs[p],
                        sizeof(float) * c.parts[p].recv_counts[p]);
      break;
    case Kind::Allreduce: {
      const size_t bytes = dtype_size(c.type) * c.parts[0].count;
      std::vector<char> acc((const char*)c.parts[0].recv, (const char*)c.parts[0].recv + bytes);
      for (int p = 1; p < n; ++p) reduce_into(acc.data(), c.parts[p].recv, c.parts[0].count, c.type, c.op);
      for (int p = 0; p < n; ++p) std::memcpy(c.parts[p].recv, acc.data(), bytes);
      break;
    }
    case Kind::Broadcast:
      for (int p = 0; p < n; ++p)
        if (p != c.root) std::memcpy(c.parts[p].recv, c.parts[c.root].recv, dtype_size(c.type) * c.parts[c.root].count);
      break;
    case Kind::Barrier: break;
    case Kind::Split: {
      std::map<int, std::vector<std::pair<int, int>>> by_color;  // color -> (key, rank)
      for (int p = 0; p < n; ++p) by_color[c.parts[p].color].push_back({c.parts[p].key, p});
      for (auto& [color, members] : by_color) {
        std::sort(members.begin(), members.end());
        auto g = std::make_shared<Group>((int)members.size(), c.parts[members[0].second].ordered);
        for (int r = 0; r < (int)members.size(); ++r) {
          *c.parts[members[r].second].new_group = g;
          *c.parts[members[r].second].new_rank = r;
        }
      }
      break;
    }
  }
}

class LocalCommunicator final : public Communicator {
 public:
  LocalCommunicator(std::shared_ptr<Group> g, int rank) : g_(std::move(g)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return g_->size; }

  bool p2p_matches_tags() const override { return !g_->ordered; }

  Request isend(std::span<const float> buf, int peer, int tag) override {
    if (g_->ordered) return ordered_p2p({true, peer, buf, {}, nullptr});
    std::lock_guard lock(g_->mu);
    auto& waiting = g_->posted.at(peer);
    for (auto it = waiting.begin(); it != waiting.end(); ++it)
      if (it->src == rank_ && it->tag == tag) {
        if (it->buf.size() < buf.size()) throw std::logic_error("local comm: message larger than the receive");
        std::copy(buf.begin(), buf.end(), it->buf.begin());
        it->done->store(true, std::memory_order_release);
        waiting.erase(it);
        return {};
      }
    g_->inbox[peer].push_back({rank_, tag, std::vector<float>(buf.begin(), buf.end())});
    return {};  // buffered: the send buffer is free at once
  }

  Request irecv(std::span<float> buf, int peer, int tag) override {
    if (g_->ordered) return ordered_p2p({false, peer, {}, buf, nullptr});
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::lock_guard lock(g_->mu);
    auto& box = g_->inbox[rank_];
    for (auto it = box.begin(); it != box.end(); ++it)
      if (it->src == peer && it->tag == tag) {  // first arrived first: MPI's non-overtaking order
        if (buf.size() < it->data.size()) throw std::logic_error("local comm: message larger than the receive");
        std::copy(it->data.begin(), it->data.end(), buf.begin());
        box.erase(it);
        return {};
      }
    g_->posted[rank_].push_back({peer, tag, buf, done});
    return flag_request(done);
  }

  Request ialltoall(const int32_t* send, int32_t* recv, int count) override {
    Part p;
    p.send = send, p.recv = recv, p.count = count;
    return collective(Kind::Alltoall, p);
  }
  Request ialltoallv(const float* send, const int* sc, const int* sd, float* recv, const int* rc, const int* rd) override {
    Part p;
    p.send = send, p.recv = recv, p.send_counts = sc, p.send_displs = sd, p.recv_counts = rc, p.recv_displs = rd;
    return collective(Kind::Alltoallv, p);
  }
  Request ireduce_scatter_sum(const float* send, float* recv, const int* counts) override {
    Part p;
    p.send = send, p.recv = recv, p.recv_counts = counts;
    return collective(Kind::ReduceScatter, p);
  }
  Request iallgatherv_inplace(float* buf, const int* counts, const int* displs) override {
    Part p;
    p.recv = buf, p.recv_counts = counts, p.recv_displs = displs;
    return collective(Kind::Allgatherv, p);
  }
  Request iallreduce(void* buf, int count, DType type, ReduceOp op) override {
    Part p;
    p.recv = buf, p.count = count;
    return collective(Kind::Allreduce, p, type, op);
  }
  void allreduce_inplace(void* buf, int count, DType type, ReduceOp op) override {
    Request r = iallreduce(buf, count, type, op);
    wait(r);
  }
  Request ibroadcast(void* buf, int count, DType type, int root) override {
    Part p;
    p.recv = buf, p.count = count;
    return collective(Kind::Broadcast, p, type, ReduceOp::Sum, root);
  }
  Request ibarrier() override { return collective(Kind::Barrier, Part{}); }

  std::unique_ptr<Communicator> dup() override { return split(0, rank_); }
  std::unique_ptr<Communicator> split(int color, int key) override { return split(color, key, g_->ordered); }
  std::unique_ptr<Communicator> split(int color, int key, bool ordered) {
    std::shared_ptr<Group> g;
    int r = 0;
    Part p;
    p.color = color, p.key = key, p.new_group = &g, p.new_rank = &r, p.ordered = ordered;
    Request req = collective(Kind::Split, p);
    wait(req);
    return std::make_unique<LocalCommunicator>(std::move(g), r);
  }

 private:
  Request ordered_p2p(OrderedP2P op) {
    if (op.peer < 0 || op.peer >= g_->size || op.peer == rank_) throw std::logic_error("local comm: bad peer");
    op.done = std::make_shared<std::atomic<bool>>(false);
    const Flag done = op.done;
    std::lock_guard lock(g_->mu);
    g_->queue[rank_].push_back(std::move(op));
    // Meet front operations pairwise until none meet: a completion can let the next ones in.
    for (bool met = true; met;) {
      met = false;
      for (int a = 0; a < g_->size; ++a) {
        auto &qa = g_->queue[a];
        if (qa.empty() || !qa.front().send) continue;
        auto& qb = g_->queue[qa.front().peer];
        if (qb.empty() || qb.front().send || qb.front().peer != a) continue;
        const OrderedP2P s = qa.front(), r = qb.front();
        qa.pop_front(), qb.pop_front();
        const bool fits = s.from.size() == r.into.size();
        if (fits) std::copy(s.from.begin(), s.from.end(), r.into.begin());
        s.done->store(true, std::memory_order_release);  // both end, so neither side hangs
        r.done->store(true, std::memory_order_release);
        if (!fits)
          throw std::logic_error("local comm (NCCL rules): a send of " + std::to_string(s.from.size()) +
                                 " floats met a receive of " + std::to_string(r.into.size()));
        met = true;
      }
    }
    return flag_request(done);
  }

  Request collective(Kind kind, Part part, DType type = DType::F32, ReduceOp op = ReduceOp::Sum, int root = 0) {
    part.done = std::make_shared<std::atomic<bool>>(false);
    const Flag done = part.done;
    std::lock_guard lock(g_->mu);
    const long seq = g_->next_seq[rank_]++;
    auto [it, fresh] = g_->pending.try_emplace(seq);
    Collective& c = it->second;
    if (fresh) c.kind = kind, c.type = type, c.op = op, c.root = root, c.parts.resize(g_->size);
    if (c.kind != kind) throw std::logic_error("local comm: members issued different collectives");
    c.parts[rank_] = std::move(part);
    if (++c.arrived == g_->size) {
      run(c, g_->size);
      for (auto& p : c.parts) p.done->store(true, std::memory_order_release);
      g_->pending.erase(it);
    }
    return flag_request(done);
  }

  std::shared_ptr<Group> g_;
  int rank_;
};

}  // namespace

std::unique_ptr<Communicator> ordered_p2p_dup(Communicator& local) {
  auto* c = dynamic_cast<LocalCommunicator*>(&local);
  if (!c) throw std::logic_error("ordered_p2p_dup: not an in-process communicator");
  return c->split(0, c->rank(), /*ordered=*/true);
}

void run_local_ranks(int ranks, const std::function<void(Communicator& world)>& fn) {
  auto world = std::make_shared<Group>(ranks, false);
  std::vector<std::exception_ptr> errors(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      try {
        LocalCommunicator comm(world, r);
        fn(comm);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace duet::runtime
