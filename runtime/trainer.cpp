#include "runtime/trainer.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <limits>
#include <utility>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/fence.h"
#include "io/data.h"
#include "io/fault_plan.h"
#include "io/run_dir.h"
#include "io/run_records.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/gemm.h"
#include "model/optimizer.h"
#include "runtime/batches.h"
#include "runtime/checkpointing.h"
#include "runtime/engine.h"
#include "runtime/evaluation.h"
#include "runtime/expert_balance.h"
#include "runtime/expert_exchange.h"
#include "runtime/memory_estimate.h"
#include "runtime/memory_snapshots.h"
#include "runtime/process_groups.h"
#include "runtime/stages.h"
#include "runtime/supervisor_link.h"
#include "runtime/term_stop.h"
#include "kernels/buffer.h"
#include "runtime/train_setup.h"
#include "runtime/zero.h"

namespace duet::runtime {

namespace {

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Fault injection: flips one byte in the middle of rank 0's shard of the newest committed
// checkpoint, as a failing disk would; verification on resume must reject it.
void damage_newest_checkpoint(const std::string& dir, io::RunLog& log) {
  const auto all = ckpt::list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (!it->committed) continue;
    const std::string shard = it->path + "/shard-00000.h5";
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    if (!f) continue;
    const auto mid = (std::streamoff)(std::filesystem::file_size(shard) / 2);
    char c = 0;
    f.seekg(mid);
    f.read(&c, 1);
    c = (char)~c;
    f.seekp(mid);
    f.write(&c, 1);
    log.print("fault injection: damaged " + shard);
    return;
  }
}

// The log's "N compute threads per rank": what a rank computes on, which is at most the CPUs it
// may run on (a rank bound to a core has one, whatever runtime.threads asks).
std::string compute_threads_text(int asked) {
  const int cpus = cpu::usable_cpus();
  if (asked <= cpus) return std::to_string(asked) + (asked == 1 ? " compute thread" : " compute threads") + " per rank";
  return std::to_string(cpus) + (cpus == 1 ? " compute thread" : " compute threads") + " per rank (" +
         std::to_string(asked) + " asked; a rank may run on " + std::to_string(cpus) + (cpus == 1 ? " CPU)" : " CPUs)");
}

}  // namespace

