#include "scheduler/cost_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace duet::sched {
namespace {

// Bytes per element. Activations travel in BF16 (FP32 for an FP32 model); with FP8 GEMMs the
// inputs of linear layers are cast to FP8 with one FP32 scale per 128 elements (DeepSeek-V3
// §3.3: 1x128 activation tiles), which is also how they are cached for the backward.
struct Formats {
  double act;       // activation element
  double gemm_in;   // input of a linear layer, as cast for the GEMM and cached
  bool fp8;
};

Formats formats(GemmPrecision p) {
  const double act = p == GemmPrecision::FP32 ? 4 : 2;
  if (p == GemmPrecision::FP8) return {act, 1 + 4.0 / 128, true};
  return {act, act, false};
}

// Memory-bound kernels as HBM traffic per token for a width w (elements). Each pass is
// read + write of what it touches; the backward of each roughly doubles it (reads the saved
// input and the incoming gradient, writes the outgoing one) and is charged to I.
struct Traffic {
  Formats fm;
  double norm(double w) const { return 2 * fm.act * w; }                     // RMSNorm
  double cast(double w) const { return fm.fp8 ? (fm.act + fm.gemm_in) * w : 0; }  // quantise for a GEMM
  double rope(double w) const { return 2 * fm.act * w; }
  double residual(double w) const { return 3 * fm.act * w; }                 // x + f(x)
  double swiglu(double w) const { return 2 * fm.act * w + fm.gemm_in * w; }  // gate, up -> act (cast fused)
  // FP8 weight gradients need X and dY transposed and re-quantised (cuBLAS-style BF16/FP32
  // GEMMs read either layout and need no pass).
  double transpose(double w) const { return fm.fp8 ? (fm.act + fm.gemm_in) * w : 0; }
};

// One linear layer: widths in and out per token (per routed copy for experts).
struct Linear {
  double in, out;
};

void add_linears(Piece& p, const Traffic& t, std::initializer_list<Linear> ls, double copies = 1) {
  for (const Linear& l : ls) {
    p.flops.gemm += copies * 2 * l.in * l.out;
    p.bytes.mem_w += copies * (t.transpose(l.in) + t.transpose(l.out));
    p.bytes.weight_grad += copies * t.fm.gemm_in * l.out;  // dY kept for the deferred W (X is already held)
  }
}

// Attention sub-block (pre-norm, projections, core, residual) of one layer.
void add_attention(Piece& p, const ModelShape& m, const Traffic& t, double ctx) {
  const double d = m.d_model, h = m.heads;
  const Formats& fm = t.fm;
  double f = t.norm(d) + t.cast(d) + t.residual(d);
  double recompute_norms = t.norm(d);
  if (m.mla) {
    const double dqk = m.qk_nope_head_dim + m.qk_rope_head_dim, dv = m.v_head_dim;
    const double qr = m.q_lora_rank, kr = m.kv_lora_rank, rope = m.qk_rope_head_dim;
    if (qr > 0) {
      add_linears(p, t, {{d, qr}, {qr, h * dqk}});
      // DeepSeek-V3 recomputes the MLA up-projections in the backward instead of storing Q, K, V.
      p.flops.recompute += 2 * qr * h * dqk;
      f += t.norm(qr) + t.cast(qr);
      recompute_norms += t.norm(qr);
    } else {
      add_linears(p, t, {{d, h * dqk}});
    }
    add_linears(p, t, {{d, kr + rope}, {kr, h * (m.qk_nope_head_dim + dv)}, {h * dv, d}});
    p.flops.recompute += 2 * kr * h * (m.qk_nope_head_dim + dv);
    f += t.norm(kr) + t.cast(kr) + t.rope(h * rope + rope) + t.cast(h * dv);
    recompute_norms += t.norm(kr);
    p.flops.attention += 2 * h * (dqk + dv) * ctx;
    // Block input (norm recompute), norm output as GEMM input, latent vectors, attention
    // output, log-sum-exp per head.
    p.bytes.activation += fm.act * d + fm.gemm_in * d + fm.act * (qr + kr + rope) + fm.act * h * dv + 4 * h;
    p.dense_params += (qr > 0 ? d * qr + qr * h * dqk + qr : d * h * dqk) + d * (kr + rope) + kr +
                      kr * h * (m.qk_nope_head_dim + dv) + h * dv * d + d;
  } else {
    add_linears(p, t, {{d, 3 * d}, {d, d}});
    f += t.rope(2 * d) + t.cast(d);
    p.flops.attention += 2 * h * (2 * d / h) * ctx;
    p.bytes.activation += fm.act * d + fm.gemm_in * d + 3 * fm.act * d + fm.act * d + 4 * h;
    p.dense_params += 4 * d * d + d;
  }
  p.bytes.mem_f += f;
  p.bytes.mem_i += 2 * f + recompute_norms;
}

void add_dense_ffn(Piece& p, const ModelShape& m, const Traffic& t) {
  const double d = m.d_model, ff = m.d_ff;
  add_linears(p, t, {{d, 2 * ff}, {ff, d}});
  const double f = t.norm(d) + t.cast(d) + t.swiglu(ff) + t.residual(d);
  p.bytes.mem_f += f;
  p.bytes.mem_i += 2 * f + t.norm(d);
  p.bytes.activation += t.fm.act * d + t.fm.gemm_in * d + t.fm.gemm_in * 2 * ff;  // SwiGLU inputs cached
  p.dense_params += 3 * d * ff + d;
}

void add_moe_ffn(Piece& p, const ModelShape& m, const Traffic& t, const Routing& route) {
  const double d = m.d_model, de = m.d_expert, k = m.top_k, sh = m.shared_experts, E = m.experts;
  const Formats& fm = t.fm;
  add_linears(p, t, {{d, 2 * de}, {de, d}}, k + sh);
  p.flops.gemm_bf16 += 2 * d * E;  // router, kept in BF16 (DeepSeek-V3 §3.3.1)
  const double f = t.norm(d) + t.cast(d) + 3 * 4 * E  // norm, FP8 for dispatch, router scores / top-k
                   + k * 2 * fm.gemm_in * d          // permute received copies to expert order
                   + (k + sh) * t.swiglu(de)         // expert activations
                   + k * fm.act * d + fm.act * d     // combine: weighted sum of k copies
                   + 2 * t.residual(d);              // + shared expert, + residual
  p.bytes.mem_f += f;
  p.bytes.mem_i += 2 * f + t.norm(d);
  p.bytes.activation += fm.act * d + fm.gemm_in * d + 4 * E + k * (fm.gemm_in * d + fm.gemm_in * 2 * de) +
                        sh * fm.gemm_in * 2 * de;
  // Dispatch in the GEMM format (FP8 with scales), combine in BF16; the backward sends
  // gradients both ways in BF16.
  const double disp = fm.fp8 ? fm.gemm_in * d : fm.act * d, comb = fm.act * d;
  p.bytes.a2a_ib_f += route.ib_copies * (disp + comb);
  p.bytes.a2a_nvl_f += route.nvlink_copies * (disp + comb);
  p.bytes.a2a_ib_b += route.ib_copies * 2 * comb;
  p.bytes.a2a_nvl_b += route.nvlink_copies * 2 * comb;
  p.dense_params += sh * 3 * d * de + d * E + d;
  p.expert_params += E * 3 * d * de;
  p.moe_layers += 1;
}

void add_head(Piece& p, const ModelShape& m, const Traffic& t) {
  const double d = m.d_model, V = m.vocab;
  p.flops.gemm_bf16 += 2 * d * V;  // output head in BF16
  // Final norm; cross-entropy reads the logits, its backward reads them and writes their gradient.
  p.bytes.mem_f += t.norm(d) + t.fm.act * V;
  p.bytes.mem_i += 2 * t.norm(d) + 2 * t.fm.act * V;
  p.bytes.activation += t.fm.act * d + t.fm.act * V;  // final hidden, logits for the loss backward
  p.bytes.weight_grad += t.fm.act * V;
}

double expected_distinct(double items, double bins) {  // balls in bins, uniform
  return bins <= 0 ? 0 : bins * (1 - std::pow(1 - 1 / bins, items));
}

double choose(double n, double k) {
  if (k < 0 || k > n) return 0;
  double r = 1;
  for (int i = 1; i <= static_cast<int>(k); ++i) r = r * (n - k + i) / i;
  return r;
}

}  // namespace

