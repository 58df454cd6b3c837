#include "kernels/attention.h"
#include "kernels/cpu/isa_clones.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/reduce.h"
#include "kernels/profile.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

// Causal attention, one head at a time, with its own register-blocked products instead of
// SGEMM calls: per head the products are small (T×T×D with D = 32 or 64) and strided (rows of
// qkv are 3C apart), and a library call per 64-row tile ran at ~20–35 GFLOP/s — a quarter of a
// d256 step went there. Here each head's q, k, v (and dO) are first copied into contiguous
// buffers whose width D is padded to kCols, then two kernels do all the work:
//   scores:  S[i, j] = Σ_d X[i, d] · Yᵀ[d, j]          (QKᵀ, dO·Vᵀ), only j < i + R rounded up
//   mix:     O[i, :] = Σ_j A(i, j) · M[j, :]           (P·V, dS·K; with A transposed: Pᵀ·dO, dSᵀ·Q)
// both on R rows × W vectors of output columns held in registers, skipping the masked upper
// triangle in blocks of R rows. The block is sized to the vector registers of the ISA the
// loader picked (isa_clones.h): AVX-512 (32 registers) R = 8 rows × 2 v16 = 32 columns, 16
// accumulators (each loaded row of the other operand feeds twice the FMAs of R = 4, 1.05–1.11×
// on the attention benchmark, docs/PERFORMANCE.md); AVX2 and the SSE baseline (16 registers)
// R = 6 × 2 vectors of their own width (16 or 8 columns), 12 accumulators, two loads and a
// broadcast. A block wider than the registers (16-float vectors on AVX2, as before) spills its
// accumulators to the stack on every FMA: attention then ran at 1.5 GFLOP/s on a Zen 3 and took
// 73% of a d256 step. Each output element is the same sum in the same order for any block (a
// larger block only adds exact zeros from the masked triangle), so for finite inputs results
// depend only on the shapes and the ISA, never on the block or on the thread that computes a head.

namespace duet::cpu {

namespace {

typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));
constexpr int kCols = 32;  // D and T are padded to a multiple of this; every block's width divides it
constexpr int round_up(int x, int m) { return (x + m - 1) / m * m; }

// Per-thread scratch for one head (the head functions run on the compute threads: thread_local is
// the running thread's own).
struct HeadScratch {
  std::vector<float> x, yt, m, m2, s;
  float* get(std::vector<float>& v, size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  }
};

}  // namespace

#define DUET_LOAD(v, p) __builtin_memcpy(&(v), (p), sizeof(V))
#define DUET_STORE(p, v) __builtin_memcpy((p), &(v), sizeof(V))

// S[i, j] for rows i in [0, T) and columns j in [0, min(ldy, round_up(i0 + R, N))) of each row
// block i0 (N = W vectors of V, the block's columns): X is T × Dp (row stride Dp), Yt is Dp × ldy
// (ldy a multiple of kCols, zero beyond the valid columns), S has row stride lds ≥ ldy. Rows
// past T in the last block repeat row T−1 and are not stored.
template <typename V, int R, int W>
static inline __attribute__((always_inline)) void att_scores_rows(float* S, int lds, const float* X, const float* Yt,
                                                                  int ldy, int T, int Dp) {
  constexpr int N = W * (int)(sizeof(V) / sizeof(float));
  // Every block width divides the buffers' padding, and is a multiple of the softmax's 8.
  static_assert(kCols % N == 0 && N % 8 == 0);
  for (int i0 = 0; i0 < T; i0 += R) {
    const float* x[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) x[r] = X + (size_t)std::min(i0 + r, T - 1) * Dp;
    const int jend = std::min(ldy, round_up(i0 + R, N));
    const int rows = std::min(R, T - i0);
    for (int j = 0; j < jend; j += N) {
      V acc[R][W] = {};
      for (int d = 0; d < Dp; ++d) {
        V y[W];
#pragma GCC unroll 4
        for (int w = 0; w < W; ++w) DUET_LOAD(y[w], Yt + (size_t)d * ldy + j + w * (N / W));
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const float b = x[r][d];
#pragma GCC unroll 4
          for (int w = 0; w < W; ++w) acc[r][w] += b * y[w];
        }
      }
      float* out = S + (size_t)i0 * lds + j;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        if (r < rows)
#pragma GCC unroll 4
          for (int w = 0; w < W; ++w) DUET_STORE(out + (size_t)r * lds + w * (N / W), acc[r][w]);
    }
  }
}

