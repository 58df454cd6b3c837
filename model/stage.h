#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "kernels/backend.h"
#include "kernels/buffer.h"
#include "model/arena.h"
#include "model/config.h"
#include "model/expert_exchange.h"
#include "model/tensor_spec.h"

// A stage: a contiguous run of transformer layers (plus the embedding on the first stage and
// final norm + head + loss on the last) with forward, backward-for-input and
// backward-for-weight per micro-batch. Pipeline schedules call these three separately
// (ZB1P and DualPipe defer the weight part); `backward` runs both.
//
// Shapes: B = sequences in the micro-batch, T = sequence length, N = B·T tokens,
// C = d_model, H = heads, D = C/H, V = vocab, E = routed experts, K = top_k.
// Invariants: parameter gradients accumulate (+=) so micro-batches add up; a micro-batch's
// activations live in its own StageActivations from forward until its weight pass.

namespace duet::model {

struct MicroBatch {
  int batch = 1;
  int seq_len = 0;
  const int32_t* tokens = nullptr;   // (B, T), first stage only
  const int32_t* targets = nullptr;  // (B, T), last stage only
  bool training = true;              // training forwards count the experts' load
};

// Everything one layer keeps between its forward and its weight pass.
struct LayerActivations {
  kernels::Buffer<float> x1, ln1, rstd1, qkv, att_saved, att, ln2, rstd2;
  kernels::Buffer<float> ab, h;                   // dense FFN or shared expert: (N,2F), (N,F)
  // MoE, sender layout (one row per (token, k), grouped by global expert): scores (N,E),
  // gate (N,K), xp and yp (NK,C). Owner layout (rows this rank's experts compute, see
  // model/expert_exchange.h; the same buffer as the sender layout without expert
  // parallelism): xo (R,C), abo (R,2Fe), ho (R,Fe), yo (R,C).
  kernels::Buffer<float> scores, gate, xp, yp, xo, abo, ho, yo;
  kernels::Buffer<int32_t> expert, row_of, offsets; // MoE routing: (N,K) (N·K) (E+1)
  ExpertPlan plan;
  // Gradients stashed by backward-input for backward-weight.
  kernels::Buffer<float> dx1, dqkv, dln1, dln2, dab, dabo, dyp, dyo, dlogits;
};

struct StageActivations {
  int batch = 0, seq_len = 0;
  kernels::Buffer<int32_t> tokens, targets;
  std::vector<kernels::Buffer<float>> res;  // residual stream at each layer boundary: (N,C)
  std::vector<kernels::Buffer<float>> dres;  // its gradient
  std::vector<LayerActivations> layers;
  kernels::Buffer<float> lnf, rstdf, logits, dlnf;  // head: logits become probs, then dlogits
  double loss_sum = 0.0;                         // Σ token losses (head stage)
  bool awaiting_weight = false;                  // backward-input done, weight pass pending
};

class Stage {
 public:
  // The stage's tensors must be in `arena` (stage_tensor_specs(cfg, range) or a superset).
  // A range holding only some experts needs `exchange`: the expert-parallel group that holds
  // the others (group rank g owns experts [g·El, (g+1)·El)). The stage computes with the
  // arena's backend, which must implement every op (else std::logic_error).
  Stage(const ModelConfig& cfg, const StageRange& range, ParamArena& arena,
        ExpertExchange* exchange = nullptr);
  ~Stage();
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  // Whether the host reads what forward and backward_input produce (the output, the input
  // gradient) once they return — true by default: they end by waiting for the device. False
  // when the caller's sends are ordered after the kernels on the device instead (the engine
  // over NCCL): they end without a wait, and the stage's next op — perhaps on another thread,
  // so on another stream — first waits for them (a mark, kernels::Backend). The weight passes
  // always end waiting (gradients are reduced next), and so does anything the host reads
  // mid-op (routing, the loss).
  void set_outputs_read_on_host(bool on) { outputs_read_on_host_ = on; }
  bool outputs_read_on_host() const { return outputs_read_on_host_; }
  // The host waits until the stage's last op's kernels are done (nothing when it waited
  // itself): what an engine step does at its end, before the next step's receives land in
  // the inboxes and the next stretch's weight copies are cast.
  void wait_pending();

  const StageRange& range() const { return range_; }
  const ModelConfig& config() const { return cfg_; }
  int num_layers() const { return range_.end_layer - range_.first_layer; }

  // x_in: (N, C) output of the previous stage; ignored on the first stage (tokens instead).
  void forward(StageActivations& a, const MicroBatch& mb, const float* x_in);
  const float* output(const StageActivations& a) const { return a.res.back().data(); }
  double loss_sum(const StageActivations& a) const { return a.loss_sum; }

