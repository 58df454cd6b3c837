#include "scheduler/simulate.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "scheduler/comm.h"
#include "core/json.h"
#include "scheduler/validate.h"

namespace duet::sched {
namespace {

// Everything about one op that does not depend on which pipeline runs it, computed once
// per schedule rank and shared by all pipelines.
struct PreOutput {
  int key;        // consumer's input slot, within one pipeline's key space
  int link;       // index into the rank's peer links; -1 = local (same rank)
  double bytes;
  bool gradient;
  int dir, microbatch;
};

struct PreOp {
  double compute = 0;  // before compute_scale
  double a2a = 0;      // communication inside the op
  bool pair = false;
  double forward_share = 1;  // FB: fraction of the compute that is the forward half
  double mem_alloc = 0;      // allocated when the op starts (its forward's activations)
  double mem_release = 0;    // net change when it ends (freed activations, kept weight-grad state)
  int act_alloc = 0, act_release = 0;
  int inputs[2];
  int num_inputs = 0;
  PreOutput outputs[2];
  int num_outputs = 0;
};

struct PreRank {
  std::vector<PreOp> ops;
  std::vector<int> peers;         // distinct remote ranks it sends to
  int last_weight_op[2] = {-1, -1};  // per dir: the op after which the stage's gradients are final
};

double pair_share(const StageCost& c, double part) { return c.f + c.b > 0 ? c.fb * part / (c.f + c.b) : 0; }

void check_cost(const StageCost& c, int stage) {
  for (double v : {c.f, c.b, c.i, c.w, c.fb, c.f_a2a, c.b_a2a, c.activation_bytes, c.gradient_bytes,
                   c.activation_memory, c.weight_grad_memory, c.dp_sync})
    if (!(v >= 0)) throw std::invalid_argument("simulate: stage " + std::to_string(stage) + " has a negative or NaN cost");
}

class Simulator {
 public:
  Simulator(const Schedule& s, const SimConfig& cfg)
      : s_(s), cfg_(cfg), p_(s.placement()), ranks_(s.ranks), replicas_(cfg.pipelines),
        global_ranks_(ranks_ * replicas_), dirs_(p_.num_dirs()), microbatches_per_dir_(s.microbatches_per_dir()),
        data_keys_(ranks_ * dirs_ * 2 * microbatches_per_dir_) {
    if (cfg.pipelines < 1) throw std::invalid_argument("simulate: pipelines must be >= 1");
    const int n = static_cast<int>(cfg.stages.size());
    if (n != 1 && n != p_.num_stages())
      throw std::invalid_argument("simulate: give costs for 1 stage (all alike) or for all " +
                                  std::to_string(p_.num_stages()) + " stages, got " + std::to_string(n));
    for (int i = 0; i < n; ++i) check_cost(cfg.stages[i], i);
    if (cfg.link_classes.empty()) throw std::invalid_argument("simulate: no link classes");
    for (const LinkClass& l : cfg.link_classes)
      if (!(l.latency >= 0) || !(l.bandwidth >= 0)) throw std::invalid_argument("simulate: negative link latency or bandwidth");
    if (!cfg.compute_scale.empty() && static_cast<int>(cfg.compute_scale.size()) != global_ranks_)
      throw std::invalid_argument("simulate: compute_scale needs one entry per global rank (" + std::to_string(global_ranks_) +
                                  "), got " + std::to_string(cfg.compute_scale.size()));
    prepare();
  }

  SimResult run() {
    SimResult res;
    res.ranks = ranks_;
    res.pipelines = replicas_;
    res.rank_stats.assign(global_ranks_, {});
    free_at_.assign(global_ranks_, 0.0);
    slot_ready_.assign(static_cast<size_t>(global_ranks_) * dirs_, 0.0);
    link_free_.assign(static_cast<size_t>(global_ranks_) * max_peers_, 0.0);
    link_cls_.assign(link_free_.size(), 0);
    for (int g = 0; g < global_ranks_; ++g) {
      const PreRank& pr = pre_[g % ranks_];
      for (size_t l = 0; l < pr.peers.size(); ++l) {
        int to = (g / ranks_) * ranks_ + pr.peers[l];
        int c = cfg_.link_class ? cfg_.link_class(g, to) : 0;
        if (c < 0 || c >= static_cast<int>(cfg_.link_classes.size()))
          throw std::invalid_argument("simulate: link class " + std::to_string(c) + " of link " + std::to_string(g) +
                                      " -> " + std::to_string(to) + " is not one of the " +
                                      std::to_string(cfg_.link_classes.size()) + " classes");
        link_cls_[g * max_peers_ + l] = c;
      }
    }
    if (cfg_.record_timeline) res.events.reserve(static_cast<size_t>(replicas_) * (total_ops_ * 2 + ranks_ * dirs_));
    // Pipelines share nothing until the DP synchronisation (finish_dp), so they run one
    // after the other over one pipeline's worth of input slots.
    arrival_.resize(data_keys_);
    made_.resize(data_keys_);
    waiter_.resize(data_keys_);
    for (int pl = 0; pl < replicas_; ++pl) run_pipeline(pl, res);
    finish_dp(res);
    return res;
  }

