#include "runtime/engine.h"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "runtime/train_setup.h"
#include "scheduler/placement.h"

namespace duet::runtime {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }


}  // namespace


sched::ScheduleKind schedule_for(const io::RunConfig& cfg) {
  return core::effective_schedule(cfg.parallel.schedule, cfg.parallel.pp);
}

int microbatches_per_pipeline(const io::RunConfig& cfg) {
  return core::microbatches_per_pipeline(cfg.parallel.pp * cfg.parallel.dp, io::configured_layout(cfg),
                                         io::layout_rules(cfg));
}

PipelineEngine::PipelineEngine(const io::RunConfig& cfg, const core::Topology& topo, int world_rank,
                               MPI_Comm pipeline_comm, MPI_Comm expert_comm, const io::TokenDataset& data)
    : cfg_(cfg), mcfg_(to_model_config(cfg)), data_(data), comm_(pipeline_comm) {
  const auto c = topo.coords(world_rank);
  pp_rank_ = c.pp_rank, dp_rank_ = c.dp_rank;
  microbatches_ = microbatches_per_pipeline(cfg);
  schedule_ = sched::make_schedule(schedule_for(cfg), cfg.parallel.pp, microbatches_);
  const sched::Placement pl = schedule_.placement();
  overlap_ = cfg.runtime.overlap;
  delay_us_ = cfg.runtime.comm_delay_us;
  if (cfg.runtime.trace) trace_ = std::make_unique<io::TraceRecorder>();
  if (overlap_) {
    sends_ = std::make_unique<SendQueue>(comm_, trace_.get());
    baton_.set_filler([this] { return run_deferred_part(); });
  }
  mbpd_ = schedule_.microbatches_per_dir();
  dirs_ = pl.num_dirs();
  batch_ = cfg.train.micro_batch_size, seq_len_ = cfg.train.seq_len;
  loss_scale_ = (float)(1.0 / ((double)cfg.train.global_batch * seq_len_));
  // More stages than layers is allowed (DualPipeV at PP 4 has 8 stages): the extra stages
  // hold no layer and pass activations through, the last still holds the head.
  auto ranges = model::split_layers(mcfg_, pl.num_stages());
  if (topo.ep() > 1) {
    if (mcfg_.experts % topo.ep() != 0)
      throw std::invalid_argument("model.moe.experts (" + std::to_string(mcfg_.experts) +
                                  ") must be a multiple of parallel.ep (" + std::to_string(topo.ep()) + ")");
    for (int d = 0; d < pl.num_dirs(); ++d)
      exchanges_.push_back(std::make_unique<MpiExpertExchange>(expert_comm, mcfg_.experts, overlap_ ? &baton_ : nullptr,
                                                               delay_us_, trace_.get()));
    const int El = mcfg_.experts / topo.ep();
    for (auto& r : ranges) r.expert_begin = c.ep_rank * El, r.expert_end = (c.ep_rank + 1) * El;
  }
  slot_index_.assign(dirs_, -1);
  for (int d = 0; d < dirs_; ++d) {
    StageSlot s;
    s.dir = d, s.stage = pl.stage_of(pp_rank_, d), s.pipeline = pl.pipeline_of(d);
    s.first = pl.is_first_stage(pp_rank_, d), s.last = pl.is_last_stage(pp_rank_, d);
    s.arena = std::make_unique<model::ParamArena>(model::stage_tensor_specs(mcfg_, ranges[s.stage]));
    model::init_parameters(*s.arena, mcfg_, cfg.train.seed);
    s.stage_model = std::make_unique<model::Stage>(mcfg_, ranges[s.stage], *s.arena,
                                                   exchanges_.empty() ? nullptr : exchanges_[d].get());
    s.acts.resize(mbpd_);
    slot_index_[d] = (int)slots_.size();
    slots_.push_back(std::move(s));
  }
  const size_t n = (size_t)batch_ * seq_len_ * mcfg_.d_model;
  stamp_ = delay_us_ > 0 ? kStampFloats : 0;  // a modelled latency needs each message's send time
  inbox_.assign(2 * dirs_ * mbpd_, std::vector<float>(n + stamp_));
  if (stamp_) outbox_.assign(inbox_.size(), std::vector<float>(n + stamp_));
  recv_req_.assign(inbox_.size(), MPI_REQUEST_NULL);
  tokens_.resize(dirs_ * mbpd_), targets_.resize(dirs_ * mbpd_);
  last_backward_op_.assign(dirs_, -1);
  const auto& ops = schedule_.ops[pp_rank_];
  for (size_t k = 0; k < ops.size(); ++k) {
    const auto& op = ops[k];
    if (op.kind == sched::OpKind::FB) last_backward_op_[op.dir2] = (int)k;
    else if (op.kind != sched::OpKind::F) last_backward_op_[op.dir] = (int)k;
  }
}

