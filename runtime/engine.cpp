#include "runtime/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <tuple>
#include <utility>

#include "io/core_wait.h"
#include "kernels/buffer.h"

namespace duet::runtime {

namespace {

// During a step over a device-ordered data plane the stages' forward and input backward end
// without waiting for their kernels: the sends wait for them on the device. Restored after the
// step (evaluation and checkpoints between steps read the stages on the host).
class OutputsOnDevice {
 public:
  OutputsOnDevice(std::vector<RankStage>& stages, bool on) : stages_(stages), on_(on) {
    if (on_)
      for (auto& s : stages_) s.model->set_outputs_read_on_host(false);
  }
  ~OutputsOnDevice() {
    if (on_)
      for (auto& s : stages_) s.model->set_outputs_read_on_host(true);
  }
  OutputsOnDevice(const OutputsOnDevice&) = delete;
  OutputsOnDevice& operator=(const OutputsOnDevice&) = delete;

 private:
  std::vector<RankStage>& stages_;
  bool on_;
};

// At a step's end every stage's last op has finished on the device: the next step's receives
// land in the inboxes its kernels read, and the next stretch's weight copies are cast over the
// ones they used (a step that throws waits too, and swallows a second error: the first is the
// one to report).
class StagesDrained {
 public:
  explicit StagesDrained(std::vector<RankStage>& stages) : stages_(stages) {}
  ~StagesDrained() noexcept(false) {
    for (auto& s : stages_) {
      try {
        s.model->wait_pending();
      } catch (...) {
        if (!std::uncaught_exceptions()) throw;
      }
    }
  }
  StagesDrained(const StagesDrained&) = delete;
  StagesDrained& operator=(const StagesDrained&) = delete;

 private:
  std::vector<RankStage>& stages_;
};

// A step's ops hold the weights fixed — the optimizer updates them after the step — so a
// backend may keep converted copies of them for the step (kernels::Backend::weights_fixed:
// the BF16 table casts each weight once per step): once per distinct backend of the stages.
class WeightsFixed {
 public:
  explicit WeightsFixed(std::vector<RankStage>& stages) {
    std::vector<const kernels::Backend*> seen;
    for (auto& s : stages) {
      const kernels::Backend* b = &s.arena->backend();
      if (std::find(seen.begin(), seen.end(), b) != seen.end()) continue;
      seen.push_back(b);
      held_.push_back(std::make_unique<kernels::WeightsFixedScope>(*b));
    }
  }

 private:
  std::vector<std::unique_ptr<kernels::WeightsFixedScope>> held_;
};

// The GPU time of one op, as an event of the trace's GPU thread of the executor that ran it
// (each executor launches on its own stream: Device, Device2) — CUDA events: its first
// kernel's start to its last one's end, and how long its kernels ran. Nothing on a host
// backend, without a trace, or inside another op's stretch (a deferred weight pass run while
// an op waits is part of that op's).
class DeviceScope {
 public:
  DeviceScope(io::TraceRecorder* trace, const io::TraceOpRef& ref)
      : trace_(trace), backend_(kernels::compute_backend()), ref_(ref) {
    on_ = trace_ && backend_.timing_begin && backend_.timing_begin();
  }
  ~DeviceScope() {
    kernels::DeviceSpan s;
    if (on_ && backend_.timing_end(&s))
      trace_->add(core::trace_op_name(ref_), io::TraceCategory::Compute,
                  t_trace_thread == io::TraceThread::SecondExecutor ? io::TraceThread::Device2 : io::TraceThread::Device,
                  s.t0, s.t1, ref_, 0, s.busy);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  io::TraceRecorder* trace_;
  const kernels::Backend& backend_;
  io::TraceOpRef ref_;
  bool on_ = false;
};

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

// The second executor: one thread for the engine's life. (A thread per step would give a GPU
// backend a new stream, cuBLAS handle and kernel scratch every step — allocations inside the
// step, and handles that are never given back.)
class PipelineEngine::SecondExecutor {
 public:
  SecondExecutor() : thread_([this] { loop(); }) {}
  ~SecondExecutor() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void start(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = std::move(job);
      done_ = false;
    }
    cv_.notify_all();
  }
  void finish() {  // waits for the job
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
  }