 private:
  // Runs each rank of pipeline `pl` in program order. A rank whose next op lacks an input
  // registers as that input's waiter and yields; producing the input wakes it.
  void run_pipeline(int pl, SimResult& res) {
    std::fill(arrival_.begin(), arrival_.end(), -1.0);
    std::fill(waiter_.begin(), waiter_.end(), -1);
    std::vector<int> next(ranks_, 0), live(ranks_, 0);
    std::vector<double> mem(ranks_, 0.0);
    std::vector<int> ready;
    for (int r = ranks_ - 1; r >= 0; --r) ready.push_back(r);
    while (!ready.empty()) {
      const int r = ready.back();
      ready.pop_back();
      const int g = pl * ranks_ + r;
      const PreRank& pr = pre_[r];
      const double scale = cfg_.compute_scale.empty() ? 1.0 : cfg_.compute_scale[g];
      RankStats& st = res.rank_stats[g];
      const int n = static_cast<int>(pr.ops.size());
      while (next[r] < n) {
        const PreOp& op = pr.ops[next[r]];
        double arrived = free_at_[g], data_made = free_at_[g];
        bool blocked = false;
        for (int i = 0; i < op.num_inputs; ++i) {
          const int k = op.inputs[i];
          if (arrival_[k] < 0) {
            waiter_[k] = r;
            blocked = true;
            break;
          }
          arrived = std::max(arrived, arrival_[k]);
          data_made = std::max(data_made, made_[k]);
        }
        if (blocked) break;
        const int k_op = next[r]++;
        const double start = arrived;
        const double compute = op.compute * scale;
        const double dur = op.pair ? std::max(compute, op.a2a) : compute + op.a2a;
        const double end = start + dur;
        st.busy += compute;
        st.exposed_comm += (start - data_made) + (dur - compute);
        free_at_[g] = end;

        mem[r] += op.mem_alloc;
        live[r] += op.act_alloc;
        st.peak_memory = std::max(st.peak_memory, mem[r]);
        st.peak_activations = std::max(st.peak_activations, live[r]);
        mem[r] += op.mem_release;
        live[r] -= op.act_release;
        st.peak_memory = std::max(st.peak_memory, mem[r]);

        if (cfg_.record_timeline)
          res.events.push_back({EventKind::Compute, g, -1, k_op, -1, -1, start, end,
                                op.pair ? start + dur * op.forward_share : end});
        for (int i = 0; i < op.num_outputs; ++i) {
          const PreOutput& o = op.outputs[i];
          double at = end;
          if (o.link >= 0) {
            const size_t l = static_cast<size_t>(g) * max_peers_ + o.link;
            const LinkClass& lc = cfg_.link_classes[link_cls_[l]];
            const double t0 = std::max(end, link_free_[l]);
            const double occupied = lc.bandwidth > 0 ? o.bytes / lc.bandwidth : 0.0;
            link_free_[l] = t0 + occupied;
            at = t0 + occupied + lc.latency;
            if (cfg_.record_timeline)
              res.events.push_back({o.gradient ? EventKind::Gradient : EventKind::Activation, g,
                                    pl * ranks_ + pr.peers[o.link], k_op, o.dir, o.microbatch, t0, at, at});
          }
          arrival_[o.key] = at;
          made_[o.key] = end;
          if (waiter_[o.key] >= 0) {
            ready.push_back(waiter_[o.key]);
            waiter_[o.key] = -1;
          }
        }
        for (int d = 0; d < dirs_; ++d)
          if (pr.last_weight_op[d] == k_op) slot_ready_[static_cast<size_t>(g) * dirs_ + d] = end;
      }
    }
    for (int r = 0; r < ranks_; ++r)
      if (next[r] != static_cast<int>(pre_[r].ops.size()))
        throw std::logic_error("simulate: rank " + std::to_string(r) + " of pipeline " + std::to_string(pl) +
                               " is stuck at op " + std::to_string(next[r]) + " although the schedule validated");
  }

