#include "runtime/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "io/data.h"
#include "kernels/gemm.h"
#include "model/arena.h"
#include "model/optimizer.h"
#include "model/stage.h"
#include "runtime/train_setup.h"

namespace duet::runtime {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Splits seq_len + 1 tokens per sequence into inputs and next-token targets.
void split_windows(const std::vector<int32_t>& windows, int count, int T, std::vector<int32_t>& tokens,
                   std::vector<int32_t>& targets) {
  tokens.resize((size_t)count * T), targets.resize((size_t)count * T);
  for (int s = 0; s < count; ++s)
    for (int t = 0; t < T; ++t) {
      tokens[(size_t)s * T + t] = windows[(size_t)s * (T + 1) + t];
      targets[(size_t)s * T + t] = windows[(size_t)s * (T + 1) + t + 1];
    }
}

struct LocalModel {
  model::ModelConfig cfg;
  model::ParamArena arena;
  model::Stage stage;
  model::StageActivations acts;

  explicit LocalModel(const model::ModelConfig& c)
      : cfg(c), arena(model::model_tensor_specs(c)), stage(c, model::StageRange::whole_model(c), arena) {}
};

double validation_loss(LocalModel& m, const io::TokenDataset& data, const io::RunConfig& cfg) {
  const int T = cfg.train.seq_len, mbs = cfg.train.micro_batch_size;
  const int sequences = cfg.train.eval_batches * cfg.train.global_batch;
  std::vector<int32_t> windows((size_t)mbs * (T + 1)), tokens, targets;
  double sum = 0;
  for (int first = 0; first < sequences; first += mbs) {
    for (int s = 0; s < mbs; ++s) data.val_sequence(first + s, T, windows.data() + (size_t)s * (T + 1));
    split_windows(windows, mbs, T, tokens, targets);
    m.stage.forward(m.acts, {mbs, T, tokens.data(), targets.data(), /*training=*/false}, nullptr);
    sum += m.stage.loss_sum(m.acts);
  }
  return sum / ((double)sequences * T);
}

}  // namespace

TrainSummary train_local(const io::RunConfig& cfg, const std::string& run_dir, io::RunLog& log) {
  const auto mcfg = to_model_config(cfg);
  const auto ocfg = to_optimizer_config(cfg);
  const int threads = compute_threads(cfg, 1);
  cpu::set_gemm_threads(threads);

  const io::TokenDataset data = io::TokenDataset::load(cfg);
  LocalModel m(mcfg);
  model::init_parameters(m.arena, mcfg, cfg.train.seed);
  model::AdamW opt(m.arena, ocfg);
  io::MetricsWriter metrics(run_dir + "/metrics.jsonl");

  const int T = cfg.train.seq_len, mbs = cfg.train.micro_batch_size, G = cfg.train.global_batch;
  const int micro_batches = G / mbs;
  const double tokens_per_step = (double)G * T;
  const float loss_scale = (float)(1.0 / tokens_per_step);
  const double flops_per_token = train_flops_per_token(mcfg, T);
  {
    char line[256];
    std::snprintf(line, sizeof line,
                  "model: %.2fM parameters (%.2fM active per token), %d layers, %d MoE; %d threads; "
                  "%d micro-batches of %d x %d tokens per step; data %zu train / %zu val bytes",
                  model::total_params(mcfg) / 1e6, model::active_params_per_token(mcfg) / 1e6,
                  mcfg.layers, mcfg.layers - mcfg.dense_layers, threads, micro_batches, mbs, T,
                  data.train().size(), data.val().size());
    log.print(line);
  }

  TrainSummary out;
  out.first_val_loss = validation_loss(m, data, cfg);
  {
    char line[64];
    std::snprintf(line, sizeof line, "step 0: val loss %.4f", out.first_val_loss);
    log.print(line);
  }

  std::vector<int32_t> windows((size_t)mbs * (T + 1)), tokens, targets;
  double train_seconds = 0;
  const auto run_start = Clock::now();
  for (int step = 1; step <= cfg.train.steps; ++step) {
    const auto t0 = Clock::now();
    const double lr = model::learning_rate(ocfg, step);
    m.arena.zero_grads();
    m.stage.reset_expert_load();
    double loss_sum = 0;
    for (int mb = 0; mb < micro_batches; ++mb) {
      // Sequence numbers are global: step-major, then micro-batch, so every layout trains on
      // the same sequences.
      const uint64_t first = (uint64_t)(step - 1) * G + (uint64_t)mb * mbs;
      for (int s = 0; s < mbs; ++s)
        data.train_sequence(cfg.train.seed, first + s, T, windows.data() + (size_t)s * (T + 1));
      split_windows(windows, mbs, T, tokens, targets);
      m.stage.forward(m.acts, {mbs, T, tokens.data(), targets.data(), true}, nullptr);
      loss_sum += m.stage.loss_sum(m.acts);
      m.stage.backward(m.acts, nullptr, loss_scale);
    }
    const double grad_norm = std::sqrt(model::grad_sum_squares(m.arena));
    opt.step(m.arena, lr, model::clip_scale(grad_norm, ocfg.grad_clip));
    const std::vector<int64_t> load(m.stage.expert_load().begin(), m.stage.expert_load().end());
    m.stage.update_expert_bias(load, (float)cfg.model.moe.bias_update_rate);
    const double step_time = seconds_since(t0);
    train_seconds += step_time;

    const double loss = loss_sum / tokens_per_step;
    out.last_loss = loss;
    io::JsonLine j;
    j.add("step", step).add("loss", loss).add("lr", lr).add("grad_norm", grad_norm);
    j.add("tokens", (int64_t)(step * tokens_per_step)).add("step_time_s", step_time);
    j.add("tokens_per_s", tokens_per_step / step_time);
    j.add("model_flops_per_s", tokens_per_step * flops_per_token / step_time);
    if (mcfg.layers > mcfg.dense_layers) j.add("expert_imbalance", expert_imbalance(load, mcfg.experts));
    std::string extra;
    const bool last = step == cfg.train.steps;
    if (last || (cfg.train.eval_every > 0 && step % cfg.train.eval_every == 0)) {
      out.last_val_loss = validation_loss(m, data, cfg);
      j.add("val_loss", out.last_val_loss);
      extra = "val " + io::JsonLine::number(std::round(out.last_val_loss * 1000) / 1000);
    }
    metrics.write(j);
    if (step % cfg.train.log_every == 0 || step == 1 || last) {
      const double per_step = train_seconds / step;
      log.print(io::format_progress({step, cfg.train.steps, loss, lr, step * tokens_per_step / train_seconds,
                                     per_step * (cfg.train.steps - step), extra}));
    }
    out.steps = step;
  }
  out.seconds = seconds_since(run_start);
  out.tokens_per_s = out.steps * tokens_per_step / train_seconds;
  out.model_flops_per_s = out.tokens_per_s * flops_per_token;
  return out;
}

}  // namespace duet::runtime