 private:
  void loop() {
    t_trace_thread = io::TraceThread::SecondExecutor;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || job_; });
      if (stop_) return;
      auto job = std::move(job_);
      job_ = nullptr;
      lock.unlock();
      try {
        job();
      } catch (...) {
        // As on the main executor: an op that threw left the baton held and its stage busy,
        // so the other executor would wait for ever — end the process with the error.
        std::terminate();
      }
      lock.lock();
      done_ = true;
      cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool done_ = true, stop_ = false;
  std::thread thread_;
};

PipelineEngine::PipelineEngine(const sched::Schedule& schedule, int pp_rank, std::vector<RankStage>& stages,
                               Communicator& pipeline, const EngineOptions& options, Baton& baton,
                               io::TraceRecorder* trace)
    : schedule_(schedule), placement_(schedule.placement()), pp_rank_(pp_rank), stages_(stages), comm_(pipeline),
      opt_(options), baton_(baton), trace_(trace) {
  microbatches_per_dir_ = schedule_.microbatches_per_dir();
  dirs_ = placement_.num_dirs();
  if ((int)stages_.size() != dirs_) throw std::logic_error("PipelineEngine: one stage per direction expected");
  if (!comm_.p2p_matches_tags()) {  // collective over the pipeline group: every member has dirs_
    for (int c = 0; c < 2 * dirs_ * 2; ++c) channels_.push_back(comm_.dup());
    connect_channels();
  }
  if (opt_.overlap) {
    second_ = std::make_unique<SecondExecutor>();
    sends_ = std::make_unique<SendQueue>(comm_, trace_);
    baton_.set_filler([this] { return run_deferred_part(); });
  }
  activation_floats_ = opt_.batch * opt_.seq_len * stages_[0].model->config().d_model;
  stamp_ = opt_.comm_delay_us > 0 ? kStampFloats : 0;  // a modelled latency needs each message's send time
  device_ordered_ = !channels_.empty() && !stamp_ && stages_[0].arena->backend().mark_record &&
                    std::all_of(channels_.begin(), channels_.end(), [](const auto& c) { return c->orders_sends_by_device(); });
  inbox_.assign(2 * dirs_ * microbatches_per_dir_, kernels::Buffer<float>(activation_floats_ + stamp_));
  if (stamp_) outbox_.assign(inbox_.size(), kernels::Buffer<float>(activation_floats_ + stamp_));
  recv_.resize(inbox_.size());
  last_backward_op_.assign(dirs_, -1);
  const auto& ops = schedule_.ops[pp_rank_];
  for (size_t k = 0; k < ops.size(); ++k) {
    const auto& op = ops[k];
    if (op.kind == sched::OpKind::FB) last_backward_op_[op.dir2] = (int)k;
    else if (op.kind != sched::OpKind::F) last_backward_op_[op.dir] = (int)k;
  }
}

int PipelineEngine::channel_index(Kind k, int to_dir, int from_rank) const {
  return (k * dirs_ + to_dir) * 2 + from_rank % 2;
}

Communicator& PipelineEngine::channel(Kind k, int to_dir, int from_rank) {
  return *channels_[channel_index(k, to_dir, from_rank)];
}

void PipelineEngine::connect_channels() {
  // NCCL connects two ranks on their first point-to-point, and connecting takes both sides:
  // a receive posted at a step's start would wait inside its call for a peer that is still
  // computing. So each link is connected here by one message, channel after channel in the
  // same order on every rank (a rank's channels: at most one peer each) — a wait at channel c
  // is always for a peer still at a channel before c, so every rank gets through.
  struct Link {
    int channel, peer;
    bool send;
  };
  std::vector<Link> links;
  for (auto& s : stages_)
    for (Kind k : {kActivation, kGradient}) {
      const sched::Slot from = k == kActivation ? placement_.prev(pp_rank_, s.dir) : placement_.next(pp_rank_, s.dir);
      if (from.valid() && from.rank != pp_rank_) links.push_back({channel_index(k, s.dir, from.rank), from.rank, false});
      const sched::Slot to = k == kActivation ? placement_.next(pp_rank_, s.dir) : placement_.prev(pp_rank_, s.dir);
      if (to.valid() && to.rank != pp_rank_) links.push_back({channel_index(k, to.dir, pp_rank_), to.rank, true});
    }
  std::sort(links.begin(), links.end(), [](const Link& a, const Link& b) {
    return std::tie(a.channel, a.peer, a.send) < std::tie(b.channel, b.peer, b.send);
  });
  float token = 0;
  for (const Link& l : links) {
    Request r = l.send ? channels_[l.channel]->isend({&token, 1}, l.peer, 0)
                       : channels_[l.channel]->irecv({&token, 1}, l.peer, 0);
    wait(r);
  }
}

std::vector<int> PipelineEngine::send_order(Kind k, int rank, int dir) const {
  std::vector<int> mbs;
  for (const sched::Op& op : schedule_.ops[rank]) {
    if (k == kActivation && (op.kind == sched::OpKind::F || op.kind == sched::OpKind::FB) && op.dir == dir)
      mbs.push_back(op.microbatch);
    if (k == kGradient) {
      if ((op.kind == sched::OpKind::B || op.kind == sched::OpKind::I) && op.dir == dir) mbs.push_back(op.microbatch);
      if (op.kind == sched::OpKind::FB && op.dir2 == dir) mbs.push_back(op.microbatch2);
    }
  }
  return mbs;
}

PipelineEngine::~PipelineEngine() = default;

void PipelineEngine::post_receives() {
  if (!channels_.empty()) {
    for (auto& s : stages_)
      for (Kind k : {kActivation, kGradient}) {
        const sched::Slot from = k == kActivation ? placement_.prev(pp_rank_, s.dir) : placement_.next(pp_rank_, s.dir);
        if (!from.valid() || from.rank == pp_rank_) continue;
        Communicator& c = channel(k, s.dir, from.rank);
        for (int mb : send_order(k, from.rank, from.dir)) {
          const int i = box_index(k, s.dir, mb);
          recv_[i] = c.irecv(inbox_[i], from.rank, i);
        }
      }
    return;
  }
  for (auto& s : stages_)
    for (int mb = 0; mb < microbatches_per_dir_; ++mb) {
      const sched::Slot prev = placement_.prev(pp_rank_, s.dir), next = placement_.next(pp_rank_, s.dir);
      // The tag is the inbox index: unique per (kind, direction, micro-batch) within a step.
      if (prev.valid() && prev.rank != pp_rank_) {
        const int i = box_index(kActivation, s.dir, mb);
        recv_[i] = comm_.irecv(inbox_[i], prev.rank, i);
      }
      if (next.valid() && next.rank != pp_rank_) {
        const int i = box_index(kGradient, s.dir, mb);
        recv_[i] = comm_.irecv(inbox_[i], next.rank, i);
      }
    }
}

StepStats PipelineEngine::run_step(int step, const std::function<void(int)>& stage_done) {
  if (trace_) trace_->set_step(step);
  const long sends_before = p2p_sends_;
  const io::ThreadTimes times0 = io::thread_times();
  ops_done_ = 0;
  StepStats st;
  WeightsFixed fixed(stages_);
  OutputsOnDevice on_device(stages_, device_ordered_);
  StagesDrained drained(stages_);  // destroyed first: waits before the other two end
  mb_loss_.assign((size_t)dirs_ * microbatches_per_dir_, 0.0);
  post_receives();
  if (opt_.overlap) {
    run_overlapped(stage_done, st);
    baton_.acquire();
    drain_deferred(-1);
    baton_.release();
  } else {
    const auto& ops = schedule_.ops[pp_rank_];
    for (size_t k = 0; k < ops.size(); ++k) {
      run_op(ops[k], st);
      for (int d = 0; d < dirs_; ++d)
        if (last_backward_op_[d] == (int)k && stage_done) stage_done(d);
    }
  }
  for (int d = 0; d < dirs_; ++d)
    for (int mb = 0; mb < microbatches_per_dir_; ++mb) {
      const double loss = mb_loss_[(size_t)d * microbatches_per_dir_ + mb];
      if (!std::isfinite(loss) && st.nonfinite_mb < 0) st.nonfinite_dir = d, st.nonfinite_mb = mb;
      st.loss_sum += loss;
    }
  const auto t0 = Clock::now();
  if (sends_) sends_->wait_all();
  st.wait_s += since(t0);
  st.messages = p2p_sends_ - sends_before;
  const io::ThreadTimes times1 = io::thread_times();
  st.core_wait_s += times1.core_wait_s - times0.core_wait_s;
  st.cpu_s += times1.on_cpu_s - times0.on_cpu_s;
  return st;
}

void PipelineEngine::run_op(const sched::Op& op, StepStats& st) {
  struct Done {
    PipelineEngine* e;
    ~Done() {
      if (e->opt_.op_done) e->opt_.op_done(++e->ops_done_);
    }
  } done{this};
  switch (op.kind) {
    case sched::OpKind::F: forward(stages_[op.dir], op.microbatch, st); break;
    case sched::OpKind::B: backward(stages_[op.dir], op.microbatch, true, true, st); break;
    case sched::OpKind::I: backward(stages_[op.dir], op.microbatch, true, false, st); break;
    case sched::OpKind::W: backward(stages_[op.dir], op.microbatch, false, true, st); break;
    case sched::OpKind::FB:
      forward(stages_[op.dir], op.microbatch, st);
      backward(stages_[op.dir2], op.microbatch2, true, true, st);
      break;
  }
}

void PipelineEngine::run_overlapped(const std::function<void(int)>& stage_done, StepStats& st) {
  // Two executors (this thread and the engine's second) take the rank's ops in schedule order, an F&B
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
    const sched::Slot from =
        op.kind == sched::OpKind::F ? placement_.prev(pp_rank_, op.dir) : placement_.next(pp_rank_, op.dir);
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
        if (stage_done) stage_done(t.op.dir);
      }
      baton_.release();
      lock.lock();
      busy[t.op.dir] = 0;
      cv.notify_all();
    }
  };
  StepStats other;
  second_->start([&] {
    const io::ThreadTimes times0 = io::thread_times();
    executor(other);
    const io::ThreadTimes times1 = io::thread_times();
    other.core_wait_s = times1.core_wait_s - times0.core_wait_s, other.cpu_s = times1.on_cpu_s - times0.on_cpu_s;
  });
  try {
    executor(st);
  } catch (...) {
    // The other executor may wait for this one's ops for ever, and its job refers to this
    // frame: end the process with the error (the supervisor restarts the job), as before.
    std::terminate();
  }
  second_->finish();
  st.wait_s += other.wait_s, st.core_wait_s += other.core_wait_s;  // losses: mb_loss_
  st.cpu_s += other.cpu_s;
  st.executors = 2;
}

