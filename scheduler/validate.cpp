#include "scheduler/validate.h"

#include <algorithm>
#include <deque>
#include <stdexcept>
#include <string>
#include <vector>

#include "scheduler/comm.h"

namespace duet::sched {
namespace {

std::string chunk_name(char letter, int dir, int mb) {
  return letter + std::to_string(dir) + ":" + std::to_string(mb);
}

// Where each chunk's forward, backward and weight ops sit on one rank (-1: not seen).
struct RankIndex {
  int dirs = 0, mbs = 0;
  std::vector<int> f_pos, b_pos, w_pos;
  std::vector<char> b_is_input;
  void init(int d, int m) {
    dirs = d, mbs = m;
    f_pos.assign(d * m, -1), b_pos.assign(d * m, -1), w_pos.assign(d * m, -1);
    b_is_input.assign(d * m, 0);
  }
  int at(int dir, int mb) const { return dir * mbs + mb; }
};

class Checker {
 public:
  Checker(const Schedule& s, int max_errors)
      : s_(s), p_(s.placement()), dirs_(p_.num_dirs()), mbs_(s.microbatches_per_dir()), max_errors_(max_errors) {}

  ValidationReport run() {
    if (static_cast<int>(s_.ops.size()) != s_.ranks) {
      error(-1, -1, "shape",
            "the schedule has " + std::to_string(s_.ops.size()) + " op lists for " + std::to_string(s_.ranks) + " ranks");
      return std::move(report_);
    }
    report_.peak_activations.assign(s_.ranks, 0);
    index_.resize(s_.ranks);
    for (int r = 0; r < s_.ranks; ++r) check_rank(r);
    if (report_.errors.empty()) check_deadlock();
    return std::move(report_);
  }

 private:
  bool full() const { return static_cast<int>(report_.errors.size()) >= max_errors_; }

  void error(int rank, int pos, const char* rule, std::string msg) {
    if (full()) return;
    std::string op = rank >= 0 && pos >= 0 ? format_op(s_.ops[rank][pos]) : "";
    report_.errors.push_back({rank, pos, std::move(op), rule, std::move(msg)});
  }

  bool in_range(int dir, int mb) const { return dir >= 0 && dir < dirs_ && mb >= 0 && mb < mbs_; }

  std::string range_text() const {
    return "dir must be in [0, " + std::to_string(dirs_) + ") and micro-batch in [0, " + std::to_string(mbs_) + ")";
  }

  void check_rank(int r) {
    RankIndex& ix = index_[r];
    ix.init(dirs_, mbs_);
    const auto& ops = s_.ops[r];
    std::deque<int> deferred;  // chunk index of each pending I, oldest first
    int live = 0, peak = 0;
    for (int k = 0; k < static_cast<int>(ops.size()); ++k) {
      const Op& op = ops[k];
      const bool pair = op.kind == OpKind::FB;
      if (!in_range(op.dir, op.microbatch) || (pair && !in_range(op.dir2, op.microbatch2))) {
        error(r, k, "op-range", range_text());
        continue;
      }
      if (!pair && (op.dir2 != -1 || op.microbatch2 != -1)) {
        error(r, k, "op-range", "only an FB pair has a second (dir, micro-batch)");
        continue;
      }
      if (pair && op.dir == op.dir2 && op.microbatch == op.microbatch2) {
        error(r, k, "backward-after-forward", "a pair cannot overlap the forward and backward of the same chunk");
        continue;
      }
      if (op.kind == OpKind::F || pair) {
        int c = ix.at(op.dir, op.microbatch);
        if (ix.f_pos[c] >= 0)
          error(r, k, "forward-once", "second forward of this chunk (the first is op " + std::to_string(ix.f_pos[c]) + ")");
        else
          ix.f_pos[c] = k;
        peak = std::max(peak, ++live);
      }
      if (op.kind == OpKind::B || op.kind == OpKind::I || pair) {
        int dir = pair ? op.dir2 : op.dir, mb = pair ? op.microbatch2 : op.microbatch;
        int c = ix.at(dir, mb);
        if (ix.b_pos[c] >= 0) {
          error(r, k, "backward-once",
                "second backward of micro-batch " + std::to_string(mb) + " dir " + std::to_string(dir) + " (the first is op " +
                    std::to_string(ix.b_pos[c]) + ")");
          continue;
        }
        if (ix.f_pos[c] < 0)
          error(r, k, "backward-after-forward",
                "backward of micro-batch " + std::to_string(mb) + " dir " + std::to_string(dir) +
                    " runs before its forward " + chunk_name('F', dir, mb));
        ix.b_pos[c] = k;
        live--;
        if (op.kind == OpKind::I) {
          ix.b_is_input[c] = 1;
          deferred.push_back(c);
        }
      }
      if (op.kind == OpKind::W) check_weight(r, k, op, deferred);
    }
    report_.peak_activations[r] = peak;
    for (int d = 0; d < dirs_; ++d) {
      for (int m = 0; m < mbs_; ++m) {
        int c = ix.at(d, m);
        std::string stage = "stage " + std::to_string(p_.stage_of(r, d)) + " (dir " + std::to_string(d) + ")";
        if (ix.f_pos[c] < 0) error(r, -1, "forward-once", stage + " never runs " + chunk_name('F', d, m));
        if (ix.b_pos[c] < 0)
          error(r, -1, "backward-once", stage + " never runs a backward (B, I or FB) of micro-batch " + std::to_string(m));
      }
    }
    for (int c : deferred)
      error(r, ix.b_pos[c], "weight-after-input",
            chunk_name('I', c / mbs_, c % mbs_) + " never gets its " + chunk_name('W', c / mbs_, c % mbs_));
  }

