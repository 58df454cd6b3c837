#include "model/buffers.h"
#include "model/stage.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace duet::model {

Stage::Stage(const ModelConfig& cfg, const StageRange& range, ParamArena& arena,
             ExpertExchange* exchange)
    : cfg_(cfg), range_(range), arena_(arena), ops_(arena.backend()), exchange_(exchange) {
  kernels::require_all_ops(ops_, "Stage");
  if (range_.expert_end < 0) range_.expert_end = cfg_.experts;
  const int local = range_.expert_end - range_.expert_begin;
  if (exchange_ && exchange_->group_size() == 1) exchange_ = nullptr;
  if (exchange_ ? (local * exchange_->group_size() != cfg_.experts ||
                   range_.expert_begin != exchange_->group_rank() * local)
                : local != cfg_.experts)
    throw std::logic_error("Stage: experts [" + std::to_string(range_.expert_begin) + ", " +
                           std::to_string(range_.expert_end) + ") do not match the expert-parallel group");
  auto P = [&](const std::string& n) { return arena_.param(n); };
  auto G = [&](const std::string& n) { return arena_.grad(n); };
  if (range_.embedding) embed_ = P("embed.weight"), g_embed_ = G("embed.weight");
  if (range_.head) {
    final_norm_ = P("final_norm.weight"), g_final_norm_ = G("final_norm.weight");
    head_ = P("head.weight"), g_head_ = G("head.weight");
  }
  int moe_rows = 0;
  for (int l = range_.first_layer; l < range_.end_layer; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    LayerParams lp{};
    lp.layer = l;
    lp.moe = cfg_.is_moe(l);
    lp.attn_norm = P(p + "attn_norm.weight"), lp.g_attn_norm = G(p + "attn_norm.weight");
    lp.wqkv = P(p + "attn.wqkv"), lp.g_wqkv = G(p + "attn.wqkv");
    lp.wo = P(p + "attn.wo"), lp.g_wo = G(p + "attn.wo");
    lp.ffn_norm = P(p + "ffn_norm.weight"), lp.g_ffn_norm = G(p + "ffn_norm.weight");
    if (!lp.moe) {
      lp.w13 = P(p + "ffn.w13"), lp.g_w13 = G(p + "ffn.w13");
      lp.w2 = P(p + "ffn.w2"), lp.g_w2 = G(p + "ffn.w2");
    } else {
      lp.router = P(p + "moe.router"), lp.g_router = G(p + "moe.router");
      lp.bias = P(p + "moe.bias");
      if (cfg_.d_shared() > 0) {
        lp.sw13 = P(p + "moe.shared.w13"), lp.g_sw13 = G(p + "moe.shared.w13");
        lp.sw2 = P(p + "moe.shared.w2"), lp.g_sw2 = G(p + "moe.shared.w2");
      }
      for (int e = range_.expert_begin; e < range_.expert_end; ++e) {
        const std::string q = p + "moe.experts." + std::to_string(e) + ".";
        lp.ew13.push_back(P(q + "w13")), lp.g_ew13.push_back(G(q + "w13"));
        lp.ew2.push_back(P(q + "w2")), lp.g_ew2.push_back(G(q + "w2"));
      }
      lp.load_row = moe_rows++;
    }
    layers_.push_back(std::move(lp));
  }
  load_.assign((size_t)moe_rows * cfg_.experts, 0);
}

const float* Stage::rope_table(int T) {
  if (rope_T_ != T) {
    rope_.resize((size_t)T * cfg_.head_dim());
    ops_.rope_table(rope_.data(), T, cfg_.head_dim(), cfg_.rope_theta);
    rope_T_ = T;
  }
  return rope_.data();
}

Stage::~Stage() {
  if (last_op_mark_ && ops_.mark_destroy) ops_.mark_destroy(last_op_mark_);
}

void Stage::begin_op() {
  if (last_op_pending_ && last_op_thread_ != std::this_thread::get_id()) {
    // Its kernels are on another thread's stream, and this op's buffers (the stage's
    // temporaries, the micro-batch's activations) may be what they use: wait for them. The same
    // thread's stream runs them in order already.
    ops_.mark_synchronize(last_op_mark_);
    last_op_pending_ = false;
  }
}

void Stage::wait_pending() {
  if (!last_op_pending_) return;
  ops_.mark_synchronize(last_op_mark_);
  last_op_pending_ = false;
}