void PipelineEngine::wait_input(Kind k, int dir, int mb, StepStats& st) {
  Request& r = recv_[box_index(k, dir, mb)];
  if (!r.pending()) return;  // local producer, already delivered
  const auto t0 = Clock::now();
  {
    Baton* baton = opt_.overlap ? &baton_ : nullptr;
    BatonRelease handover(baton);  // destroyed last: the event ends before the baton returns
    io::TraceScope event(trace_, io::TraceCategory::Idle,
                         std::string(k == kActivation ? "wait activation " : "wait gradient ") + std::to_string(dir) +
                             ":" + std::to_string(mb),
                         t_trace_thread);
    wait_request(baton, r);
    if (stamp_) {  // usable comm_delay_us after it was sent
      const auto& box = inbox(k, dir, mb);
      wait_until(baton, read_stamp(box.data() + box.size() - stamp_) + std::chrono::microseconds(opt_.comm_delay_us));
    }
  }
  st.wait_s += since(t0);
}

void PipelineEngine::deliver(Kind k, const float* data, int from_dir, int mb) {
  const sched::Slot to = k == kActivation ? placement_.next(pp_rank_, from_dir) : placement_.prev(pp_rank_, from_dir);
  const int count = activation_floats_;
  if (to.rank == pp_rank_) {  // DualPipeV's turn: the consumer is this rank's other stage
    // The host copies: the producer's kernels (this thread's stream) must be done.
    if (device_ordered_) stages_[from_dir].arena->backend().synchronize();
    std::memcpy(inbox(k, to.dir, mb).data(), data, sizeof(float) * count);
    return;
  }
  ++p2p_sends_;
  const int tag = box_index(k, to.dir, mb);
  if (stamp_) {
    auto& out = outbox_[tag];
    std::memcpy(out.data(), data, sizeof(float) * count);
    write_stamp(out.data() + count);
    data = out.data();
  }
  Communicator& via = channels_.empty() ? comm_ : channel(k, to.dir, pp_rank_);
  if (sends_) {
    sends_->send(data, count + stamp_, to.rank, tag, &via);
    return;
  }
  // Overlap off: the transfer is waited on at once (its modelled latency included).
  if (opt_.comm_delay_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(opt_.comm_delay_us));
  Request r = device_ordered_ ? via.isend_after({data, (size_t)count}, to.rank, tag, via.mark_device_work())
                              : via.isend({data, (size_t)(count + stamp_)}, to.rank, tag);
  wait(r);
}

