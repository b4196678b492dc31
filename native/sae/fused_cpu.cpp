// Fused CPU SAE step (see fused_cpu.h): addmm encoder + one epilogue pass selecting active latents, sparse
// decoder by gathering decoder rows, hand-written backward accumulated per latent. No autograd. Also the jumprelu
// epilogues that are the CPU reference of the CUDA ones.
#include "sae/fused_cpu.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <vector>

#include "common/error.h"
#include "common/runtime.h"
#include "sae/kernels.h"

namespace qsae::sae {

namespace {

CpuKernelChoice g_kernels("sae");

bool use_avx2() { return g_kernels.avx2(); }

void gather_axpy(const float* rows, int64_t ld, const int32_t* idx, const float* a, int64_t cnt, const float* base,
                 float* out, int64_t n) {
  (use_avx2() ? kern::gather_axpy_avx2 : kern::gather_axpy_generic)(rows, ld, idx, a, cnt, base, out, n);
}
void gather_dot(const float* x, const float* rows, int64_t ld, const int32_t* idx, int64_t cnt, float* out, int64_t n) {
  (use_avx2() ? kern::gather_dot_avx2 : kern::gather_dot_generic)(x, rows, ld, idx, cnt, out, n);
}
double residual(float* r, const float* bias, const float* x, float scale, int64_t n) {
  return (use_avx2() ? kern::residual_avx2 : kern::residual_generic)(r, bias, x, scale, n);
}
void top_k(const float* row, int64_t n, int64_t k, int32_t* scratch, int32_t* out) {
  (use_avx2() ? kern::top_k_avx2 : kern::top_k_generic)(row, n, k, scratch, out);
}
int64_t count_relu(const float* pre, int64_t n, float lo) {
  return (use_avx2() ? kern::count_relu_avx2 : kern::count_relu_generic)(pre, n, lo);
}
int64_t count_jumprelu(const float* pre, const float* thr, int64_t n, float half, int64_t* window) {
  return (use_avx2() ? kern::count_jumprelu_avx2 : kern::count_jumprelu_generic)(pre, thr, n, half, window);
}
void relu_backward(float* g, const float* f, const float* l1w, int64_t n) {
  (use_avx2() ? kern::relu_backward_avx2 : kern::relu_backward_generic)(g, f, l1w, n);
}

// a [R, C] -> t [C, R] (contiguous), in tiles
at::Tensor transposed(const at::Tensor& a, at::Tensor t) {
  const int64_t R = a.size(0), C = a.size(1);
  const float* A = a.data_ptr<float>();
  float* T = t.data_ptr<float>();
  constexpr int64_t kT = 32;
  at::parallel_for(0, (C + kT - 1) / kT, 1, [&](int64_t q0, int64_t q1) {
    for (int64_t cb = q0 * kT; cb < std::min(C, q1 * kT); cb += kT)
      for (int64_t rb = 0; rb < R; rb += kT)
        for (int64_t c = cb; c < std::min(C, cb + kT); ++c)
          for (int64_t r = rb; r < std::min(R, rb + kT); ++r) T[c * R + r] = A[r * C + c];
  });
  return t;
}

inline void axpy(float a, const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// Top `kk` of row[cand[0..n)] (by value, descending), written to out_idx (unordered). Deterministic.
void select_top(const float* row, std::vector<int32_t>& cand, int64_t kk) {
  if (kk < (int64_t)cand.size())
    std::nth_element(cand.begin(), cand.begin() + kk, cand.end(), [row](int32_t a, int32_t b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
}

// Memory of the step is reused between steps, per calling thread: first touches of fresh pages are very dear
// here (a fresh 512 KiB buffer: about 1.9 ms of page faults on the development VM, as much as the per-latent sums
// that fill it; in GEMM outputs they land in OpenBLAS's zeroing). The buffers hold about the step's own peak.
//   scratch: tensors that do not outlive the step (grown when needed).
//   release_fused_cpu_workspace() frees all of it for the calling thread.
enum Slot { kPre, kF, kG, kGF, kGWencT, kSlots };
thread_local at::Tensor t_scratch[kSlots];
at::Tensor& scratch(Slot slot, at::IntArrayRef shape) {
  at::Tensor& t = t_scratch[slot];
  if (!t.defined()) t = at::empty(shape, at::kFloat);
  else t.resize_(shape);
  return t;
}
//   recycled: the returned weight gradients. The previous step's tensor is reused only when nothing else holds
//   it any more (the caller dropped its StepResult and made no views); otherwise a fresh one is made.
enum Out { kOutGWdec, kOutGWenc, kOuts };
thread_local at::Tensor t_recycled[kOuts];
at::Tensor recycled(Out slot, at::IntArrayRef shape) {
  at::Tensor& t = t_recycled[slot];
  if (!(t.defined() && t.use_count() == 1 && t.storage().use_count() == 1 && t.sizes() == shape))
    t = at::empty(shape, at::kFloat);
  return t;
}

// pre[b, :] += bias, rows in parallel (the encoder runs as a plain mm: on this libtorch an addmm with a broadcast
// bias is up to 2x slower than mm with two threads).
void add_bias_rows(float* P, const float* bias, int64_t B, int64_t S) {
  at::parallel_for(0, B, 64, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      float* __restrict p = P + b * S;
      for (int64_t j = 0; j < S; ++j) p[j] += bias[j];
    }
  });
}

// Sparse entries of an [B, S] matrix in row order.
struct Sparse {
  std::vector<int64_t> rowptr;
  std::vector<int32_t> col;
  std::vector<float> val;   // activation value (relu'd)
  std::vector<float> grad;  // dL/dpre at the entry
};

// The same entries sorted by (block of rows, latent), rows in order within.
struct ByLatent {
  std::vector<int64_t> start;  // [blocks * S + 1]: entries of (block, latent) at start[blk * S + j]
  std::vector<int32_t> row;
  std::vector<float> val, grad;
};

// The step's host vectors, reused between steps (see scratch above); resized by the step before each use.
struct Work {
  Sparse sp, nr, ax;
  ByLatent m, am;
  std::vector<int64_t> cnt, ncnt, fill;
  std::vector<double> row_sq, row_l1, fsum;
  std::vector<float> part;
};
thread_local Work t_work;
Work& work() { return t_work; }

}  // namespace

void release_fused_cpu_workspace() {
  for (auto& t : t_scratch) t = at::Tensor();
  for (auto& t : t_recycled) t = at::Tensor();
  t_work = Work();
}

void jumprelu_epilogue_cpu(float* pre, const float* b_enc, const float* thr, float* f, int64_t B, int64_t S) {
  at::parallel_for(0, B, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      float* p = pre + b * S;
      float* fr = f + b * S;
      for (int64_t j = 0; j < S; ++j) {
        float v = p[j];
        if (b_enc) v += b_enc[j];
        p[j] = v;
        fr[j] = v > thr[j] ? v : 0.f;
      }
    }
  });
}