static std::atomic<int> g_forced_block{kAttentionBlockAuto};

void set_attention_block_for_testing(int block) { g_forced_block.store(block, std::memory_order_relaxed); }

// Which of the loader's three clones runs (isa_clones.h): the block that fits its registers.
static inline int att_isa() {
  if (const int forced = g_forced_block.load(std::memory_order_relaxed); forced != kAttentionBlockAuto) return forced;
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("x86-64-v4")) return 2;
  if (__builtin_cpu_supports("x86-64-v3")) return 1;
#endif
  return 0;
}

int attention_block() { return att_isa(); }

DUET_ISA_CLONES void att_scores(float* S, int lds, const float* X, const float* Yt, int ldy, int T, int Dp) {
  switch (att_isa()) {
    case 2: att_scores_rows<v16, 8, 2>(S, lds, X, Yt, ldy, T, Dp); break;
    case 1: att_scores_rows<v8, 6, 2>(S, lds, X, Yt, ldy, T, Dp); break;
    default: att_scores_rows<v4, 6, 2>(S, lds, X, Yt, ldy, T, Dp); break;
  }
}

// O[i, d] = alpha · Σ_j A(i, j) · M[j, d] for i in [0, T), d in [0, D): A(i, j) = A[i·lda + j],
// or A[j·lda + i] when trans_a. Causal ranges: j in [0, min(T, i0 + R)) for the row block
// i0, or j in [i0, T) when trans_a (A must be 0 where j > i, resp. j < i, inside the block).
// M is T × Dp (row stride Dp, Dp a multiple of kCols, zero beyond D); O has row stride ldo.
template <typename V, int R, int W, bool Trans>
static inline __attribute__((always_inline)) void att_mix_rows(float* O, int ldo, float alpha, const float* A, int lda,
                                                               const float* M, int T, int D, int Dp) {
  constexpr int N = W * (int)(sizeof(V) / sizeof(float));
  static_assert(kCols % N == 0 && N % 8 == 0);
  for (int i0 = 0; i0 < T; i0 += R) {
    // A(i, j) for the block's row r is a[r][j · step]; rows past T repeat row T−1.
    const float* a[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const int i = std::min(i0 + r, T - 1);
      a[r] = Trans ? A + i : A + (size_t)i * lda;
    }
    const size_t step = Trans ? (size_t)lda : 1;
    const int jb = Trans ? i0 : 0, je = Trans ? T : std::min(T, i0 + R);
    const int rows = std::min(R, T - i0);
    for (int c = 0; c < D; c += N) {
      V acc[R][W] = {};
      for (int j = jb; j < je; ++j) {
        V m[W];
#pragma GCC unroll 4
        for (int w = 0; w < W; ++w) DUET_LOAD(m[w], M + (size_t)j * Dp + c + w * (N / W));
        const size_t at = (size_t)j * step;
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const float b = a[r][at];
#pragma GCC unroll 4
          for (int w = 0; w < W; ++w) acc[r][w] += b * m[w];
        }
      }
      float tile[R][N];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int w = 0; w < W; ++w) DUET_STORE(&tile[r][w * (N / W)], acc[r][w]);
      const int cols = std::min(N, D - c);
      for (int r = 0; r < rows; ++r)
        for (int k = 0; k < cols; ++k) O[(size_t)(i0 + r) * ldo + c + k] = alpha * tile[r][k];
    }
  }
}

template <typename V, int R, int W>
static inline __attribute__((always_inline)) void att_mix_isa(float* O, int ldo, float alpha, const float* A, int lda,
                                                              bool trans_a, const float* M, int T, int D, int Dp) {
  if (trans_a)
    att_mix_rows<V, R, W, true>(O, ldo, alpha, A, lda, M, T, D, Dp);
  else
    att_mix_rows<V, R, W, false>(O, ldo, alpha, A, lda, M, T, D, Dp);
}