TrainSummary train(const io::RunConfig& cfg, const std::string& run_dir, io::RunLog& log,
                   std::unique_ptr<Communicator> world_comm, const kernels::Backend* backend_override,
                   const DataPlane& data_plane) {
  io::require_trainable(cfg);  // e.g. MLA attention is simulated, not trained, on CPU
  const int rank = world_comm->rank(), world = world_comm->size();
  const core::Topology topo(world, cfg.parallel.pp, cfg.parallel.dp, cfg.parallel.ep);
  const auto coords = topo.coords(rank);
  const auto mcfg = to_model_config(cfg);
  const auto ocfg = to_optimizer_config(cfg);
  const int threads = compute_threads(cfg, local_ranks());
  cpu::set_gemm_threads(threads);
  // runtime.device: every arena and activation buffer of this process comes from its backend.
  const kernels::Backend& backend = backend_override ? *backend_override : backend_for(cfg);
  kernels::set_compute_backend(backend);

  const int microbatches = microbatches_per_pipeline(cfg);
  const sched::Schedule schedule = sched::make_schedule(schedule_for(cfg), cfg.parallel.pp, microbatches);
  const sched::Placement placement = schedule.placement();
  std::vector<int> stage_of_dir;
  for (int d = 0; d < placement.num_dirs(); ++d) stage_of_dir.push_back(placement.stage_of(coords.pp_rank, d));
  ProcessGroups groups = make_process_groups(std::move(world_comm), topo, schedule.kind, stage_of_dir,
                                             data_plane ? data_plane : data_plane_for(cfg));

  // What the rank's threads share: the compute baton (overlap) and the trace.
  Baton baton;
  // Which start of this run directory this is (rank 0 reads metrics.jsonl): names the trace
  // files and the resume record (io/run_records.h).
  const int attempt =
      groups.world->allreduce<int32_t>(rank == 0 ? io::next_attempt(run_dir + "/metrics.jsonl") : 0, ReduceOp::Max);
  std::unique_ptr<io::TraceRecorder> trace;
  if (cfg.runtime.trace) {  // streamed to disk as it goes: a killed run keeps its trace
    std::error_code ec;  // every rank creates it: one of them wins
    std::filesystem::create_directories(run_dir + "/trace", ec);
    trace = std::make_unique<io::TraceRecorder>(run_dir + "/trace/" + io::trace_file_name(rank, attempt), rank);
  }
  // On NCCL, the data plane's operations get a GPU row of their own in the trace — set before
  // the engine and the exchanges duplicate their channels, unset before the trace goes.
  groups.set_data_plane_trace(trace.get());
  struct Untrace {
    ProcessGroups& groups;
    ~Untrace() { groups.set_data_plane_trace(nullptr); }
  } untrace{groups};
  Baton* overlap_baton = cfg.runtime.overlap ? &baton : nullptr;
  std::vector<std::unique_ptr<CommExpertExchange>> exchanges;  // per direction (ep > 1)
  std::vector<model::ExpertExchange*> exchange_of_dir;
  for (auto& c : groups.expert_exchange) {
    exchanges.push_back(std::make_unique<CommExpertExchange>(*c, mcfg.experts, overlap_baton,
                                                             cfg.runtime.comm_delay_us, trace.get()));
    exchange_of_dir.push_back(exchanges.back().get());
  }
  std::vector<RankStage> stages =
      make_rank_stages(mcfg, schedule, coords.pp_rank, topo.ep(), coords.ep_rank, cfg.train.seed, exchange_of_dir);
  EngineOptions eo;
  eo.overlap = cfg.runtime.overlap, eo.comm_delay_us = cfg.runtime.comm_delay_us;
  eo.batch = cfg.train.micro_batch_size, eo.seq_len = cfg.train.seq_len;
  eo.loss_scale = (float)(1.0 / ((double)cfg.train.global_batch * cfg.train.seq_len));
  std::atomic<int> current_step{0};
  std::unique_ptr<SupervisorLink> supervisor;  // set below, before the first step
  eo.op_done = [&](int ops) {
    if (supervisor) supervisor->progress(current_step.load(), ops, SupervisorLink::Phase::Step);
  };
  PipelineEngine engine(schedule, coords.pp_rank, stages, *groups.pipeline, eo, baton, trace.get());
  const io::TokenDataset data = io::TokenDataset::load(cfg);
  TrainBatches batches(data, cfg.train.seed, cfg.train.global_batch, cfg.train.micro_batch_size, cfg.train.seq_len,
                       coords.dp_rank, microbatches);
  ZeroOptimizer zero(stages, groups, ocfg);
  {
    int64_t held = 0;
    for (auto& s : stages) held += (int64_t)s.arena->params().size();
    char line[200];
    std::snprintf(line, sizeof line, "ZeRO-1: rank 0 keeps AdamW moments for %lld of the %lld parameters it holds (%.1f%%)",
                  (long long)zero.moment_floats() / 2, (long long)held, 50.0 * zero.moment_floats() / held);
    log.print(line);
  }
  // The supervisor that started this job (duet launch), if any: progress, step times and
  // commits go to it; a stop it asks for (or its death) ends the run at a step boundary.
  supervisor = SupervisorLink::from_environment(rank);
  // From here SIGTERM stops the run at a step boundary with a checkpoint (runtime/term_stop.h);
  // a supervisor that tears the job down can reach this rank to end it at once ("abort").
  // Under a bare mpirun it stays fatal: there SIGTERM comes from mpirun (or reaches it too),
  // which tears the job down beneath ranks that would go on.
  std::optional<TermStop> term_stop;
  if (supervisor || !launched_by_mpi_launcher()) term_stop.emplace();
  auto progress = [&](int step, int op, SupervisorLink::Phase phase) {
    if (supervisor) supervisor->progress(step, op, phase);
  };
  progress(0, 0, SupervisorLink::Phase::Setup);
  if (supervisor && !supervisor->skipped_steps().empty())
    log.print("skipping the data of step(s) " + core::format_step_list(supervisor->skipped_steps()) +
              " (a non-finite value in an earlier attempt): each later step trains on the next data");
  // Fault injection (runtime.fail_* or runtime.fail_plan, io/fault_plan.h), for tests: the
  // fault this attempt injects, and whether it strikes this rank.
  const std::optional<io::FaultSpec> fault = io::fault_for_attempt(cfg.runtime, supervisor ? supervisor->attempt() : 1);
  const int per_node = cfg.launch.ranks_per_node;
  const bool injects = fault && (fault->scope == io::FailScope::Node && per_node > 0
                                     ? rank / per_node == fault->rank / per_node
                                     : rank == fault->rank);
  auto strike = [&](int step, const std::string& where) {
    if (fault->corrupt_newest) damage_newest_checkpoint(io::checkpoint_dir(cfg, run_dir), log);
    if (supervisor) supervisor->inject(fault->signal, step);  // first: the fault's time
    if (fault->signal == SIGTERM) die_by_sigterm();  // a kill by SIGTERM, not a request to stop
    if (fault->signal > 0) raise(fault->signal);
    if (!fault->nan || fault->at != io::FailAt::Step)  // a NaN strikes at the step's end
      throw std::runtime_error("injected failure " + where + " (rank " + std::to_string(rank) + ", step " +
                               std::to_string(step) + ")");
  };
  // This attempt's fence: a commit of an older attempt still running somewhere is refused
  // (checkpoint/fence.h). The supervisor hands out the generation; a run without one takes
  // the next itself.
  SaveHooks hooks;
  hooks.fence.path = run_dir + "/fence";
  {
    int64_t generation = 0;
    if (rank == 0) {
      const char* env = std::getenv(core::kFenceEnv);
      generation = env && *env ? std::atoll(env) : ckpt::advance_fence(hooks.fence.path);
    }
    hooks.fence.generation = groups.world->allreduce<int64_t>(generation, ReduceOp::Max);
  }
  const std::vector<int> disk_full = io::full_disk_steps(cfg.runtime, supervisor ? supervisor->attempt() : 1, rank);
  if ((injects && fault->at == io::FailAt::Save) || !disk_full.empty())
    hooks.shard_written = [&, disk_full, fail = injects && fault->at == io::FailAt::Save ? fault->step : -1](int step) {
      if (step == fail) strike(step, "while writing its checkpoint shard");
      if (std::find(disk_full.begin(), disk_full.end(), step) != disk_full.end())
        throw std::runtime_error("No space left on device (fault injection: a full disk at step " + std::to_string(step) +
                                 ")");
    };
  if (const auto from = io::unreadable_from(cfg.runtime, supervisor ? supervisor->attempt() : 1, rank))
    hooks.unreadable_from = *from;
  if (fault && rank == 0 && fault->at == io::FailAt::Commit)  // rank 0 commits
    hooks.commit_stage = [&, fail = fault->step](int step, ckpt::CommitStage stage) {
      if (step == fail && stage == ckpt::CommitStage::committed_marker) strike(step, "inside the checkpoint commit");
    };
  const ckpt::Fence fence = hooks.fence;
  TrainCheckpoints checkpoints(cfg, run_dir, topo, rank, log, *groups.checkpoint, std::move(hooks));
  if (supervisor && rank == 0) checkpoints.on_commit([&](int step) { supervisor->committed(step); });
  // In-memory snapshots (checkpoint.memory): the restart resumes from the newest complete
  // one, unless the newest HDF5 checkpoint that verifies is newer.
  // checkpoint.memory: on without room is refused by every rank together: this rank tells the
  // supervisor it ends on purpose, so the job's usage exit code is not taken for a crash.
  std::unique_ptr<MemorySnapshots> snapshots_owned;
  try {
    snapshots_owned =
        std::make_unique<MemorySnapshots>(cfg, topo, rank, log, *groups.snapshot, fence, supervisor != nullptr, stages, zero);
  } catch (const io::AgreedConfigError&) {
    if (supervisor) supervisor->done();
    throw;
  }
  MemorySnapshots& snapshots = *snapshots_owned;
  const auto load_start = Clock::now();
  const int memory_step = cfg.checkpoint.resume ? snapshots.find() : -1;
  int start_step = checkpoints.resume(stages, zero, memory_step);
  const bool from_memory = start_step < 0;
  if (from_memory) start_step = snapshots.load(stages, zero);
  // The data goes on where the loaded state was saved: the sequences its steps trained on.
  // That is data_step(step) × train.global_batch unless the global batch changed since
  // (checkpoint.allow_changes), or steps whose data was skipped are no longer known (a new
  // job: the supervisor's list of them lives with it): then data_step(step) × the global
  // batch now would train on sequences again or skip some (runtime/batches.h).
  auto data_step_of = [&](int step) { return supervisor ? core::data_step(step, supervisor->skipped_steps()) : step; };
  int64_t data_offset = 0;
  if (start_step > 0) {
    const int64_t saved = from_memory ? snapshots.data_position() : checkpoints.data_position();
    if (saved >= 0) data_offset = saved - (int64_t)data_step_of(start_step) * cfg.train.global_batch;
    if (data_offset != 0 && rank == 0)
      log.print("data: continuing at sequence " + std::to_string(saved) + ", where step " + std::to_string(start_step) +
                " was saved (train.global_batch is now " + std::to_string(cfg.train.global_batch) + "): step " +
                std::to_string(start_step + 1) + " trains on sequences " + std::to_string(saved) + " to " +
                std::to_string(saved + cfg.train.global_batch - 1));
  }
  batches.set_data_offset(data_offset);
  auto data_position = [&, data_offset](int step) {
    return (int64_t)data_step_of(step) * cfg.train.global_batch + data_offset;
  };
  checkpoints.set_data_position(data_position);
  snapshots.set_data_position(data_position);
  // Snapshots of earlier attempts past this point belong to a history this attempt replaces
  // (it resumed from an older step, or starts afresh): after its own failure they must not win.
  snapshots.discard_newer_than(start_step);
  if (supervisor) supervisor->mark(from_memory ? "load_memory" : "load", since(load_start), start_step);
  // A superseded attempt (checkpoint/fence.h: a rank of it outlived it, cut off or stopped and
  // continued) records nothing more of the run, which is the newer attempt's: rank 0 writes
  // each line of metrics.jsonl while it holds the fence's shared lock, and from the first line
  // refused every rank stops at the next step boundary, saving nothing.
  std::unique_ptr<io::MetricsWriter> metrics;
  if (rank == 0) metrics = std::make_unique<io::MetricsWriter>(run_dir + "/metrics.jsonl");
  std::string superseded;  // rank 0: the fence's refusal, once a line was refused
  bool fence_unread = false;  // rank 0: said once that the fence could not be read
  auto record = [&](const io::JsonLine& line) {
    if (!metrics || !superseded.empty()) return;
    std::optional<ckpt::FenceGuard> owner;
    try {
      owner.emplace(fence);
    } catch (const ckpt::Fenced& e) {
      superseded = e.what();
      return;
    } catch (const std::runtime_error& e) {  // not known to be superseded (an NFS lock error): go on
      if (!std::exchange(fence_unread, true))
        log.print("metrics: the attempt's fence could not be read (" + std::string(e.what()) +
                  "); lines are written without that check (a commit still needs it)");
    }
    metrics->write(line);
  };
  record(io::run_header(cfg, start_step));  // each job's lines start with its run id
  if (attempt > 1) record(io::resume_record(start_step, attempt));
  Communicator& all = *groups.world;
  const EvalShape eval_shape{cfg.train.micro_batch_size, cfg.train.seq_len, cfg.train.eval_batches * cfg.train.global_batch};
  // Each micro-batch is progress (ops past the step's own), so that a validation longer than
  // the hang timeout is not taken for a hang.
  auto validate = [&](int step, SupervisorLink::Phase phase) {
    int batch = 0;
    return validation_loss(stages, placement, coords.pp_rank, coords.dp_rank, topo.dp(), eval_shape, data,
                           *groups.evaluation, all, overlap_baton, [&] { progress(step, (1 << 23) + batch++, phase); });
  };
  auto expert_messages = [&] {
    long n = 0;
    for (auto& e : exchanges) n += e->collectives();
    return n;
  };

  const int T = cfg.train.seq_len, G = cfg.train.global_batch;
  const double tokens_per_step = (double)G * T;
  const double flops_per_token = model::train_flops_per_token(mcfg, T);
  {
    char line[320];
    std::snprintf(line, sizeof line,
                  "model: %.2fM parameters (%.2fM active per token), %d layers, %d MoE | layout: %s, %s, "
                  "%d micro-batches of %d x %d tokens per pipeline | %s",
                  model::total_params(mcfg) / 1e6, model::active_params_per_token(mcfg) / 1e6, mcfg.layers,
                  mcfg.layers - mcfg.dense_layers, topo.describe().c_str(),
                  sched::format_schedule_kind(schedule.kind).c_str(), microbatches, cfg.train.micro_batch_size, T,
                  cfg.runtime.device == io::Device::Cuda
                      ? "on the GPU (runtime.device cuda; managed memory, MPI through the host)"
                      : compute_threads_text(threads).c_str());
    log.print(line);
  }

  TrainSummary out;
  out.fence = fence;
  // Why every rank stops without saving (rank 0 knows the fence's words).
  auto agree_superseded = [&](bool flag) {
    if (flag) out.superseded = superseded.empty() ? "a newer attempt owns the run (rank 0 was fenced)" : superseded;
    return flag;
  };
  out.first_val_loss = out.last_val_loss = validate(0, SupervisorLink::Phase::Setup);  // before the first step
  out.last_val_step = start_step;
  {
    char line[64];
    std::snprintf(line, sizeof line, "step %d: val loss %.4f", start_step, out.first_val_loss);
    log.print(line);
  }

  double train_seconds = 0, wait_seconds = 0;
  double snapshot_save_wait = 0;  // what handing the previous step's snapshot over waited
  std::string stop_reason;  // why the loop ended before train.steps
  const auto run_start = Clock::now();
  out.steps = start_step;  // an attempt that finds the run complete trains nothing
  // Superseded before its first step: it trains none.
  const bool superseded_at_start = agree_superseded(all.allreduce<int32_t>(superseded.empty() ? 0 : 1, ReduceOp::Max) != 0);
  for (int step = start_step + 1; step <= cfg.train.steps && !superseded_at_start; ++step) {
    const auto t0 = Clock::now();
    const double lr = model::learning_rate(ocfg, step);
    for (auto& s : stages) s.arena->zero_grads();
    current_step = step;
    progress(step, 0, SupervisorLink::Phase::Step);
    const bool inject = injects && step == fault->step && fault->at == io::FailAt::Step;
    if (inject) strike(step, "at the start of the step");
    // A step whose data produced a non-finite value in an earlier attempt is skipped: this
    // step trains on the next data instead (core/supervision.h).
    batches.fill(data_step_of(step), stages);
    const long expert_before = expert_messages();
    // An injected NaN: in the loss of micro-batch 0 where this rank computes losses (a last
    // stage), else in the rank's loss sum.
    const bool holds_last = std::any_of(stages.begin(), stages.end(), [](const RankStage& s) { return s.last; });
    if (inject && fault->nan && holds_last) engine.poison_loss(0);
    const StepStats st = engine.run_step(step, [&](int dir) { zero.start_reduce(dir); });
    progress(step, 1 << 20, SupervisorLink::Phase::Step);  // past every op: reduction and update
    const long messages = st.messages + expert_messages() - expert_before;
    const auto t_sync = Clock::now();
    const double grad_norm = zero.finish_reduce(trace.get());
    reduce_expert_load(stages, groups);
    const double ckpt_wait = checkpoints.before_update();  // a deferred snapshot must finish first
    const double snapshot_wait = snapshot_save_wait + snapshots.before_update();  // the previous step's, written and sent
    zero.step(lr, model::clip_scale(grad_norm, ocfg.grad_clip), trace.get());
    update_expert_bias(stages, (float)cfg.model.moe.bias_update_rate);
    const double loss_sum =
        all.allreduce(inject && fault->nan && !holds_last ? std::numeric_limits<double>::quiet_NaN() : st.loss_sum,
                      ReduceOp::Sum);
    // Load imbalance over the experts this rank saw (already summed over the stage's copies).
    std::vector<int64_t> load;
    for (auto& s : stages) load.insert(load.end(), s.reduced_load.begin(), s.reduced_load.end());
    const double imbalance = all.allreduce(expert_imbalance(load, mcfg.experts), ReduceOp::Max);
    const double sync_s = since(t_sync);
    const double step_time = since(t0);
    train_seconds += step_time;
    // runtime.comm_delay_us adds latency to every message: the most a rank had added.
    const double added = all.allreduce(messages * cfg.runtime.comm_delay_us * 1e-6, ReduceOp::Max);
    // per executor: a fraction of the step, never more
    double waits[] = {st.wait_s / st.executors, st.core_wait_s / st.executors, st.cpu_s};  // one collective
    all.allreduce(std::span<double>(waits), ReduceOp::Sum);
    const double waited = waits[0], core_waited = waits[1], cpu_used = waits[2];
    wait_seconds += waited / world;

    const double loss = loss_sum / tokens_per_step;
    if (!std::isfinite(loss) || !std::isfinite(grad_norm)) {  // every rank sees the same values
      // Where: the first micro-batch whose loss was not finite, over all ranks (every rank
      // is here: they all see the same values).
      const int64_t none = std::numeric_limits<int64_t>::min();  // the smallest code wins: Max of its negation
      const int64_t code = st.nonfinite_mb >= 0 ? ((int64_t)rank * 16 + st.nonfinite_dir) * 1000000 + st.nonfinite_mb : -1;
      const int64_t neg = all.allreduce<int64_t>(code >= 0 ? -code : none, ReduceOp::Max);
      const int64_t first = neg == none ? none : -neg;
      const int at_rank = first == none ? -1 : (int)(first / 1000000 / 16), dir = first == none ? -1 : (int)(first / 1000000 % 16),
                mb = first == none ? -1 : (int)(first % 1000000);
      if (supervisor && rank == 0) supervisor->non_finite(step, at_rank, dir, mb);
      // No rank stops before rank 0's report is in the supervisor's socket: the first rank to
      // stop ends the job (MPI_Abort), and a loaded machine let one do so before rank 0 had
      // sent it — the supervisor then saw a rank die, not why, and kept the step's data.
      all.barrier();
      throw std::runtime_error("step " + std::to_string(step) + ": non-finite " +
                               (std::isfinite(loss) ? "gradient norm" : "loss") +
                               (mb >= 0 ? " (first in micro-batch " + std::to_string(mb) + " of direction " +
                                              std::to_string(dir) + ", computed on rank " + std::to_string(at_rank) + ")"
                                        : std::string()) +
                               "; stopping");
    }
    out.last_loss = loss;
    io::JsonLine j;
    j.add("step", step).add("loss", loss).add("lr", lr).add("grad_norm", grad_norm);
    j.add("tokens", data_position(step) * T).add("step_time_s", step_time);  // the data position, in tokens
    j.add("tokens_per_s", tokens_per_step / step_time);
    j.add("model_flops_per_s", tokens_per_step * flops_per_token / step_time);
    j.add("comm_wait_s", waited / world).add("grad_sync_s", sync_s);
    j.add("core_wait_s", core_waited / world).add("cpu_s", cpu_used / world);
    if (ckpt_wait > 0) j.add("checkpoint_wait_s", ckpt_wait);
    if (snapshots.enabled())  // the wait, and what the previous step's snapshot took (wall, CPU)
      j.add("snapshot_wait_s", snapshot_wait)
          .add("snapshot_s", snapshots.last_wall_seconds())
          .add("snapshot_cpu_s", snapshots.last_cpu_seconds());
    if (cfg.runtime.comm_delay_us > 0) j.add("comm_delay_added_s", added);
    if (mcfg.layers > mcfg.dense_layers) j.add("expert_imbalance", imbalance);
    std::string extra;
    const bool last = step == cfg.train.steps;
    if (last || (cfg.train.eval_every > 0 && step % cfg.train.eval_every == 0)) {
      out.last_val_loss = validate(step, SupervisorLink::Phase::Step);
      out.last_val_step = step;
      j.add("val_loss", out.last_val_loss);
      char v[32];
      std::snprintf(v, sizeof v, "val %.3f", out.last_val_loss);
      extra = v;
    }
    record(j);
    if (step % cfg.train.log_every == 0 || step == 1 || last) {
      const int done = step - start_step;  // steps this process ran (a resumed run skips some)
      const double per_step = train_seconds / done;
      log.print(io::format_progress({step, cfg.train.steps, loss, lr, done * tokens_per_step / train_seconds,
                                     per_step * (cfg.train.steps - step), extra}));
    }
    out.steps = step;
    checkpoints.poll();
    if (supervisor) supervisor->step_time(step, step_time);
    // A stop the supervisor asked for (or its death), a SIGTERM to any rank, and a superseded
    // attempt, are agreed on by every rank here, at a step boundary, so they all save the same
    // step — or, superseded, none. One collective for all: 2 (superseded) outranks 1 (stop)
    // under Max. At the last step there is nothing left to stop: the run finishes as it would have.
    const bool term = term_stop && TermStop::requested();
    const int32_t agreed = all.allreduce<int32_t>(
        !superseded.empty() ? 2 : ((supervisor && supervisor->stop_requested()) || term ? 1 : 0), ReduceOp::Max);
    if (agree_superseded(agreed == 2)) {
      out.stopped = true;
      break;
    }
    const bool asked = agreed == 1 && step < cfg.train.steps;
    const bool stopping = step == cfg.train.stop_at || asked;
    if (stopping || (cfg.checkpoint.every > 0 && step % cfg.checkpoint.every == 0)) {
      progress(step, 1 << 21, SupervisorLink::Phase::Save);
      checkpoints.save(step, stages, zero);
    }
    if (!stopping && step < cfg.train.steps) snapshot_save_wait = snapshots.save(step, stages, zero);
    if (stopping) {
      out.stopped = true;
      stop_reason = !asked                                        ? "train.stop_at"
                    : supervisor && supervisor->supervisor_gone() ? "the supervisor is gone"
                    : term                                        ? "SIGTERM"
                    : supervisor                                  ? "the supervisor asked"
                                                                  : "SIGTERM to another rank";
      break;
    }
  }
  progress(out.steps, 1 << 22, SupervisorLink::Phase::Save);
  checkpoints.finish();  // a background save still writing completes before the run ends
  out.checkpoint_not_saved = checkpoints.unsaved();
  out.end_not_saved = !out.checkpoint_not_saved.empty() && checkpoints.last_requested() == out.steps;
  // The run is over (all steps trained, its last step's checkpoint saved if one was asked for;
  // or stopped with its checkpoint): its snapshots go. A run that stopped or ended without the
  // checkpoint it asked for there keeps them for a restart (train() returns before the last
  // step only at a stop, which always asks for a checkpoint of its step).
  snapshots.finish(/*remove=*/!out.end_not_saved);
  if (!out.superseded.empty())
    log.print("stopping after step " + std::to_string(out.steps) + ", saving nothing: " + out.superseded);
  else if (out.stopped)
    log.print("stopping after step " + std::to_string(out.steps) + " (" + stop_reason + "); " +
              (out.checkpoint_not_saved.empty() ? "run again to resume" : "NOT resumable: " + out.checkpoint_not_saved));
  if (trace) {
    trace->close();
    if (rank == 0)
      log.print("traces: " + run_dir + "/trace/" + io::trace_file_name(0, attempt) +
                " and the other ranks' (open in Perfetto: ui.perfetto.dev)");
  }
  out.seconds = since(run_start);
  out.trained = out.steps - start_step;
  out.tokens_per_s = train_seconds > 0 ? out.trained * tokens_per_step / train_seconds : 0;
  out.model_flops_per_s = out.tokens_per_s * flops_per_token;
  out.wait_fraction = train_seconds > 0 ? wait_seconds / train_seconds : 0;
  if (supervisor) supervisor->done();
  return out;
}

}  // namespace duet::runtime