void PipelineEngine::load_microbatch(int step, StageSlot& s, int mb) {
  if (!s.first && !s.last) return;
  const int T = seq_len_;
  // Sequence numbers are global (step-major, then replica, then micro-batch), so every layout
  // trains on the same sequences in the same step.
  const uint64_t local = (uint64_t)s.pipeline * mbpd_ + mb;
  const uint64_t first = (uint64_t)(step - 1) * cfg_.train.global_batch +
                         ((uint64_t)dp_rank_ * microbatches_ + local) * batch_;
  window_.resize((size_t)batch_ * (T + 1));
  for (int j = 0; j < batch_; ++j) data_.train_sequence(cfg_.train.seed, first + j, T, window_.data() + (size_t)j * (T + 1));
  auto& tok = tokens_[s.dir * mbpd_ + mb];
  auto& tgt = targets_[s.dir * mbpd_ + mb];
  tok.resize((size_t)batch_ * T), tgt.resize((size_t)batch_ * T);
  for (int j = 0; j < batch_; ++j)
    for (int t = 0; t < T; ++t) {
      tok[(size_t)j * T + t] = window_[(size_t)j * (T + 1) + t];
      tgt[(size_t)j * T + t] = window_[(size_t)j * (T + 1) + t + 1];
    }
}

StepStats PipelineEngine::run_step(int step, const std::function<void(int)>& slot_done) {
  step_ = step;
  if (trace_) trace_->set_step(step);
  const long messages_before = p2p_sends_ + expert_collectives();
  StepStats st;
  const sched::Placement pl = schedule_.placement();
  const int count = batch_ * seq_len_ * mcfg_.d_model;
  for (auto& s : slots_) {
    for (int mb = 0; mb < mbpd_; ++mb) {
      load_microbatch(step, s, mb);
      const sched::Slot prev = pl.prev(pp_rank_, s.dir), next = pl.next(pp_rank_, s.dir);
      if (prev.valid() && prev.rank != pp_rank_) {
        const int i = (kActivation * dirs_ + s.dir) * mbpd_ + mb;
        MPI_CHECK(MPI_Irecv(inbox_[i].data(), count + stamp_, MPI_FLOAT, prev.rank, tag(kActivation, s.dir, mb), comm_,
                            &recv_req_[i]));
      }
      if (next.valid() && next.rank != pp_rank_) {
        const int i = (kGradient * dirs_ + s.dir) * mbpd_ + mb;
        MPI_CHECK(MPI_Irecv(inbox_[i].data(), count + stamp_, MPI_FLOAT, next.rank, tag(kGradient, s.dir, mb), comm_,
                            &recv_req_[i]));
      }
    }
  }
  deferred_compute_s_ = 0;
  if (overlap_) {
    run_overlapped(slot_done, st);
    baton_.acquire();
    drain_deferred(-1);
    baton_.release();
  } else {
    const auto& ops = schedule_.ops[pp_rank_];
    for (size_t k = 0; k < ops.size(); ++k) {
      run_op(ops[k], st);
      for (int d = 0; d < dirs_; ++d)
        if (last_backward_op_[d] == (int)k && slot_done) slot_done(slot_index_[d]);
    }
  }
  st.compute_s += deferred_compute_s_;
  const auto t0 = Clock::now();
  if (sends_) sends_->wait_all();
  wait_quietly((int)send_req_.size(), send_req_.data());
  send_req_.clear();
  st.wait_s += since(t0);
  st.messages = p2p_sends_ + expert_collectives() - messages_before;
  return st;
}