void Stage::end_op(bool host_reads) {
  last_op_thread_ = std::this_thread::get_id();
  if (host_reads || !ops_.mark_record) {
    ops_.synchronize();
    last_op_pending_ = false;
    return;
  }
  if (!last_op_mark_) last_op_mark_ = ops_.mark_create();
  ops_.mark_record(last_op_mark_);
  last_op_pending_ = true;
}

void Stage::forward(StageActivations& a, const MicroBatch& mb, const float* x_in) {
  begin_op();
  const int B = mb.batch, T = mb.seq_len, N = B * T, C = cfg_.d_model, nl = num_layers();
  a.batch = B, a.seq_len = T;
  a.res.resize(nl + 1), a.dres.resize(nl + 1), a.layers.resize(nl);
  for (auto& r : a.res) sized(r, (size_t)N * C);
  if (range_.embedding) {
    a.tokens.assign(mb.tokens, mb.tokens + N);
    ops_.embedding_forward(a.res[0].data(), a.tokens.data(), embed_, N, C);
  } else {
    ops_.vec_copy(a.res[0].data(), x_in, (long)N * C);
  }
  for (int i = 0; i < nl; ++i)
    layer_forward(layers_[i], a.layers[i], a.res[i].data(), a.res[i + 1].data(), B, T, mb.training);
  if (range_.head) {
    const int V = cfg_.vocab;
    a.targets.assign(mb.targets, mb.targets + N);
    ops_.rmsnorm_forward(sized(a.lnf, (size_t)N * C), sized(a.rstdf, N), a.res[nl].data(),
                         final_norm_, N, C, cfg_.norm_eps);
    ops_.linear_forward(sized(a.logits, (size_t)N * V), a.lnf.data(), head_, N, C, V, false);
    a.loss_sum = ops_.cross_entropy_forward(a.logits.data(), a.targets.data(), N, V);
  }
  a.awaiting_weight = false;
  end_op(outputs_read_on_host_);  // the output is sent to the next stage next
}

void Stage::backward_input(StageActivations& a, const float* dy, float loss_scale) {
  begin_op();
  const int B = a.batch, T = a.seq_len, N = B * T, C = cfg_.d_model, nl = num_layers();
  for (auto& d : a.dres) sized(d, (size_t)N * C);
  if (range_.head) {
    const int V = cfg_.vocab;
    ops_.cross_entropy_backward(a.logits.data(), a.targets.data(), N, V,
                                loss_scale);  // now dlogits
    ops_.linear_backward_input(sized(a.dlnf, (size_t)N * C), a.logits.data(), head_, N, C, V,
                               false);
    ops_.vec_fill(a.dres[nl].data(), (long)a.dres[nl].size(), 0.0f);
    ops_.rmsnorm_backward_input(a.dres[nl].data(), a.dlnf.data(), a.res[nl].data(), final_norm_,
                                a.rstdf.data(), N, C);
  } else {
    ops_.vec_copy(a.dres[nl].data(), dy, (long)N * C);
  }
  for (int i = nl - 1; i >= 0; --i)
    layer_backward_input(layers_[i], a.layers[i], a.res[i].data(), a.dres[i + 1].data(),
                         a.dres[i].data(), B, T);
  a.awaiting_weight = true;
  end_op(outputs_read_on_host_);  // the input gradient is sent next
}

void Stage::backward_weight(StageActivations& a) {
  for (int part = 0; part < weight_parts(); ++part) backward_weight_part(a, part);
}

void Stage::backward_weight_part(StageActivations& a, int part) {
  if (!a.awaiting_weight) throw std::logic_error("Stage::backward_weight before backward_input");
  begin_op();
  const int N = a.batch * a.seq_len, C = cfg_.d_model, nl = num_layers();
  if (part == 0) {
    if (range_.head) {
      ops_.linear_backward_weight(g_head_, a.logits.data(), a.lnf.data(), N, C, cfg_.vocab);
      ops_.rmsnorm_backward_weight(g_final_norm_, a.dlnf.data(), a.res[nl].data(), a.rstdf.data(),
                                   N, C);
    }
  } else if (part <= nl) {
    const int i = nl - part;
    layer_backward_weight(layers_[i], a.layers[i], a.res[i].data(), a.dres[i + 1].data(), N);
  } else {
    if (range_.embedding)
      ops_.embedding_backward_weight(g_embed_, a.dres[0].data(), a.tokens.data(), N, C);
    a.awaiting_weight = false;
  }
  end_op(true);  // gradients are reduced on the host (MPI) after the last part
}