DUET_ISA_CLONES void att_mix(float* O, int ldo, float alpha, const float* A, int lda, bool trans_a, const float* M,
                             int T, int D, int Dp) {
  switch (att_isa()) {
    case 2: att_mix_isa<v16, 8, 2>(O, ldo, alpha, A, lda, trans_a, M, T, D, Dp); break;
    case 1: att_mix_isa<v8, 6, 2>(O, ldo, alpha, A, lda, trans_a, M, T, D, Dp); break;
    default: att_mix_isa<v4, 6, 2>(O, ldo, alpha, A, lda, trans_a, M, T, D, Dp); break;
  }
}

#undef DUET_LOAD
#undef DUET_STORE

// dst[t, 0:Dp] = alpha · src[t·ld + 0:D], zero-padded to Dp.
DUET_ISA_CLONES void att_copy_padded(float* dst, const float* src, int ld, int T, int D, int Dp, float alpha) {
  for (int t = 0; t < T; ++t) {
    float* o = dst + (size_t)t * Dp;
    const float* s = src + (size_t)t * ld;
    for (int d = 0; d < D; ++d) o[d] = alpha * s[d];
    for (int d = D; d < Dp; ++d) o[d] = 0.0f;
  }
}

// dst[d, t] = src[t·ld + d] for d < D, t < T; zero elsewhere in Dp × ldt (ldt a multiple of
// 16). In blocks of 16 t, so that each store is 16 contiguous floats.
DUET_ISA_CLONES void att_copy_transposed(float* dst, int ldt, const float* src, int ld, int T, int D, int Dp) {
  std::fill(dst + (size_t)D * ldt, dst + (size_t)Dp * ldt, 0.0f);
  for (int t0 = 0; t0 < ldt; t0 += 16) {
    const int n = std::max(0, std::min(16, T - t0));
    for (int d = 0; d < D; ++d) {
      float block[16] = {};
      for (int k = 0; k < n; ++k) block[k] = src[(size_t)(t0 + k) * ld + d];
      std::copy(block, block + 16, dst + (size_t)d * ldt + t0);
    }
  }
}

// Softmax of the causal part of rows [0, T) of S (row stride lds) straight into probs (row
// stride T, zero above the diagonal), which the forward's P·V then reads: one pass over the
// T×T block instead of softmax in S and a copy. The exponentials run to a multiple of 8
// columns (within the row): a row's odd tail in the compiler's scalar loop took most of the
// softmax's time on AVX2. The extra columns are ones att_scores computed (its blocks end on a
// multiple of 8); their values are overwritten with the zeros above the diagonal, never summed.
DUET_ISA_CLONES void att_softmax(float* probs, const float* S, int lds, int T) {
  for (int t = 0; t < T; ++t) {
    const float* row = S + (size_t)t * lds;
    float* p = probs + (size_t)t * T;
    const float m = max_lanes(row, t + 1);
    const int n = std::min(T, round_up(t + 1, 8));
    for (int s = 0; s < n; ++s) p[s] = fast_exp(row[s] - m);  // vectorised
    const float inv = 1.0f / sum_lanes(p, t + 1);
    for (int s = 0; s <= t; ++s) p[s] *= inv;
    for (int s = t + 1; s < T; ++s) p[s] = 0.0f;
  }
}

// dS = P ⊙ (dP − Σ_s P⊙dP) in place of dP (row stride lds), 0 above the diagonal up to T.
DUET_ISA_CLONES void att_softmax_backward(float* dP, int lds, const float* probs, int T) {
  for (int t = 0; t < T; ++t) {
    const float* pr = probs + (size_t)t * T;
    float* dr = dP + (size_t)t * lds;
    const float dot = dot_lanes(pr, dr, t + 1);
    for (int s = 0; s <= t; ++s) dr[s] = pr[s] * (dr[s] - dot);
    for (int s = t + 1; s < T; ++s) dr[s] = 0.0f;
  }
}

