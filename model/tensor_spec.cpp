#include "model/tensor_spec.h"

#include <stdexcept>

namespace duet::model {

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

void add_layer(std::vector<TensorSpec>& out, const ModelConfig& c, int l, int e0, int e1) {
  const std::string p = "layers." + std::to_string(l) + ".";
  const int64_t C = c.d_model;
  out.push_back({p + "attn_norm.weight", {C}, TensorRole::Norm, l});
  out.push_back({p + "attn.wqkv", {3 * C, C}, TensorRole::Weight, l});
  out.push_back({p + "attn.wo", {C, C}, TensorRole::Weight, l});
  out.push_back({p + "ffn_norm.weight", {C}, TensorRole::Norm, l});
  if (!c.is_moe(l)) {
    out.push_back({p + "ffn.w13", {2 * (int64_t)c.d_ff, C}, TensorRole::Weight, l});
    out.push_back({p + "ffn.w2", {C, c.d_ff}, TensorRole::Weight, l});
    return;
  }
  out.push_back({p + "moe.router", {c.experts, C}, TensorRole::Weight, l});
  out.push_back({p + "moe.bias", {c.experts}, TensorRole::State, l});
  if (c.d_shared() > 0) {
    out.push_back({p + "moe.shared.w13", {2 * (int64_t)c.d_shared(), C}, TensorRole::Weight, l});
    out.push_back({p + "moe.shared.w2", {C, c.d_shared()}, TensorRole::Weight, l});
  }
  for (int e = e0; e < e1; ++e) {
    const std::string q = p + "moe.experts." + std::to_string(e) + ".";
    out.push_back({q + "w13", {2 * (int64_t)c.d_expert, C}, TensorRole::Weight, l, e});
    out.push_back({q + "w2", {C, c.d_expert}, TensorRole::Weight, l, e});
  }
}

}  // namespace

std::vector<TensorSpec> stage_tensor_specs(const ModelConfig& cfg, const StageRange& r) {
  std::vector<TensorSpec> out;
  const int64_t C = cfg.d_model;
  const int e1 = r.expert_end < 0 ? cfg.experts : r.expert_end;
  if (r.embedding) out.push_back({"embed.weight", {cfg.vocab, C}, TensorRole::Weight});
  for (int l = r.first_layer; l < r.end_layer; ++l) add_layer(out, cfg, l, r.expert_begin, e1);
  if (r.head) {
    out.push_back({"final_norm.weight", {C}, TensorRole::Norm});
    out.push_back({"head.weight", {cfg.vocab, C}, TensorRole::Weight});
  }
  return out;
}

std::vector<TensorSpec> model_tensor_specs(const ModelConfig& cfg) {
  return stage_tensor_specs(cfg, StageRange::whole_model(cfg));
}

std::vector<StageRange> split_layers(const ModelConfig& cfg, int stages) {
  if (stages < 1) throw std::invalid_argument("split_layers: need at least one stage");
  std::vector<StageRange> out;
  int begin = 0;
  for (int s = 0; s < stages; ++s) {
    const int n = cfg.layers / stages + (s < cfg.layers % stages ? 1 : 0);
    out.push_back({begin, begin + n, s == 0, s == stages - 1, 0, cfg.experts});
    begin += n;
  }
  return out;
}

int64_t active_params_per_token(const ModelConfig& c) {
  const int64_t C = c.d_model;
  int64_t p = (int64_t)c.vocab * C + C;  // head + final norm
  for (int l = 0; l < c.layers; ++l) {
    p += 4 * C * C + 2 * C;
    if (!c.is_moe(l)) {
      p += 3 * C * c.d_ff;
    } else {
      p += (int64_t)c.experts * C + 3 * C * c.d_shared() + (int64_t)c.top_k * 3 * C * c.d_expert;
    }
  }
  return p;
}

double train_flops_per_token(const ModelConfig& c, int seq_len) {
  // Attention core per layer per token, forward: QKᵀ and PV each 2·T·C MACs-worth of FLOPs
  // over the full square; causal masking halves it → 2·T·C. Backward doubles: 3× in all.
  const double attn = 3.0 * 2.0 * seq_len * c.d_model * c.layers;
  return 6.0 * (double)active_params_per_token(c) + attn;
}

int64_t total_params(const ModelConfig& cfg) {
  int64_t n = 0;
  for (const auto& s : model_tensor_specs(cfg))
    if (s.trainable()) n += s.numel();
  return n;
}

}  // namespace duet::model