void PipelineEngine::run_op(const sched::Op& op, StepStats& st) {
  switch (op.kind) {
    case sched::OpKind::F: forward(slot(op.dir), op.microbatch, st); break;
    case sched::OpKind::B: backward(slot(op.dir), op.microbatch, true, true, st); break;
    case sched::OpKind::I: backward(slot(op.dir), op.microbatch, true, false, st); break;
    case sched::OpKind::W: backward(slot(op.dir), op.microbatch, false, true, st); break;
    case sched::OpKind::FB:
      forward(slot(op.dir), op.microbatch, st);
      backward(slot(op.dir2), op.microbatch2, true, true, st);
      break;
  }
}

void PipelineEngine::run_overlapped(const std::function<void(int)>& slot_done, StepStats& st) {
  // Two executors (this thread and a helper) take the rank's ops in schedule order, an F&B
  // pair as its two halves (backward first). An op starts when an executor is free, no op of
  // its stage is running, and — at DualPipeV's turn, where one of this rank's stages feeds
  // the other without a message — its producer's stage is idle. So a pair's halves run
  // together, and so do consecutive ops of different stages in warm-up and cool-down, and
  // the next op starts as soon as one half finishes. Each stage still runs its ops in
  // schedule order, so every result is what the sequential order computes, bit for bit.
  struct Task {
    sched::Op op;  // F, B, I or W
    int index;     // in the schedule's op list
  };
  const sched::Placement pl = schedule_.placement();
  std::vector<Task> tasks;
  const auto& ops = schedule_.ops[pp_rank_];
  for (int k = 0; k < (int)ops.size(); ++k) {
    const sched::Op& op = ops[k];
    if (op.kind == sched::OpKind::FB) {
      tasks.push_back({{sched::OpKind::B, op.dir2, op.microbatch2}, k});
      tasks.push_back({{sched::OpKind::F, op.dir, op.microbatch}, k});
    } else {
      tasks.push_back({op, k});
    }
  }
  auto producer_dir = [&](const sched::Op& op) {  // the local stage feeding op, or -1
    if (op.kind == sched::OpKind::W) return -1;
    const sched::Slot from = op.kind == sched::OpKind::F ? pl.prev(pp_rank_, op.dir) : pl.next(pp_rank_, op.dir);
    return from.valid() && from.rank == pp_rank_ ? from.dir : -1;
  };
  std::mutex mu;
  std::condition_variable cv;
  size_t next = 0;
  std::vector<char> busy(dirs_, 0);
  auto startable = [&](const Task& t) {
    const int from = producer_dir(t.op);
    return !busy[t.op.dir] && (from < 0 || !busy[from]);
  };
  auto executor = [&](StepStats& s) {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return next == tasks.size() || startable(tasks[next]); });
      if (next == tasks.size()) return;
      const Task t = tasks[next++];
      busy[t.op.dir] = 1;
      cv.notify_all();  // the next op may be startable for the other executor
      lock.unlock();
      baton_.acquire();
      run_op(t.op, s);
      if (t.op.kind != sched::OpKind::F && last_backward_op_[t.op.dir] == t.index) {
        drain_deferred(t.op.dir);  // the stage's gradients are final only when its weight passes ran
        if (slot_done) slot_done(slot_index_[t.op.dir]);
      }
      baton_.release();
      lock.lock();
      busy[t.op.dir] = 0;
      cv.notify_all();
    }
  };
  StepStats other;
  std::thread helper([&] {
    t_trace_thread = io::TraceThread::SecondExecutor;
    executor(other);
  });
  executor(st);
  helper.join();
  st.loss_sum += other.loss_sum, st.compute_s += other.compute_s, st.wait_s += other.wait_s;
  st.executors = 2;
}