void PipelineEngine::forward(RankStage& s, int mb, StepStats& st) {
  if (!s.first) wait_input(kActivation, s.dir, mb, st);
  const io::TraceOpRef ref{core::TraceOp::F, s.dir, mb};
  DeviceScope device(trace_, ref);  // first: its waits for the GPU stay out of the op's host time
  io::TraceScope event(trace_, io::TraceCategory::Compute, core::trace_op_name(ref), t_trace_thread, ref);
  const model::MicroBatch m{opt_.batch, opt_.seq_len, s.first ? s.tokens[mb].data() : nullptr,
                            s.last ? s.targets[mb].data() : nullptr, true};
  auto& a = s.activations[mb];
  s.model->forward(a, m, s.first ? nullptr : inbox(kActivation, s.dir, mb).data());
  if (s.last) {
    double loss = s.model->loss_sum(a);
    int poisoned = mb;
    if (poison_mb_.load() == mb && poison_mb_.compare_exchange_strong(poisoned, -1))
      loss = std::numeric_limits<double>::quiet_NaN();
    mb_loss_[(size_t)s.dir * microbatches_per_dir_ + mb] = loss;  // one forward per slot
  } else
    deliver(kActivation, s.model->output(a), s.dir, mb);
}

void PipelineEngine::backward(RankStage& s, int mb, bool input, bool weight, StepStats& st) {
  auto& a = s.activations[mb];
  if (input && !s.last) wait_input(kGradient, s.dir, mb, st);
  if (!input) drain_deferred(s.dir);  // a scheduled weight pass runs after the deferred ones: FIFO
  const bool defer = opt_.overlap && input && weight;
  const io::TraceOpRef ref{!input ? core::TraceOp::W : weight && !defer ? core::TraceOp::B : core::TraceOp::I, s.dir, mb};
  DeviceScope device(trace_, ref);  // first: its waits for the GPU stay out of the op's host time
  io::TraceScope event(trace_, io::TraceCategory::Compute, core::trace_op_name(ref), t_trace_thread, ref);
  if (input) {
    s.model->backward_input(a, s.last ? nullptr : inbox(kGradient, s.dir, mb).data(), opt_.loss_scale);
    // The previous stage needs only the input gradient: send it before the weight part.
    if (!s.first) deliver(kGradient, s.model->input_grad(a), s.dir, mb);
  }
  if (defer) {
    for (int part = 0; part < s.model->weight_parts(); ++part) deferred_.push_back({s.dir, mb, part});
  } else if (weight) {
    s.model->backward_weight(a);
  }
}

bool PipelineEngine::run_deferred_part() {
  if (deferred_.empty()) return false;
  const WeightPart w = deferred_.front();
  deferred_.pop_front();
  RankStage& s = stages_[w.dir];
  const io::TraceOpRef ref{core::TraceOp::W, w.dir, w.mb};
  DeviceScope device(trace_, ref);
  io::TraceScope event(trace_, io::TraceCategory::Compute, core::trace_op_name(ref), io::TraceThread::DeferredWeight, ref);
  s.model->backward_weight_part(s.activations[w.mb], w.part);
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

}  // namespace duet::runtime