void jumprelu_backward_epilogue_cpu(float* gf, const float* pre, const float* thr, float* gthr, int64_t B, int64_t S,
                                    float l1_over_n, float bandwidth) {
  const float half = bandwidth / 2;
  // Threads take blocks of latents and walk all rows, so each threshold's sum runs over the rows in order
  // whatever the thread count (deterministic, no atomics).
  at::parallel_for(0, S, 64, [&](int64_t j0, int64_t j1) {
    std::vector<double> acc(j1 - j0, 0.0);
    for (int64_t b = 0; b < B; ++b) {
      float* g = gf + b * S;
      const float* p = pre + b * S;
      for (int64_t j = j0; j < j1; ++j)
        if (std::fabs(p[j] - thr[j]) < half) acc[j - j0] += double(-thr[j] * g[j] - l1_over_n);
      // a select, not a branch: about half the entries fire, at random
      for (int64_t j = j0; j < j1; ++j) g[j] = p[j] > thr[j] ? g[j] : 0.f;
    }
    for (int64_t j = j0; j < j1; ++j) gthr[j] = float(acc[j - j0] / bandwidth);
  });
}

StepResult fused_forward_backward_cpu(const Sae& s, const at::Tensor& x_in, const LossOptions& o) {
  const std::string& A = s.architecture;
  const bool jr = A == "jumprelu";
  QSAE_CHECK(A == "relu" || A == "topk" || A == "batchtopk" || jr,
             "fused CPU step supports relu, topk, batchtopk and jumprelu, not ", A);
  QSAE_CHECK(s.W_enc.scalar_type() == at::kFloat && !s.W_enc.is_cuda(), "fused CPU step needs fp32 CPU parameters");
  QSAE_CHECK(!jr || s.threshold.defined(), "fused CPU step: jumprelu needs a threshold");
  c10::NoGradGuard ng;
  const int64_t B = x_in.size(0), D = s.d_in, S = s.d_sae;
  const at::Tensor x = x_in.to(at::kFloat).contiguous();
  const at::Tensor W_enc = s.W_enc.contiguous(), W_dec = s.W_dec.contiguous(), b_enc = s.b_enc.contiguous(),
                   b_dec = s.b_dec.contiguous();
  const at::Tensor xin = s.apply_b_dec_to_input ? (x - b_dec).contiguous() : x;
  at::Tensor pre = at::mm_out(scratch(kPre, {B, S}), xin, W_enc);  // + b_enc in the first pass over each row
  float* P = pre.data_ptr<float>();
  const float* Be = b_enc.data_ptr<float>();
  const float* Wd = W_dec.data_ptr<float>();
  const float* Bd = b_dec.data_ptr<float>();
  const float* X = x.data_ptr<float>();
  const float* Xin = xin.data_ptr<float>();
  const double l1c = o.l1_coef;
  StepResult r;
  // jumprelu: threshold, and the straight-through window |pre - thr| < ε/2 of its pseudo-derivatives.
  const at::Tensor thr = jr ? s.threshold.to(at::kFloat).contiguous() : at::Tensor();
  const float* T = jr ? thr.data_ptr<float>() : nullptr;
  const float bw = float(kJumpReluBandwidth), half_bw = bw / 2;
  const float l1_over_n = float(l1c / B);
  const float gscale = float(2.0 / double(B * D));

  // Decoder row norms (for the norm-weighted L1; jumprelu's penalty counts latents and is never weighted).
  const bool weighted = o.l1_norm_weighted && !jr;
  at::Tensor wnorm = weighted ? W_dec.norm(2, {1}).contiguous() : at::ones({S}, x.options());
  const float* Wn = wnorm.data_ptr<float>();
  // dL1/df per latent (the L1 gradient added at active entries), in float as autograd has it
  std::vector<float> l1w(S);
  for (int64_t j = 0; j < S; ++j) l1w[j] = float(l1c * Wn[j] / B);

  // ---- epilogue: activation + selection into sparse rows ----
  Work& W = work();
  Sparse& sp = W.sp;
  sp.rowptr.assign(B + 1, 0);
  Sparse& nr = W.nr;  // jumprelu: inactive entries inside the threshold window (only their dL/df is needed)
  nr.rowptr.assign(B + 1, 0);
  const bool topk = A == "topk", btk = A == "batchtopk";
  const int64_t K = std::min<int64_t>(s.k, S);
  float bthr = 0;
  if (topk) {
    for (int64_t b = 0; b <= B; ++b) sp.rowptr[b] = b * K;
  } else {
    if (btk) {
      add_bias_rows(P, Be, B, S);
      int64_t kk = std::min<int64_t>(s.k * B, B * S);
      auto v = std::get<0>(at::topk(at::relu(pre).reshape({-1}), kk, 0, true, false));
      bthr = v.min().item<float>();
      r.batch_threshold = bthr;
    }
    const float lo = btk ? bthr : 0.f;
    std::vector<int64_t>&cnt = W.cnt, &ncnt = W.ncnt;
    cnt.assign(B, 0), ncnt.assign(B, 0);
    at::parallel_for(0, B, 16, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        float* row = P + b * S;
        if (!btk)
          for (int64_t j = 0; j < S; ++j) row[j] += Be[j];
        int64_t n = 0;
        cnt[b] = jr ? count_jumprelu(row, T, S, half_bw, &n) : count_relu(row, S, lo);
        ncnt[b] = n;
        // relu in place (the sparse path selects the same entries from it)
        if (A == "relu")
          for (int64_t j = 0; j < S; ++j) row[j] = row[j] > 0.f ? row[j] : 0.f;
      }
    });
    for (int64_t b = 0; b < B; ++b) sp.rowptr[b + 1] = sp.rowptr[b] + cnt[b], nr.rowptr[b + 1] = nr.rowptr[b] + ncnt[b];
  }
  const int64_t nnz = sp.rowptr[B];
  const bool dense_act = (A == "relu" || jr) && nnz > o.dense_threshold * double(B) * double(S);

  if (dense_act) {
    // Dense activations: dense matmuls and three passes between them (OpenMP regions between OpenBLAS calls
    // are few: on two cores each one's spinning threads slow the next GEMM).
    at::Tensor f = pre;  // relu: made in place above
    if (jr) {
      f = scratch(kF, {B, S});
      jumprelu_epilogue_cpu(P, nullptr, T, f.data_ptr<float>(), B, S);
    }
    const float* F = f.data_ptr<float>();
    // g = dL/dx_hat = (f W_dec + b_dec - x) * 2 / (B D) in place of the decoder's output; the squared error; and
    // dL/db_dec = column sums of g, over fixed chunks of rows then chunks in order (deterministic)
    at::Tensor g = at::mm_out(scratch(kG, {B, D}), f, W_dec);
    float* G = g.data_ptr<float>();
    std::vector<double>& row_sq = W.row_sq;
    row_sq.assign(B, 0.0);
    constexpr int64_t kRows = 64;
    const int64_t nch = (B + kRows - 1) / kRows;
    std::vector<float>& part = W.part;
    part.assign(nch * D, 0.f);
    at::parallel_for(0, nch, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        float* __restrict pc = part.data() + c * D;
        for (int64_t b = c * kRows; b < std::min(B, (c + 1) * kRows); ++b) {
          row_sq[b] = residual(G + b * D, Bd, X + b * D, gscale, D);
          const float* __restrict gr = G + b * D;
          for (int64_t i = 0; i < D; ++i) pc[i] += gr[i];
        }
      }
    });
    r.mse = std::accumulate(row_sq.begin(), row_sq.end(), 0.0) / double(B * D);
    r.gb_dec = at::empty({D}, x.options());
    {
      float* GBD = r.gb_dec.data_ptr<float>();
      for (int64_t i = 0; i < D; ++i) {
        double t = 0;
        for (int64_t c = 0; c < nch; ++c) t += part[c * D + i];
        GBD[i] = float(t);
      }
    }
    at::Tensor gf = at::mm_out(scratch(kGF, {B, S}), g, W_dec.t());
    float* GF = gf.data_ptr<float>();
    // dL/df -> dL/dpre (jumprelu: and the threshold's window sums), dL/db_enc, fired, L0 and the column sums of f,
    // one pass; threads take blocks of latents and walk all rows (sums in row order whatever the thread count)
    r.gb_enc = at::empty({S}, x.options());
    r.fired = at::empty({S}, at::kLong);
    if (jr) r.gthreshold = at::empty({S}, x.options());
    float* GBE = r.gb_enc.data_ptr<float>();
    int64_t* FIRED = r.fired.data_ptr<int64_t>();
    float* GT = jr ? r.gthreshold.data_ptr<float>() : nullptr;
    std::vector<double>& fsum = W.fsum;
    fsum.assign(S, 0.0);
    constexpr int64_t kCols = 64;
    std::atomic<int64_t> nonzero{0};
    const float* L1W = l1w.data();
    at::parallel_for(0, (S + kCols - 1) / kCols, 1, [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t j0 = q * kCols, nj = std::min(S, j0 + kCols) - j0;
        double gb[kCols] = {}, fs[kCols] = {}, win[kCols] = {};
        int64_t fired[kCols] = {}, nz = 0;
        for (int64_t rb = 0; rb < B; rb += kRows) {
          float gl[kCols] = {}, fl[kCols] = {};
          for (int64_t b = rb; b < std::min(B, rb + kRows); ++b) {
            float* __restrict gr = GF + b * S + j0;
            const float* __restrict fr = F + b * S + j0;
            if (jr) {
              const float* p = P + b * S + j0;
              const float* t = T + j0;
              for (int64_t j = 0; j < nj; ++j)
                if (std::fabs(p[j] - t[j]) < half_bw) win[j] += double(-t[j] * gr[j] - l1_over_n);
              for (int64_t j = 0; j < nj; ++j) gr[j] = p[j] > t[j] ? gr[j] : 0.f;
            } else {
              relu_backward(gr, fr, L1W + j0, nj);
            }
            for (int64_t j = 0; j < nj; ++j) {
              gl[j] += gr[j];
              fl[j] += fr[j];
              fired[j] += fr[j] > 0.f;
              nz += fr[j] != 0.f;
            }
          }
          for (int64_t j = 0; j < nj; ++j) gb[j] += gl[j], fs[j] += fl[j];
        }
        for (int64_t j = 0; j < nj; ++j) {
          GBE[j0 + j] = float(gb[j]);
          FIRED[j0 + j] = fired[j];
          fsum[j0 + j] = fs[j];
          if (jr) GT[j0 + j] = float(win[j] / bw);
        }
        nonzero += nz;
      }
    });
    r.l0 = double(nonzero.load()) / B;
    if (jr) {
      r.l1 = double(nnz) / B;
    } else {
      double l1 = 0;
      for (int64_t j = 0; j < S; ++j) l1 += fsum[j] * Wn[j];
      r.l1 = l1 / B;
    }
    r.gW_dec = recycled(kOutGWdec, {S, D});
    at::mm_out(r.gW_dec, f.t(), g);
    if (weighted && l1c != 0) {
      float* GWD = r.gW_dec.data_ptr<float>();
      for (int64_t j = 0; j < S; ++j)
        if (fsum[j] != 0) axpy(float(l1c / B * fsum[j] / std::max(Wn[j], 1e-12f)), Wd + j * D, GWD + j * D, D);
    }
    r.gW_enc = recycled(kOutGWenc, {D, S});
    at::mm_out(r.gW_enc, xin.t(), gf);
    if (s.apply_b_dec_to_input) r.gb_dec.sub_(W_enc.mv(r.gb_enc));
    r.loss = r.mse + l1c * r.l1;
    return r;
  }

  sp.col.resize(nnz);
  sp.val.resize(nnz);
  sp.grad.assign(nnz, 0.f);
  nr.col.resize(nr.rowptr[B]);
  nr.grad.assign(nr.rowptr[B], 0.f);
  {
    const float lo = btk ? bthr : 0.f;
    at::parallel_for(0, B, 16, [&](int64_t b0, int64_t b1) {
      std::vector<int32_t> scratch(S);
      for (int64_t b = b0; b < b1; ++b) {
        float* row = P + b * S;
        int64_t o0 = sp.rowptr[b];
        if (topk) {
          for (int64_t j = 0; j < S; ++j) row[j] += Be[j];
          top_k(row, S, K, scratch.data(), sp.col.data() + o0);
          for (int64_t t = 0; t < K; ++t) sp.val[o0 + t] = std::max(row[sp.col[o0 + t]], 0.f);
        } else if (jr) {
          int64_t t = o0, q = nr.rowptr[b];
          for (int64_t j = 0; j < S; ++j) {
            if (row[j] > T[j]) {
              sp.col[t] = int32_t(j);
              sp.val[t++] = row[j];
            } else if (std::fabs(row[j] - T[j]) < half_bw) {
              nr.col[q++] = int32_t(j);
            }
          }
        } else {
          int64_t t = o0;
          for (int64_t j = 0; j < S; ++j)
            if (row[j] > 0.f && row[j] >= lo) {
              sp.col[t] = int32_t(j);
              sp.val[t++] = row[j];
            }
        }
      }
    });
  }

  // ---- sparse decoder (gather of decoder rows) + error + dL/df at the selected entries ----
  // x_hat is kept only for the aux-k residual; otherwise g is computed in place of it
  const bool aux_requested = is_topk_family(A) && o.aux_coef > 0 && o.aux_k > 0 && o.dead_mask.defined();
  at::Tensor x_hat = aux_requested ? at::empty({B, D}, x.options()) : at::Tensor();
  at::Tensor g = scratch(kG, {B, D});
  float* XH = aux_requested ? x_hat.data_ptr<float>() : nullptr;
  float* G = g.data_ptr<float>();
  std::vector<double>&row_sq = W.row_sq, &row_l1 = W.row_l1;
  row_sq.assign(B, 0.0), row_l1.assign(B, 0.0);
  at::parallel_for(0, B, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      float* gr = G + b * D;
      const int64_t t0 = sp.rowptr[b], nb = sp.rowptr[b + 1] - t0;
      gather_axpy(Wd, D, sp.col.data() + t0, sp.val.data() + t0, nb, Bd, gr, D);
      if (XH) std::copy(gr, gr + D, XH + b * D);
      double l1 = 0;
      for (int64_t t = t0; t < t0 + nb; ++t) l1 += double(sp.val[t]) * Wn[sp.col[t]];
      row_l1[b] = l1;
      row_sq[b] = residual(gr, nullptr, X + b * D, gscale, D);
      gather_dot(gr, Wd, D, sp.col.data() + t0, nb, sp.grad.data() + t0, D);
      if (jr) {
        // dL/dpre = dL/df at the active entries (the L0 penalty has no gradient in pre); dL/df also in the
        // inactive part of the threshold window, for the threshold's pseudo-derivative
        const int64_t q0 = nr.rowptr[b];
        gather_dot(gr, Wd, D, nr.col.data() + q0, nr.rowptr[b + 1] - q0, nr.grad.data() + q0, D);
      } else {
        // dL/dpre = g . W_dec[c] + l1 * w_c / B, only where pre > 0
        for (int64_t t = t0; t < t0 + nb; ++t) sp.grad[t] = sp.val[t] > 0.f ? sp.grad[t] + l1w[sp.col[t]] : 0.f;
      }
    }
  });
  double sq = 0, l1 = 0;
  int64_t active = 0;
  for (int64_t b = 0; b < B; ++b) sq += row_sq[b], l1 += row_l1[b];
  for (int64_t t = 0; t < nnz; ++t) active += sp.val[t] != 0.f;
  r.mse = sq / double(B * D);
  r.l1 = jr ? double(nnz) / B : l1 / B;
  r.l0 = double(active) / B;
  if (jr) {
    // threshold: (-thr * dL/df - l1 / B) / ε summed over the entries in its window, active or not (few: serial)
    std::vector<double> acc(S, 0.0);
    for (int64_t t = 0; t < nnz; ++t) {
      const int32_t c = sp.col[t];
      if (std::fabs(sp.val[t] - T[c]) < half_bw) acc[c] += double(-T[c] * sp.grad[t] - l1_over_n);
    }
    for (size_t q = 0; q < nr.col.size(); ++q) acc[nr.col[q]] += double(-T[nr.col[q]] * nr.grad[q] - l1_over_n);
    r.gthreshold = at::empty({S}, x.options());
    float* GT = r.gthreshold.data_ptr<float>();
    for (int64_t j = 0; j < S; ++j) GT[j] = float(acc[j] / bw);
  }

  // ---- aux-k (topk family): reconstruct the residual from the top aux_k dead latents ----
  Sparse& ax = W.ax;
  at::Tensor ga;
  bool use_aux = aux_requested;
  std::vector<int32_t> dead;
  if (use_aux) {
    auto dm = o.dead_mask.to(at::kBool).contiguous();
    const bool* dmp = dm.data_ptr<bool>();
    for (int64_t j = 0; j < S; ++j)
      if (dmp[j]) dead.push_back(int32_t(j));
    use_aux = !dead.empty();
  }
  if (use_aux) {
    const int64_t ka = std::min<int64_t>(o.aux_k, dead.size());
    ax.rowptr.resize(B + 1);
    for (int64_t b = 0; b <= B; ++b) ax.rowptr[b] = b * ka;
    ax.col.resize(B * ka);
    ax.val.resize(B * ka);
    ax.grad.assign(B * ka, 0.f);
    at::Tensor a = at::empty({B, D}, x.options());
    float* AR = a.data_ptr<float>();
    std::vector<float> zero(D, 0.f);
    at::parallel_for(0, B, 16, [&](int64_t b0, int64_t b1) {
      std::vector<int32_t> cand;
      for (int64_t b = b0; b < b1; ++b) {
        const float* row = P + b * S;
        cand = dead;
        select_top(row, cand, ka);
        for (int64_t t = 0; t < ka; ++t) {
          int64_t q = b * ka + t;
          ax.col[q] = cand[t];
          ax.val[q] = std::max(row[cand[t]], 0.f);
        }
        gather_axpy(Wd, D, ax.col.data() + b * ka, ax.val.data() + b * ka, ka, zero.data(), AR + b * D, D);
      }
    });
    at::Tensor resid = x - x_hat;  // detached residual
    double denom = (resid - resid.mean(0, true)).pow(2).sum(1).mean().item<double>();
    at::Tensor diff = a - resid;
    double aux = diff.pow(2).sum(1).mean().item<double>() / denom;
    if (std::isfinite(aux) && denom > 0) {
      r.aux = aux;
      ga = diff.mul_(float(o.aux_coef * 2.0 / (double(B) * denom))).contiguous();
      const float* GA = ga.data_ptr<float>();
      at::parallel_for(0, B, 16, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t q0 = ax.rowptr[b], nq = ax.rowptr[b + 1] - q0;
          gather_dot(GA + b * D, Wd, D, ax.col.data() + q0, nq, ax.grad.data() + q0, D);
          for (int64_t q = q0; q < q0 + nq; ++q)
            if (!(ax.val[q] > 0.f)) ax.grad[q] = 0.f;
        }
      });
    } else {
      use_aux = false;
    }
  }

  r.fired = at::zeros({S}, at::kLong);
  int64_t* FIRED = r.fired.data_ptr<int64_t>();
  // The aux loss does not reach b_dec through x_hat (its residual is detached); through the encoder it does
  // (apply_b_dec_to_input, below).
  r.gb_dec = g.sum(0);

  // ---- backward, dense weight gradients: very many latents per row (top-k family above dense_wgrad_threshold).
  // The decoder and dL/df above stay sparse (2 of the 5 dense GEMMs); the weight gradients are dense GEMMs over f
  // and dL/dpre scattered into [B, d_sae].
  if (!use_aux && double(nnz) > o.dense_wgrad_threshold * double(B) * double(S)) {
    at::Tensor f = scratch(kF, {B, S}).zero_(), gp = scratch(kGF, {B, S}).zero_();
    float* F = f.data_ptr<float>();
    float* GP = gp.data_ptr<float>();
    at::parallel_for(0, B, 64, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        for (int64_t t = sp.rowptr[b]; t < sp.rowptr[b + 1]; ++t) {
          F[b * S + sp.col[t]] = sp.val[t];
          GP[b * S + sp.col[t]] = sp.grad[t];
        }
    });
    r.gW_dec = recycled(kOutGWdec, {S, D});
    at::mm_out(r.gW_dec, f.t(), g);
    r.gW_enc = recycled(kOutGWenc, {D, S});
    at::mm_out(r.gW_enc, xin.t(), gp);
    r.gb_enc = gp.sum(0);
    std::vector<double> fsum(S, 0.0);
    for (int64_t t = 0; t < nnz; ++t) {
      FIRED[sp.col[t]] += sp.val[t] > 0.f;
      fsum[sp.col[t]] += sp.val[t];
    }
    if (weighted && l1c != 0) {
      float* GWD = r.gW_dec.data_ptr<float>();
      for (int64_t j = 0; j < S; ++j)
        if (fsum[j] != 0) axpy(float(l1c / B * fsum[j] / std::max(Wn[j], 1e-12f)), Wd + j * D, GWD + j * D, D);
    }
    if (s.apply_b_dec_to_input) r.gb_dec.sub_(W_enc.mv(r.gb_enc));
    r.loss = r.mse + l1c * r.l1 + o.aux_coef * r.aux;
    return r;
  }

  // ---- backward, accumulated per latent. The entries are counting-sorted by (block of rows, latent), rows in
  // order within, and each latent's sums run over the blocks in order: the same order of additions as one pass
  // over all rows (deterministic), but the gathered rows of g and of the encoder input come from a block small
  // enough to stay in the core's L2 (before: every entry's rows from L3/DRAM, most of the sparse step's time).
  const int64_t R = std::max<int64_t>(16, std::min<int64_t>(B, (int64_t(64) << 10) / std::max<int64_t>(1, D)));
  const int64_t nblk = (B + R - 1) / R;
  auto sort_by_latent = [&](const Sparse& e, int64_t blocks, int64_t rows_per_block, ByLatent& o2) {
    o2.start.assign(blocks * S + 1, 0);
    const int64_t n = int64_t(e.col.size());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = e.rowptr[b]; t < e.rowptr[b + 1]; ++t) o2.start[b / rows_per_block * S + e.col[t] + 1]++;
    for (int64_t q = 0; q < blocks * S; ++q) o2.start[q + 1] += o2.start[q];
    o2.row.resize(n), o2.val.resize(n), o2.grad.resize(n);
    std::vector<int64_t>& fill = W.fill;
    fill.assign(o2.start.begin(), o2.start.end() - 1);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = e.rowptr[b]; t < e.rowptr[b + 1]; ++t) {
        const int64_t u = fill[b / rows_per_block * S + e.col[t]]++;
        o2.row[u] = int32_t(b), o2.val[u] = e.val[t], o2.grad[u] = e.grad[t];
      }
  };
  sort_by_latent(sp, nblk, R, W.m);
  if (use_aux) sort_by_latent(ax, 1, B, W.am);  // few: one block
  const ByLatent &m = W.m, &am = W.am;
  r.gW_dec = recycled(kOutGWdec, {S, D}).zero_();
  at::Tensor gW_encT = scratch(kGWencT, {S, D}).zero_();
  r.gb_enc = at::zeros({S}, x.options());
  float* GWD = r.gW_dec.data_ptr<float>();
  float* GWE = gW_encT.data_ptr<float>();
  float* GBE = r.gb_enc.data_ptr<float>();
  const float* GA = use_aux ? ga.data_ptr<float>() : nullptr;
  at::parallel_for(0, S, 8, [&](int64_t j0, int64_t j1) {
    std::vector<double> gb(j1 - j0, 0.0), fsum(j1 - j0, 0.0);
    for (int64_t blk = 0; blk < nblk; ++blk)
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t u0 = m.start[blk * S + j], nu = m.start[blk * S + j + 1] - u0;
        if (nu == 0) continue;
        gather_axpy(G, D, m.row.data() + u0, m.val.data() + u0, nu, nullptr, GWD + j * D, D);
        gather_axpy(Xin, D, m.row.data() + u0, m.grad.data() + u0, nu, nullptr, GWE + j * D, D);
        int64_t fired = 0;
        for (int64_t u = u0; u < u0 + nu; ++u) {
          gb[j - j0] += m.grad[u];
          fsum[j - j0] += m.val[u];
          fired += m.val[u] > 0.f;
        }
        FIRED[j] += fired;
      }
    for (int64_t j = j0; j < j1; ++j) {
      float* gd = GWD + j * D;
      if (use_aux) {
        const int64_t a0 = am.start[j], na = am.start[j + 1] - a0;
        gather_axpy(GA, D, am.row.data() + a0, am.val.data() + a0, na, nullptr, gd, D);
        gather_axpy(Xin, D, am.row.data() + a0, am.grad.data() + a0, na, nullptr, GWE + j * D, D);
        for (int64_t u = a0; u < a0 + na; ++u) gb[j - j0] += am.grad[u];
      }
      GBE[j] = float(gb[j - j0]);
      if (weighted && l1c != 0 && fsum[j - j0] != 0) {
        float c = float(l1c / B * fsum[j - j0] / std::max(Wn[j], 1e-12f));
        axpy(c, Wd + j * D, gd, D);
      }
    }
  });
  r.gW_enc = transposed(gW_encT, recycled(kOutGWenc, {D, S}));
  if (s.apply_b_dec_to_input) r.gb_dec.sub_(W_enc.mv(r.gb_enc));
  r.loss = r.mse + l1c * r.l1 + o.aux_coef * r.aux;
  return r;
}