void PipelineEngine::wait_input(Kind k, int dir, int mb, StepStats& st) {
  MPI_Request& r = recv_req_[(k * dirs_ + dir) * mbpd_ + mb];
  if (r == MPI_REQUEST_NULL) return;  // local producer, already delivered
  const auto t0 = Clock::now();
  {
    Baton* baton = overlap_ ? &baton_ : nullptr;
    BatonRelease handover(baton);  // destroyed last: the event ends before the baton returns
    io::TraceScope event(trace_.get(), io::TraceCategory::Idle,
                         std::string(k == kActivation ? "wait activation " : "wait gradient ") + std::to_string(dir) +
                             ":" + std::to_string(mb),
                         t_trace_thread);
    wait_requests(baton, 1, &r);
    if (stamp_) {  // usable comm_delay_us after it was sent
      const auto& box = inbox(k, dir, mb);
      wait_until(baton, read_stamp(box.data() + box.size() - stamp_) + std::chrono::microseconds(delay_us_));
    }
  }
  st.wait_s += since(t0);
}

void PipelineEngine::deliver(Kind k, const float* data, int from_dir, int mb) {
  const sched::Placement pl = schedule_.placement();
  const sched::Slot to = k == kActivation ? pl.next(pp_rank_, from_dir) : pl.prev(pp_rank_, from_dir);
  const int count = batch_ * seq_len_ * mcfg_.d_model;
  if (to.rank == pp_rank_) {  // DualPipeV's turn: the consumer is this rank's other stage
    std::memcpy(inbox(k, to.dir, mb).data(), data, sizeof(float) * count);
    return;
  }
  ++p2p_sends_;
  if (stamp_) {
    auto& out = outbox_[(k * dirs_ + to.dir) * mbpd_ + mb];
    std::memcpy(out.data(), data, sizeof(float) * count);
    write_stamp(out.data() + count);
    data = out.data();
  }
  if (sends_) {
    sends_->send(data, count + stamp_, to.rank, tag(k, to.dir, mb));
    return;
  }
  // Overlap off: the transfer is waited on at once (its modelled latency included).
  if (delay_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(delay_us_));
  MPI_CHECK(MPI_Send(data, count + stamp_, MPI_FLOAT, to.rank, tag(k, to.dir, mb), comm_));
}

void PipelineEngine::forward(StageSlot& s, int mb, StepStats& st) {
  if (!s.first) wait_input(kActivation, s.dir, mb, st);
  const auto t0 = Clock::now();
  const io::TraceOpRef ref{core::TraceOp::F, s.dir, mb};
  io::TraceScope event(trace_.get(), io::TraceCategory::Compute, core::trace_op_name(ref), t_trace_thread, ref);
  const model::MicroBatch m{batch_, seq_len_, s.first ? tokens_[s.dir * mbpd_ + mb].data() : nullptr,
                            s.last ? targets_[s.dir * mbpd_ + mb].data() : nullptr, true};
  auto& a = s.acts[mb];
  s.stage_model->forward(a, m, s.first ? nullptr : inbox(kActivation, s.dir, mb).data());
  st.compute_s += since(t0);
  if (s.last)
    st.loss_sum += s.stage_model->loss_sum(a);
  else
    deliver(kActivation, s.stage_model->output(a), s.dir, mb);
}