std::vector<int> balance_stages(const std::vector<double>& cost, int S, double first, double last) {
  const int L = static_cast<int>(cost.size());
  std::vector<double> pre(L + 1, 0);
  for (int i = 0; i < L; ++i) pre[i + 1] = pre[i] + cost[i];
  const double inf = std::numeric_limits<double>::infinity();
  // best[s][j]: the smallest largest-stage over stages 0..s-1 covering layers [0, j).
  std::vector<std::vector<double>> best(S + 1, std::vector<double>(L + 1, inf));
  std::vector<std::vector<int>> cut(S + 1, std::vector<int>(L + 1, 0));
  best[0][0] = 0;
  for (int s = 1; s <= S; ++s)
    for (int j = s; j <= L - (S - s); ++j)
      for (int i = s - 1; i < j; ++i) {
        if (best[s - 1][i] == inf) continue;
        double c = pre[j] - pre[i] + (s == 1 ? first : 0) + (s == S ? last : 0);
        double v = std::max(best[s - 1][i], c);
        if (v < best[s][j]) best[s][j] = v, cut[s][j] = i;
      }
  std::vector<int> bounds(S + 1, L);
  for (int s = S, j = L; s >= 1; --s) {
    bounds[s] = j;
    j = cut[s][j];
    bounds[s - 1] = j;
  }
  return bounds;
}