StepResult autograd_forward_backward(const Sae& s0, const at::Tensor& x, const LossOptions& o) {
  c10::AutoGradMode grad(true);
  Sae s = s0;
  s.W_enc = s0.W_enc.detach().clone().requires_grad_(true);
  s.b_enc = s0.b_enc.detach().clone().requires_grad_(true);
  s.W_dec = s0.W_dec.detach().clone().requires_grad_(true);
  s.b_dec = s0.b_dec.detach().clone().requires_grad_(true);
  if (s0.threshold.defined()) s.threshold = s0.threshold.detach().clone().requires_grad_(true);
  auto fr = s.forward(x.to(at::kFloat), o.l1_norm_weighted, o.dead_mask, o.aux_k);
  auto loss = fr.mse + o.l1_coef * fr.l1 + o.aux_coef * fr.aux;
  loss.backward();
  StepResult r;
  r.loss = loss.item<double>();
  r.mse = fr.mse.item<double>();
  r.l1 = fr.l1.item<double>();
  r.l0 = fr.l0.item<double>();
  r.aux = fr.aux.item<double>();
  r.fired = (fr.latents.detach() > 0).sum(0).to(at::kLong);
  r.gW_enc = s.W_enc.grad();
  r.gb_enc = s.b_enc.grad();
  r.gW_dec = s.W_dec.grad();
  r.gb_dec = s.b_dec.grad();
  if (s.architecture == "jumprelu") r.gthreshold = s.threshold.grad();
  return r;
}