  const StageCost& cost(int rank, int dir) const {
    return cfg_.stages.size() == 1 ? cfg_.stages[0] : cfg_.stages[p_.stage_of(rank, dir)];
  }

  int key(const Slot& consumer, DataKind kind, int mb) const {
    return ((consumer.rank * dirs_ + consumer.dir) * 2 + (kind == DataKind::Gradient)) * microbatches_per_dir_ + mb;
  }

  void prepare() {
    pre_.resize(ranks_);
    for (int r = 0; r < ranks_; ++r) {
      PreRank& pr = pre_[r];
      const auto& ops = s_.ops[r];
      pr.ops.resize(ops.size());
      total_ops_ += ops.size();
      for (size_t k = 0; k < ops.size(); ++k) {
        const Op& op = ops[k];
        PreOp& po = pr.ops[k];
        const StageCost& c = cost(r, op.dir);
        switch (op.kind) {
          case OpKind::F:
            po.compute = c.f, po.a2a = c.f_a2a;
            po.mem_alloc = c.activation_memory, po.act_alloc = 1;
            break;
          case OpKind::B:
            po.compute = c.b, po.a2a = c.b_a2a;
            po.mem_release = -c.activation_memory, po.act_release = 1;
            pr.last_weight_op[op.dir] = static_cast<int>(k);
            break;
          case OpKind::I:
            po.compute = c.i, po.a2a = c.b_a2a;
            po.mem_release = c.weight_grad_memory - c.activation_memory, po.act_release = 1;
            break;
          case OpKind::W:
            po.compute = c.w;
            po.mem_release = -c.weight_grad_memory;
            pr.last_weight_op[op.dir] = static_cast<int>(k);
            break;
          case OpKind::FB: {
            const StageCost& cb = cost(r, op.dir2);
            const double fpart = pair_share(c, c.f), bpart = pair_share(cb, cb.b);
            po.pair = true;
            po.compute = fpart + bpart;
            po.forward_share = po.compute > 0 ? fpart / po.compute : 0.5;
            po.a2a = c.f_a2a + cb.b_a2a;
            po.mem_alloc = c.activation_memory, po.act_alloc = 1;
            po.mem_release = -cb.activation_memory, po.act_release = 1;
            pr.last_weight_op[op.dir2] = static_cast<int>(k);
            break;
          }
        }
        OpIo io = op_io(p_, r, op);
        for (int i = 0; i < io.num_inputs; ++i)
          po.inputs[po.num_inputs++] = key(io.inputs[i].to, io.inputs[i].kind, io.inputs[i].microbatch);
        for (int i = 0; i < io.num_outputs; ++i) {
          const Transfer& t = io.outputs[i];
          PreOutput& o = po.outputs[po.num_outputs++];
          const bool grad = t.kind == DataKind::Gradient;
          o.key = key(t.to, t.kind, t.microbatch);
          o.gradient = grad;
          o.dir = t.from.dir, o.microbatch = t.microbatch;
          const StageCost& cs = cost(r, t.from.dir);
          o.bytes = grad ? cs.gradient_bytes : cs.activation_bytes;
          o.link = -1;
          if (!t.local()) {
            auto it = std::find(pr.peers.begin(), pr.peers.end(), t.to.rank);
            o.link = static_cast<int>(it - pr.peers.begin());
            if (it == pr.peers.end()) pr.peers.push_back(t.to.rank);
          }
        }
      }
      max_peers_ = std::max(max_peers_, static_cast<int>(pr.peers.size()));
    }
    max_peers_ = std::max(max_peers_, 1);
  }