namespace {

// Heads [bh0, bh1) of B·H (bh = b·H + h). Heads are independent — each writes its own columns
// of out/dqkv and its own T×T block of probs — so the callers split them over threads
// (parallel.h).
void forward_heads(float* out, float* probs, const float* qkv, int T, int H, int D, long bh0, long bh1) {
  thread_local HeadScratch scratch;
  const int C = H * D, Dp = round_up(D, kCols), Tp = round_up(T, kCols);
  const float scale = 1.0f / std::sqrt((float)D);
  float* q = scratch.get(scratch.x, (size_t)T * Dp);
  float* kt = scratch.get(scratch.yt, (size_t)Dp * Tp);
  float* v = scratch.get(scratch.m, (size_t)T * Dp);
  float* S = scratch.get(scratch.s, (size_t)T * Tp);
  for (long bh = bh0; bh < bh1; ++bh) {
    const int b = (int)(bh / H), h = (int)(bh % H);
    const float* qkv_h = qkv + (size_t)b * T * 3 * C + h * D;
    att_copy_padded(q, qkv_h, 3 * C, T, D, Dp, scale);  // the scale folded into q
    att_copy_transposed(kt, Tp, qkv_h + C, 3 * C, T, D, Dp);
    att_copy_padded(v, qkv_h + 2 * C, 3 * C, T, D, Dp, 1.0f);
    float* p = probs + (size_t)bh * T * T;
    att_scores(S, Tp, q, kt, Tp, T, Dp);
    att_softmax(p, S, Tp, T);
    att_mix(out + (size_t)b * T * C + h * D, C, 1.0f, p, T, false, v, T, D, Dp);
  }
}

void backward_heads(float* dqkv, const float* dout, const float* qkv, const float* probs, int T, int H, int D,
                    long bh0, long bh1) {
  thread_local HeadScratch scratch;
  const int C = H * D, Dp = round_up(D, kCols), Tp = round_up(T, kCols);
  const float scale = 1.0f / std::sqrt((float)D);
  float* dO = scratch.get(scratch.x, (size_t)T * Dp);
  float* vt = scratch.get(scratch.yt, (size_t)Dp * Tp);
  float* q = scratch.get(scratch.m, (size_t)T * Dp);
  float* k = scratch.get(scratch.m2, (size_t)T * Dp);
  float* dS = scratch.get(scratch.s, (size_t)T * Tp);
  for (long bh = bh0; bh < bh1; ++bh) {
    const int b = (int)(bh / H), h = (int)(bh % H);
    const size_t base = (size_t)b * T * 3 * C + h * D;
    const float* p = probs + (size_t)bh * T * T;
    att_copy_padded(dO, dout + (size_t)b * T * C + h * D, C, T, D, Dp, 1.0f);
    att_copy_transposed(vt, Tp, qkv + base + 2 * C, 3 * C, T, D, Dp);
    att_scores(dS, Tp, dO, vt, Tp, T, Dp);  // dP = dO Vᵀ
    att_softmax_backward(dS, Tp, p, T);
    float* dq = dqkv + base;
    // dV = Pᵀ dO, dQ = scale · dS K, dK = scale · dSᵀ Q
    att_mix(dq + 2 * C, 3 * C, 1.0f, p, T, true, dO, T, D, Dp);
    att_copy_padded(k, qkv + base + C, 3 * C, T, D, Dp, 1.0f);
    att_mix(dq, 3 * C, scale, dS, Tp, false, k, T, D, Dp);
    att_copy_padded(q, qkv + base, 3 * C, T, D, Dp, 1.0f);
    att_mix(dq + C, 3 * C, scale, dS, Tp, true, q, T, D, Dp);
  }
}

}  // namespace

void attention_forward(float* out, float* probs, const float* qkv, int B, int T, int H, int D) {
  DUET_PROFILE("attention");
  parallel_ranges((long)B * H, 2.0 * T * T, [&](long bh0, long bh1) {
    forward_heads(out, probs, qkv, T, H, D, bh0, bh1);
  });
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* /*out*/, const float* probs,
                        int B, int T, int H, int D) {
  DUET_PROFILE("attention");
  parallel_ranges((long)B * H, 3.0 * T * T, [&](long bh0, long bh1) {
    backward_heads(dqkv, dout, qkv, probs, T, H, D, bh0, bh1);
  });
}

size_t attention_saved_floats(int B, int T, int H, int /*D*/) { return (size_t)B * H * T * T; }

}  // namespace duet::cpu