void PipelineEngine::backward(StageSlot& s, int mb, bool input, bool weight, StepStats& st) {
  auto& a = s.acts[mb];
  if (input && !s.last) wait_input(kGradient, s.dir, mb, st);
  if (!input) drain_deferred(s.dir);  // a scheduled weight pass runs after the deferred ones: FIFO
  const bool defer = overlap_ && input && weight;
  const auto t0 = Clock::now();
  const io::TraceOpRef ref{!input ? core::TraceOp::W : weight && !defer ? core::TraceOp::B : core::TraceOp::I, s.dir, mb};
  io::TraceScope event(trace_.get(), io::TraceCategory::Compute, core::trace_op_name(ref), t_trace_thread, ref);
  if (input) {
    s.stage_model->backward_input(a, s.last ? nullptr : inbox(kGradient, s.dir, mb).data(), loss_scale_);
    // The previous stage needs only the input gradient: send it before the weight part.
    if (!s.first) deliver(kGradient, s.stage_model->input_grad(a), s.dir, mb);
  }
  if (defer) {
    for (int part = 0; part < s.stage_model->weight_parts(); ++part) deferred_.push_back({s.dir, mb, part});
  } else if (weight) {
    s.stage_model->backward_weight(a);
  }
  st.compute_s += since(t0);
}

bool PipelineEngine::run_deferred_part() {
  if (deferred_.empty()) return false;
  const WeightPart w = deferred_.front();
  deferred_.pop_front();
  StageSlot& s = slot(w.dir);
  const auto t0 = Clock::now();
  {
    const io::TraceOpRef ref{core::TraceOp::W, w.dir, w.mb};
    io::TraceScope event(trace_.get(), io::TraceCategory::Compute, core::trace_op_name(ref),
                         io::TraceThread::DeferredWeight, ref);
    s.stage_model->backward_weight_part(s.acts[w.mb], w.part);
  }
  deferred_compute_s_ += since(t0);
  return true;
}

void PipelineEngine::drain_deferred(int dir) {
  auto pending = [&] {
    for (const auto& w : deferred_)
      if (dir < 0 || w.dir == dir) return true;
    return false;
  };
  while (pending()) run_deferred_part();
}

double PipelineEngine::eval_loss_sum(int first, int count) {
  const sched::Placement pl = schedule_.placement();
  const int T = seq_len_, n = batch_ * T * mcfg_.d_model;
  const int eval_tag = 2 * dirs_ * mbpd_ + 1;  // above every step tag
  std::vector<float> in(n), carry;
  std::vector<int32_t> tok((size_t)batch_ * T), tgt((size_t)batch_ * T);
  // The all-to-alls hand the baton over, so this thread must hold it while it computes.
  if (overlap_) baton_.acquire();
  struct Release {
    Baton* b;
    ~Release() {
      if (b) b->release();
    }
  } release{overlap_ ? &baton_ : nullptr};
  double sum = 0;
  for (int seq = first; seq < first + count; seq += batch_) {
    for (int j = 0; j < batch_; ++j) {
      window_.resize(T + 1);
      data_.val_sequence(seq + j, T, window_.data());
      for (int t = 0; t < T; ++t) tok[(size_t)j * T + t] = window_[t], tgt[(size_t)j * T + t] = window_[t + 1];
    }
    const float* local = nullptr;  // output of this rank's previous stage, if it was local
    for (int st = 0; st < pl.num_stages(); ++st) {
      const sched::Slot me = pl.slot_of(0, st);
      if (me.rank != pp_rank_) continue;
      StageSlot& s = slot(me.dir);
      const sched::Slot prev = pl.prev(pp_rank_, me.dir), next = pl.next(pp_rank_, me.dir);
      if (prev.valid() && prev.rank != pp_rank_)
        MPI_CHECK(MPI_Recv(in.data(), n, MPI_FLOAT, prev.rank, eval_tag, comm_, MPI_STATUS_IGNORE));
      else if (prev.valid())
        std::memcpy(in.data(), local, sizeof(float) * n);
      auto& a = s.acts[0];
      s.stage_model->forward(a, {batch_, T, tok.data(), tgt.data(), false}, s.first ? nullptr : in.data());
      if (s.last) {
        sum += s.stage_model->loss_sum(a);
      } else if (next.rank != pp_rank_) {
        MPI_CHECK(MPI_Send(s.stage_model->output(a), n, MPI_FLOAT, next.rank, eval_tag, comm_));
      } else {
        carry.assign(s.stage_model->output(a), s.stage_model->output(a) + n);
        local = carry.data();
      }
    }
  }
  return sum;
}

}  // namespace duet::runtime