  // dy: (N, C) gradient of this stage's output; ignored on the last stage, where the gradient
  // starts from the loss, scaled by loss_scale (1 / tokens in the global batch).
  void backward_input(StageActivations& a, const float* dy, float loss_scale);
  const float* input_grad(const StageActivations& a) const { return a.dres.front().data(); }
  void backward_weight(StageActivations& a);
  // The weight pass in parts, for filling communication waits with it: part 0 the head (or
  // nothing), parts 1..L the layers from the last, part L+1 the embedding (or nothing).
  // Running every part in order is backward_weight(a), bit for bit; parts of one micro-batch
  // touch disjoint gradients, and a part may run while another micro-batch's forward or
  // backward-input is paused (it reads only `a` and writes only parameter gradients).
  int weight_parts() const { return num_layers() + 2; }
  void backward_weight_part(StageActivations& a, int part);
  void backward(StageActivations& a, const float* dy, float loss_scale) {
    backward_input(a, dy, loss_scale);
    backward_weight(a);
  }

  // Tokens routed to each expert by training forwards since the last reset:
  // (MoE layers of this stage) × E, row-major in layer order.
  std::span<const int64_t> expert_load() const { return load_; }
  int moe_layers() const { return (int)load_.size() / std::max(cfg_.experts, 1); }
  void reset_expert_load();
  // Auxiliary-loss-free balancing: bias_e += rate · sign(mean load − load_e), per layer,
  // from a load table shaped like expert_load() (summed over all ranks by the caller).
  void update_expert_bias(std::span<const int64_t> load, float rate);

 private:
  struct LayerParams {
    int layer;
    bool moe;
    float *attn_norm, *wqkv, *wo, *ffn_norm, *w13, *w2, *router, *bias, *sw13, *sw2;
    float *g_attn_norm, *g_wqkv, *g_wo, *g_ffn_norm, *g_w13, *g_w2, *g_router, *g_sw13, *g_sw2;
    std::vector<float*> ew13, ew2, g_ew13, g_ew2;  // this stage's routed experts, local index
    int load_row;                                   // row in load_ (MoE layers)
  };

  void layer_forward(const LayerParams& p, LayerActivations& L, const float* x, float* y, int B,
                     int T, bool training);
  void layer_backward_input(const LayerParams& p, LayerActivations& L, const float* x,
                            const float* dy, float* dx, int B, int T);
  void layer_backward_weight(const LayerParams& p, LayerActivations& L, const float* x, const float* dy,
                             int N);

  // Feed-forward halves: dense SwiGLU or MoE (shared + routed experts). `in` is the normed
  // input ln2 (N,C); the FFN output is added to `out`.
  void ffn_forward(const LayerParams& p, LayerActivations& L, float* out, int N, bool training);
  void ffn_backward_input(const LayerParams& p, LayerActivations& L, const float* dy, int N);
  void ffn_backward_weight(const LayerParams& p, LayerActivations& L, const float* dy, int N);

  const float* rope_table(int T);
  // Each op begins with begin_op (the host waits for the stage's previous op when that ran on
  // another thread and did not wait itself) and ends with end_op (waits for its own kernels
  // when the host reads next, else marks where they end).
  void begin_op();
  void end_op(bool host_reads);

  ModelConfig cfg_;
  StageRange range_;
  ParamArena& arena_;
  const kernels::Backend& ops_;  // every kernel call goes through this table (arena_.backend())
  ExpertExchange* exchange_ = nullptr;
  std::vector<LayerParams> layers_;
  float *embed_ = nullptr, *g_embed_ = nullptr, *final_norm_ = nullptr, *g_final_norm_ = nullptr,
        *head_ = nullptr, *g_head_ = nullptr;
  std::vector<int64_t> load_;
  kernels::Buffer<float> rope_;
  int rope_T_ = 0;
  // Per-call temporaries (one op runs at a time), one per use: a buffer shared by uses of
  // different sizes would grow, and so wait for the device, at every other use (buffers.h).
  kernels::Buffer<float> datt_, dgate_, dh_dense_, dh_shared_, dho_, dxo_, dxp_;
  bool outputs_read_on_host_ = true;
  // The previous op: where its kernels end (a mark, when it did not wait for them) and which
  // thread ran it; touched under the engine's baton only. Ops may alternate threads, and a
  // deferred weight part may run while another op of the stage is paused (waiting for an
  // expert exchange, baton released): that is safe because (1) an op waits for its kernels
  // before it lets the baton go mid-op (model/ffn.cpp synchronizes before every exchange),
  // (2) weight parts grow no buffer and use no stage temporary, and (3) they write only
  // gradients and end waiting for their kernels. A change to any of the three must revisit
  // begin_op/end_op.
  void* last_op_mark_ = nullptr;
  bool last_op_pending_ = false;
  std::thread::id last_op_thread_;
};

}  // namespace duet::model