void adam_step_fused_cpu(at::Tensor& p, const at::Tensor& g_in, at::Tensor& m, at::Tensor& v, int64_t step, double lr,
                         double beta1, double beta2, double eps) {
  QSAE_CHECK(p.is_contiguous() && m.is_contiguous() && v.is_contiguous() && p.scalar_type() == at::kFloat,
             "adam: parameters and moments must be contiguous fp32");
  at::Tensor g = g_in.contiguous();
  const int64_t n = p.numel();
  float* P = p.data_ptr<float>();
  float* M = m.data_ptr<float>();
  float* V = v.data_ptr<float>();
  const float* Gp = g.data_ptr<float>();
  const double bc1 = 1 - std::pow(beta1, double(step)), bc2 = 1 - std::pow(beta2, double(step));
  const float step_size = float(lr / bc1), inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2));
  const float b1 = float(beta1), b2 = float(beta2), e = float(eps);
  const auto adam = use_avx2() ? kern::adam_avx2 : kern::adam_generic;
  at::parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
    adam(P + i0, Gp + i0, M + i0, V + i0, i1 - i0, b1, b2, step_size, inv_sqrt_bc2, e);
  });
}

void set_cpu_kernel(const std::string& which) { g_kernels.set(which); }
std::string cpu_kernel() { return g_kernels.name(); }