  void check_weight(int r, int k, const Op& op, std::deque<int>& deferred) {
    RankIndex& ix = index_[r];
    int c = ix.at(op.dir, op.microbatch);
    std::string w = chunk_name('W', op.dir, op.microbatch);
    if (ix.w_pos[c] >= 0) {
      error(r, k, "weight-after-input", "second " + w + " (the first is op " + std::to_string(ix.w_pos[c]) + ")");
      return;
    }
    if (ix.b_pos[c] < 0) {
      error(r, k, "weight-after-input", w + " runs before its " + chunk_name('I', op.dir, op.microbatch));
      return;
    }
    if (!ix.b_is_input[c]) {
      error(r, k, "weight-after-input",
            w + ": op " + std::to_string(ix.b_pos[c]) + " was a full backward, there is no weight gradient to defer");
      return;
    }
    ix.w_pos[c] = k;
    auto it = std::find(deferred.begin(), deferred.end(), c);
    if (it != deferred.begin()) {
      int oldest = deferred.front();
      error(r, k, "weight-fifo",
            w + " runs before " + chunk_name('W', oldest / mbs_, oldest % mbs_) + ", whose I was deferred earlier (op " +
                std::to_string(ix.b_pos[oldest]) + ")");
    }
    deferred.erase(it);
  }

  // Runs every rank in program order; an op may start once all the transfers it consumes
  // have been produced. Sends never block. Linear in the number of ops: a blocked rank
  // registers on the one input it lacks and is woken when that input is produced.
  void check_deadlock() {
    const int R = s_.ranks;
    auto key = [&](const Slot& consumer, DataKind kind, int mb) {
      return ((consumer.rank * dirs_ + consumer.dir) * 2 + (kind == DataKind::Gradient)) * mbs_ + mb;
    };
    std::vector<char> produced(static_cast<size_t>(R) * dirs_ * 2 * mbs_, 0);
    std::vector<int> waiter(produced.size(), -1);
    std::vector<int> next(R, 0);
    std::vector<int> ready;
    for (int r = R - 1; r >= 0; --r) ready.push_back(r);
    while (!ready.empty()) {
      int r = ready.back();
      ready.pop_back();
      const auto& ops = s_.ops[r];
      while (next[r] < static_cast<int>(ops.size())) {
        OpIo io = op_io(p_, r, ops[next[r]]);
        bool blocked = false;
        for (int i = 0; i < io.num_inputs && !blocked; ++i) {
          int k = key(io.inputs[i].to, io.inputs[i].kind, io.inputs[i].microbatch);
          if (!produced[k]) waiter[k] = r, blocked = true;
        }
        if (blocked) break;
        for (int i = 0; i < io.num_outputs; ++i) {
          int k = key(io.outputs[i].to, io.outputs[i].kind, io.outputs[i].microbatch);
          produced[k] = 1;
          if (waiter[k] >= 0) ready.push_back(waiter[k]), waiter[k] = -1;
        }
        ++next[r];
      }
    }
    for (int r = 0; r < R; ++r) {
      if (next[r] == static_cast<int>(s_.ops[r].size())) continue;
      OpIo io = op_io(p_, r, s_.ops[r][next[r]]);
      for (int i = 0; i < io.num_inputs; ++i) {
        const Transfer& t = io.inputs[i];
        if (produced[key(t.to, t.kind, t.microbatch)]) continue;
        bool act = t.kind == DataKind::Activation;
        const RankIndex& src = index_[t.from.rank];
        int c = src.at(t.from.dir, t.microbatch);
        int producer = act ? src.f_pos[c] : src.b_pos[c];
        std::string what = std::string(act ? "the activation" : "the gradient") + " of micro-batch " +
                           std::to_string(t.microbatch) + " from rank " + std::to_string(t.from.rank) + " dir " +
                           std::to_string(t.from.dir) + ", made by its op " + std::to_string(producer) + " (" +
                           format_op(s_.ops[t.from.rank][producer]) + ")";
        if (t.from.rank == r)
          what += ", which comes later on this rank";
        else
          what += ", but rank " + std::to_string(t.from.rank) + " is stuck at op " + std::to_string(next[t.from.rank]) +
                  " (" + format_op(s_.ops[t.from.rank][next[t.from.rank]]) + ")";
        error(r, next[r], "deadlock", "waits for " + what);
        break;
      }
    }
  }

  const Schedule& s_;
  const Placement p_;
  const int dirs_, mbs_, max_errors_;
  std::vector<RankIndex> index_;
  ValidationReport report_;
};

}  // namespace

std::string ValidationError::to_string() const {
  std::string where = rank < 0 ? "schedule" : "rank " + std::to_string(rank);
  if (position >= 0) where += ", op " + std::to_string(position) + " (" + op + ")";
  return where + ": " + message + " [" + rule + "]";
}

ValidationReport validate_schedule(const Schedule& schedule, int max_errors) {
  return Checker(schedule, std::max(1, max_errors)).run();
}

void check_schedule(const Schedule& schedule) {
  ValidationReport report = validate_schedule(schedule);
  if (report.ok()) return;
  std::string msg = "invalid " + format_schedule_kind(schedule.kind) + " schedule:";
  for (const auto& e : report.errors) msg += "\n  " + e.to_string();
  throw std::invalid_argument(msg);
}

}  // namespace duet::sched
