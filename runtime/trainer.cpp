#include "runtime/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "io/data.h"
#include "kernels/gemm.h"
#include "model/optimizer.h"
#include "runtime/checkpointing.h"
#include "runtime/engine.h"
#include "runtime/zero.h"
#include "runtime/mpi.h"
#include "core/layout.h"
#include "runtime/train_setup.h"

namespace duet::runtime {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int local_ranks() {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "MPI_LOCALNRANKS"})
    if (const char* s = std::getenv(v)) return std::max(1, std::atoi(s));
  return 1;
}

// Mean validation loss: the fixed validation sequences split over the data-parallel replicas,
// each pushed through its pipeline.
double validation_loss(PipelineEngine& engine, const io::RunConfig& cfg, const core::Topology& topo, int rank) {
  const int total = cfg.train.eval_batches * cfg.train.global_batch;
  const int per_replica = total / topo.dp();
  const double local = engine.eval_loss_sum(topo.coords(rank).dp_rank * per_replica, per_replica);
  double sum = local;
  MPI_CHECK(MPI_Allreduce(&local, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
  return sum / ((double)per_replica * topo.dp() * cfg.train.seq_len);
}

}  // namespace

TrainSummary train(const io::RunConfig& cfg, const std::string& run_dir, io::RunLog& log) {
  io::require_trainable(cfg);  // e.g. MLA attention is simulated, not trained, on CPU
  const int rank = world_rank(), world = world_size();
  const core::Topology topo(world, cfg.parallel.pp, cfg.parallel.dp, cfg.parallel.ep);
  const auto mcfg = to_model_config(cfg);
  const auto ocfg = to_optimizer_config(cfg);
  const int threads = compute_threads(cfg, local_ranks());
  cpu::set_gemm_threads(threads);

  const auto groups = topo.groups(rank);
  Comm pipeline = Comm::from_members(groups.pipeline);
  Comm experts = Comm::from_members(groups.expert_parallel);
  const io::TokenDataset data = io::TokenDataset::load(cfg);
  PipelineEngine engine(cfg, topo, rank, pipeline.get(), experts.get(), data);
  ZeroOptimizer zero(topo, rank, engine.schedule(), engine.slots(), ocfg);
  {
    int64_t held = 0;
    for (auto& s : engine.slots()) held += (int64_t)s.arena->params().size();
    char line[200];
    std::snprintf(line, sizeof line, "ZeRO-1: rank 0 keeps AdamW moments for %lld of the %lld parameters it holds (%.1f%%)",
                  (long long)zero.moment_floats() / 2, (long long)held, 50.0 * zero.moment_floats() / held);
    log.print(line);
  }
  TrainCheckpoints checkpoints(cfg, run_dir, topo, rank, log);
  const int start_step = checkpoints.resume(engine.slots(), zero);
  std::unique_ptr<io::MetricsWriter> metrics;
  if (rank == 0) metrics = std::make_unique<io::MetricsWriter>(run_dir + "/metrics.jsonl");

  const int T = cfg.train.seq_len, G = cfg.train.global_batch;
  const double tokens_per_step = (double)G * T;
  const double flops_per_token = train_flops_per_token(mcfg, T);
  {
    char line[320];
    std::snprintf(line, sizeof line,
                  "model: %.2fM parameters (%.2fM active per token), %d layers, %d MoE | layout: %s, %s, "
                  "%d micro-batches of %d x %d tokens per pipeline | %d compute threads per rank",
                  model::total_params(mcfg) / 1e6, model::active_params_per_token(mcfg) / 1e6, mcfg.layers,
                  mcfg.layers - mcfg.dense_layers, topo.describe().c_str(),
                  sched::format_schedule_kind(engine.schedule().kind).c_str(), engine.microbatches(),
                  cfg.train.micro_batch_size, T, threads);
    log.print(line);
  }

  TrainSummary out;
  out.first_val_loss = validation_loss(engine, cfg, topo, rank);
  {
    char line[64];
    std::snprintf(line, sizeof line, "step 0: val loss %.4f", out.first_val_loss);
    log.print(line);
  }

  double train_seconds = 0, wait_seconds = 0;
  const auto run_start = Clock::now();
  for (int step = start_step + 1; step <= cfg.train.steps; ++step) {
    const auto t0 = Clock::now();
    const double lr = model::learning_rate(ocfg, step);
    for (auto& s : engine.slots()) s.arena->zero_grads();
    if (rank == cfg.runtime.fail_rank && step == cfg.runtime.fail_step)
      throw std::runtime_error("injected failure (runtime.fail_rank " + std::to_string(rank) + ", runtime.fail_step " +
                               std::to_string(step) + ")");
    const StepStats st = engine.run_step(step, [&](int slot) { zero.start_reduce(slot); });
    const auto t_sync = Clock::now();
    const double grad_norm = zero.finish_reduce(engine.trace());
    const double ckpt_wait = checkpoints.before_update();  // a deferred snapshot must finish first
    zero.step(lr, model::clip_scale(grad_norm, ocfg.grad_clip), engine.trace());
    for (auto& s : engine.slots())
      s.stage_model->update_expert_bias(s.reduced_load, (float)cfg.model.moe.bias_update_rate);
    double loss_sum = st.loss_sum;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &loss_sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    // Load imbalance over the experts this rank saw (already summed over the stage's copies).
    std::vector<int64_t> load;
    for (auto& s : engine.slots()) load.insert(load.end(), s.reduced_load.begin(), s.reduced_load.end());
    double imbalance = expert_imbalance(load, mcfg.experts);
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &imbalance, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    const double sync_s = since(t_sync);
    const double step_time = since(t0);
    train_seconds += step_time;
    // runtime.comm_delay_us adds latency to every message: the most a rank had added.
    double added = st.messages * cfg.runtime.comm_delay_us * 1e-6;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &added, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    double waited = st.wait_s / st.executors;  // per executor: a fraction of the step, never more
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &waited, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    wait_seconds += waited / world;

    const double loss = loss_sum / tokens_per_step;
    out.last_loss = loss;
    io::JsonLine j;
    j.add("step", step).add("loss", loss).add("lr", lr).add("grad_norm", grad_norm);
    j.add("tokens", (int64_t)(step * tokens_per_step)).add("step_time_s", step_time);
    j.add("tokens_per_s", tokens_per_step / step_time);
    j.add("model_flops_per_s", tokens_per_step * flops_per_token / step_time);
    j.add("comm_wait_s", waited / world).add("grad_sync_s", sync_s);
    if (ckpt_wait > 0) j.add("checkpoint_wait_s", ckpt_wait);
    if (cfg.runtime.comm_delay_us > 0) j.add("comm_delay_added_s", added);
    if (mcfg.layers > mcfg.dense_layers) j.add("expert_imbalance", imbalance);
    std::string extra;
    const bool last = step == cfg.train.steps;
    if (last || (cfg.train.eval_every > 0 && step % cfg.train.eval_every == 0)) {
      out.last_val_loss = validation_loss(engine, cfg, topo, rank);
      j.add("val_loss", out.last_val_loss);
      char v[32];
      std::snprintf(v, sizeof v, "val %.3f", out.last_val_loss);
      extra = v;
    }
    if (metrics) metrics->write(j);
    if (step % cfg.train.log_every == 0 || step == 1 || last) {
      const int done = step - start_step;  // steps this process ran (a resumed run skips some)
      const double per_step = train_seconds / done;
      log.print(io::format_progress({step, cfg.train.steps, loss, lr, done * tokens_per_step / train_seconds,
                                     per_step * (cfg.train.steps - step), extra}));
    }
    out.steps = step;
    checkpoints.poll();
    const bool stopping = step == cfg.train.stop_at;
    if (stopping || (cfg.checkpoint.every > 0 && step % cfg.checkpoint.every == 0))
      checkpoints.save(step, engine.slots(), zero);
    if (stopping) {
      log.print("stopping after step " + std::to_string(step) + " (train.stop_at); run again to resume");
      break;
    }
  }
  checkpoints.finish();  // a background save still writing completes before the run ends
  if (engine.trace()) {
    const std::string dir = run_dir + "/trace";
    std::filesystem::create_directories(dir);
    char name[64];
    std::snprintf(name, sizeof name, "/rank-%05d.json", rank);
    engine.trace()->write(dir + name, rank);
    if (rank == 0) log.print("traces: " + dir + "/rank-*.json (open in Perfetto: ui.perfetto.dev)");
  }
  out.seconds = since(run_start);
  const int trained = out.steps - start_step;
  out.tokens_per_s = train_seconds > 0 ? trained * tokens_per_step / train_seconds : 0;
  out.model_flops_per_s = out.tokens_per_s * flops_per_token;
  out.wait_fraction = wait_seconds / train_seconds;
  return out;
}

}  // namespace duet::runtime