void normalize_decoder_rows_cpu(at::Tensor& W_dec) {
  QSAE_CHECK(W_dec.dim() == 2 && W_dec.is_contiguous() && W_dec.scalar_type() == at::kFloat && !W_dec.is_cuda(),
             "normalize_decoder_rows_cpu: W_dec must be a contiguous fp32 CPU matrix");
  const int64_t S = W_dec.size(0), D = W_dec.size(1);
  float* W = W_dec.data_ptr<float>();
  at::parallel_for(0, S, std::max<int64_t>(1, (int64_t(1) << 20) / std::max<int64_t>(1, D)), [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      float* __restrict w = W + j * D;
      double q = 0;
      for (int64_t i = 0; i < D; ++i) q += double(w[i]) * w[i];
      const float n = std::max(float(std::sqrt(q)), 1e-12f);
      for (int64_t i = 0; i < D; ++i) w[i] /= n;
    }
  });
}

void adam_step_reference(at::Tensor& p, const at::Tensor& g, at::Tensor& m, at::Tensor& v, int64_t step, double lr,
                         double beta1, double beta2, double eps) {
  c10::NoGradGuard ng;
  const double bc1 = 1 - std::pow(beta1, double(step)), bc2 = 1 - std::pow(beta2, double(step));
  m.mul_(beta1).add_(g, 1 - beta1);
  v.mul_(beta2).addcmul_(g, g, 1 - beta2);
  auto denom = (v.sqrt() / std::sqrt(bc2)).add_(eps);
  p.addcdiv_(m, denom, -lr / bc1);
}

}  // namespace qsae::sae
