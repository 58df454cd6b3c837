#pragma once
// The model's own view of its shape: plain numbers, filled from the run config by the runtime.

namespace duet::model {

struct ModelConfig {
  int vocab = 256;
  int d_model = 128;
  int layers = 4;
  int heads = 4;
  int dense_layers = 1;   // the first layers use a dense SwiGLU FFN, the rest MoE
  int d_ff = 384;         // dense FFN width
  int experts = 8;        // routed experts per MoE layer
  int top_k = 2;
  int shared_experts = 1; // shared expert width = shared_experts · d_expert
  int d_expert = 128;     // routed expert FFN width
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;

  int head_dim() const { return d_model / heads; }
  bool is_moe(int layer) const { return layer >= dense_layers && experts > 0; }
  int d_shared() const { return shared_experts * d_expert; }
};

}  // namespace duet::model