// Pre-norm block:  x1 = x + Wo·attn(rope(Wqkv·rms(x)));  y = x1 + ffn(rms(x1)).
void Stage::layer_forward(const LayerParams& p, LayerActivations& L, const float* x, float* y, int B,
                          int T, bool training) {
  const int N = B * T, C = cfg_.d_model, H = cfg_.heads, D = cfg_.head_dim();
  ops_.rmsnorm_forward(sized(L.ln1, (size_t)N * C), sized(L.rstd1, N), x, p.attn_norm, N, C,
                       cfg_.norm_eps);
  ops_.linear_forward(sized(L.qkv, (size_t)N * 3 * C), L.ln1.data(), p.wqkv, N, C, 3 * C, false);
  ops_.rope_forward(L.qkv.data(), rope_table(T), B, T, H, D);
  ops_.attention_forward(sized(L.att, (size_t)N * C),
                         sized(L.att_saved, ops_.attention_saved_floats(B, T, H, D)), L.qkv.data(), B, T,
                         H, D);
  float* x1 = sized(L.x1, (size_t)N * C);
  ops_.linear_forward(x1, L.att.data(), p.wo, N, C, C, false);
  ops_.vec_add(x1, x, (long)N * C);  // the residual, on the backend: no wait, no trip to the host
  ops_.rmsnorm_forward(sized(L.ln2, (size_t)N * C), sized(L.rstd2, N), x1, p.ffn_norm, N, C,
                       cfg_.norm_eps);
  ops_.vec_copy(y, x1, (long)N * C);
  ffn_forward(p, L, y, N, training);
}

void Stage::layer_backward_input(const LayerParams& p, LayerActivations& L, const float* x,
                                 const float* dy, float* dx, int B, int T) {
  const int N = B * T, C = cfg_.d_model, H = cfg_.heads, D = cfg_.head_dim();
  ffn_backward_input(p, L, dy, N);  // leaves ∂/∂ln2 in L.dln2
  float* dx1 = sized(L.dx1, (size_t)N * C);
  ops_.vec_copy(dx1, dy, (long)N * C);
  ops_.rmsnorm_backward_input(dx1, L.dln2.data(), L.x1.data(), p.ffn_norm, L.rstd2.data(), N, C);
  float* datt = sized(datt_, (size_t)N * C);
  ops_.linear_backward_input(datt, dx1, p.wo, N, C, C, false);
  float* dqkv = sized(L.dqkv, (size_t)N * 3 * C);
  ops_.attention_backward(dqkv, datt, L.qkv.data(), L.att.data(), L.att_saved.data(), B, T, H, D);
  ops_.rope_backward(dqkv, rope_table(T), B, T, H, D);
  ops_.linear_backward_input(sized(L.dln1, (size_t)N * C), dqkv, p.wqkv, N, C, 3 * C, false);
  ops_.vec_copy(dx, dx1, (long)N * C);
  ops_.rmsnorm_backward_input(dx, L.dln1.data(), x, p.attn_norm, L.rstd1.data(), N, C);
}

void Stage::layer_backward_weight(const LayerParams& p, LayerActivations& L, const float* x,
                                  const float* dy, int N) {
  const int C = cfg_.d_model;
  ffn_backward_weight(p, L, dy, N);
  ops_.rmsnorm_backward_weight(p.g_ffn_norm, L.dln2.data(), L.x1.data(), L.rstd2.data(), N, C);
  ops_.linear_backward_weight(p.g_wo, L.dx1.data(), L.att.data(), N, C, C);
  ops_.linear_backward_weight(p.g_wqkv, L.dqkv.data(), L.ln1.data(), N, C, 3 * C);
  ops_.rmsnorm_backward_weight(p.g_attn_norm, L.dln1.data(), x, L.rstd1.data(), N, C);
}

void Stage::reset_expert_load() { std::fill(load_.begin(), load_.end(), 0); }

void Stage::update_expert_bias(std::span<const int64_t> load, float rate) {
  if (load.size() != load_.size()) throw std::logic_error("update_expert_bias: load table shape");
  const int E = cfg_.experts;
  for (const auto& p : layers_) {
    if (!p.moe) continue;
    const int64_t* row = load.data() + (size_t)p.load_row * E;
    double mean = 0.0;
    for (int e = 0; e < E; ++e) mean += row[e];
    mean /= E;
    for (int e = 0; e < E; ++e) {
      const double err = mean - row[e];
      p.bias[e] += rate * (float)((err > 0) - (err < 0));
    }
  }
}

}  // namespace duet::model