Routing expected_routing(const ModelShape& m, int ep, int gpn) {
  Routing r;
  if (m.experts <= 0 || m.top_k <= 0) return r;
  const double k = m.top_k;
  if (ep <= gpn) {  // the EP group fits in one node: NVLink only
    r.nodes_reached = 1;
    r.nvlink_copies = expected_distinct(k, ep) * (1 - 1.0 / ep);
    return r;
  }
  const double nodes = static_cast<double>(ep) / gpn;
  if (m.group_limit < m.expert_groups && m.expert_groups % static_cast<int>(nodes) == 0) {
    // Groups live inside nodes; a token's experts come from `group_limit` groups picked among
    // all, each picked group holding at least one of them (groups are ranked by their best
    // experts). Expected nodes holding a picked group: hypergeometric.
    const double G = m.expert_groups, per_node = G / nodes, lim = m.group_limit;
    r.nodes_reached = nodes * (1 - choose(G - per_node, lim) / choose(G, lim));
  } else {
    r.nodes_reached = expected_distinct(k, nodes);
  }
  // The own node is among those reached with probability nodes_reached / nodes (symmetry);
  // every other reached node costs one IB copy, after which NVLink fans it out to the GPUs
  // holding its experts, except the GPU it landed on.
  r.ib_copies = r.nodes_reached * (1 - 1 / nodes);
  const double per_node_experts = k / r.nodes_reached;
  r.nvlink_copies = r.nodes_reached * expected_distinct(per_node_experts, gpn) * (1 - 1.0 / gpn);
  return r;
}

std::vector<Piece> model_pieces(const ModelShape& m, const Layout& layout, const ClusterSpec& c) {
  const Traffic t{formats(m.precision)};
  const double ctx = (layout.seq_len + 1) / 2.0;  // causal: token i attends to i tokens
  const Routing route = expected_routing(m, layout.ep, c.gpus_per_node);
  std::vector<Piece> pieces;
  Piece emb{PieceKind::Embedding, {}, {}};
  emb.bytes.mem_f = 2 * t.fm.act * m.d_model;
  emb.bytes.mem_w = 2 * 4.0 * m.d_model;  // scatter-add into the FP32 gradient
  emb.dense_params = static_cast<double>(m.vocab) * m.d_model;
  pieces.push_back(emb);
  for (int l = 0; l < m.layers; ++l) {
    const bool dense = l < m.dense_layers;
    Piece p{dense ? PieceKind::DenseLayer : PieceKind::MoeLayer, {}, {}};
    add_attention(p, m, t, ctx);
    dense ? add_dense_ffn(p, m, t) : add_moe_ffn(p, m, t, route);
    pieces.push_back(p);
  }
  for (int k = 0; k < m.mtp_depth; ++k) {
    // DeepSeek-V3 §2.2: norms of the hidden state and of the next token's embedding,
    // projection 2d -> d, one transformer block (MoE), the shared output head.
    Piece p{PieceKind::Mtp, {}, {}};
    const double d = m.d_model;
    add_linears(p, t, {{2 * d, d}});
    p.bytes.mem_f += 2 * t.norm(d) + t.cast(2 * d);
    p.bytes.mem_i += 4 * t.norm(d) + 2 * t.cast(2 * d);
    p.bytes.activation += 2 * t.fm.act * d + t.fm.gemm_in * 2 * d;
    p.dense_params += 2 * d * d + 2 * d;
    add_attention(p, m, t, ctx);
    m.layers > m.dense_layers ? add_moe_ffn(p, m, t, route) : add_dense_ffn(p, m, t);
    add_head(p, m, t);
    pieces.push_back(p);
  }
  Piece head{PieceKind::Head, {}, {}};
  add_head(head, m, t);
  head.dense_params = static_cast<double>(m.vocab) * m.d_model + m.d_model;
  pieces.push_back(head);
  return pieces;
}

}  // namespace duet::sched