  // DP synchronisation: stage (rank, dir) of every pipeline joins one collective, which
  // starts when the last of them has its gradients; a rank runs its collectives one at a
  // time, in the order they can start.
  void finish_dp(SimResult& res) {
    for (int r = 0; r < ranks_; ++r) {
      struct Sync { double start, dur; int dir; };
      Sync syncs[2];
      for (int d = 0; d < dirs_; ++d) {
        double start = 0;
        for (int pl = 0; pl < replicas_; ++pl) start = std::max(start, slot_ready_[static_cast<size_t>(pl * ranks_ + r) * dirs_ + d]);
        syncs[d] = {start, cost(r, d).dp_sync, d};
      }
      if (dirs_ == 2 && syncs[1].start < syncs[0].start) std::swap(syncs[0], syncs[1]);
      for (int pl = 0; pl < replicas_; ++pl) {
        const int g = pl * ranks_ + r;
        RankStats& st = res.rank_stats[g];
        st.compute_end = free_at_[g];
        double t = 0;
        for (int d = 0; d < dirs_; ++d) {
          if (syncs[d].dur <= 0) continue;
          const double t0 = std::max(t, syncs[d].start);
          t = t0 + syncs[d].dur;
          if (cfg_.record_timeline) res.events.push_back({EventKind::DpSync, g, -1, -1, syncs[d].dir, -1, t0, t, t});
        }
        st.finish = std::max(st.compute_end, t) + cfg_.rank_tail;
        st.exposed_comm += st.finish - st.compute_end;
        res.makespan = std::max(res.makespan, st.finish);
      }
    }
    for (RankStats& st : res.rank_stats) st.bubble = res.makespan - st.busy - st.exposed_comm;
  }

  const Schedule& s_;
  const SimConfig& cfg_;
  const Placement p_;
  // ranks of one pipeline, pipeline replicas (data-parallel), ranks in all, directions,
  // micro-batches per direction, and keys of the data one pipeline moves (key()).
  const int ranks_, replicas_, global_ranks_, dirs_, microbatches_per_dir_, data_keys_;
  std::vector<PreRank> pre_;
  int max_peers_ = 0;
  size_t total_ops_ = 0;
  // Run state: per global rank, per link, and one pipeline's input slots.
  std::vector<double> free_at_, slot_ready_, link_free_;
  std::vector<int> link_cls_;
  std::vector<double> arrival_, made_;  // when each input arrives / was made; arrival -1 = not yet
  std::vector<int> waiter_;             // rank blocked on each input slot, -1 = none
};

const char* event_kind_name(EventKind k) {
  switch (k) {
    case EventKind::Compute: return "compute";
    case EventKind::Activation: return "activation";
    case EventKind::Gradient: return "gradient";
    case EventKind::DpSync: return "dp_sync";
  }
  return "?";
}

}  // namespace

StageCost stage_cost(double f, double b, double w, double fb) {
  StageCost c;
  c.f = f, c.b = b, c.w = w, c.fb = fb, c.i = b - w;
  if (c.i < 0) throw std::invalid_argument("stage cost: W (" + std::to_string(w) + ") cannot exceed B (" +
                                           std::to_string(b) + "): I = B - W");
  return c;
}

SimResult simulate(const Schedule& schedule, const SimConfig& config) {
  check_schedule(schedule);
  return Simulator(schedule, config).run();
}

std::string sim_result_to_json(const SimResult& res, const Schedule& schedule, bool include_timeline) {
  core::json::Writer j;
  j.begin_object();
  j.key("kind").value(format_schedule_kind(schedule.kind));
  j.key("ranks").value(res.ranks).key("pipelines").value(res.pipelines);
  j.key("microbatches").value(schedule.microbatches);
  j.key("makespan").value(res.makespan);
  auto per_rank = [&](const char* name, auto field) {
    j.key(name).begin_array();
    for (const RankStats& st : res.rank_stats) j.value(field(st));
    j.end_array();
  };
  per_rank("bubble_per_rank", [](const RankStats& s) { return s.bubble; });
  per_rank("busy_per_rank", [](const RankStats& s) { return s.busy; });
  per_rank("exposed_comm_per_rank", [](const RankStats& s) { return s.exposed_comm; });
  per_rank("finish_per_rank", [](const RankStats& s) { return s.finish; });
  per_rank("peak_activations_per_rank", [](const RankStats& s) { return s.peak_activations; });
  per_rank("peak_memory_per_rank", [](const RankStats& s) { return s.peak_memory; });
  if (include_timeline) {
    j.key("timeline").begin_array();
    for (const Event& e : res.events) {
      j.begin_object().key("kind").value(event_kind_name(e.kind)).key("rank").value(e.rank);
      if (e.kind == EventKind::Compute) {
        j.key("op").value(format_op(schedule.ops[e.rank % res.ranks][e.op_index])).key("index").value(e.op_index);
      } else if (e.kind == EventKind::DpSync) {
        j.key("dir").value(e.dir);
      } else {
        j.key("peer").value(e.peer).key("dir").value(e.dir).key("mb").value(e.microbatch);
      }
      j.key("t0").value(e.t0).key("t1").value(e.t1).end_object();
    }
    j.end_array();
  }
  j.end_object();
  return j.str() + "\n";
}

}  // namespace duet::sched
