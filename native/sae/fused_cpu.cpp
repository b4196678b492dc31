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

namespace qsae::sae {

namespace {

inline void axpy(float a, const float* __restrict x, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}
inline float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

// Top `kk` of row[cand[0..n)] (by value, descending), written to out_idx (unordered). Deterministic.
void select_top(const float* row, std::vector<int32_t>& cand, int64_t kk) {
  if (kk < (int64_t)cand.size())
    std::nth_element(cand.begin(), cand.begin() + kk, cand.end(), [row](int32_t a, int32_t b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
}

// Per-latent counts of f > 0 (`fired`) and the total count of f != 0 over a dense f [B, S]. Torch 1.13's sums
// of bool tensors cost about half a dense step here ((f > 0).sum(0): 135 ms on [4096, 1024], one thread).
int64_t count_dense(const float* F, int64_t B, int64_t S, int64_t* fired) {
  std::atomic<int64_t> nonzero{0};
  at::parallel_for(0, S, 256, [&](int64_t j0, int64_t j1) {
    std::vector<int64_t> c(j1 - j0, 0);
    int64_t nz = 0;
    for (int64_t b = 0; b < B; ++b) {
      const float* fr = F + b * S;
      for (int64_t j = j0; j < j1; ++j) {
        c[j - j0] += fr[j] > 0.f;
        nz += fr[j] != 0.f;
      }
    }
    std::copy(c.begin(), c.end(), fired + j0);
    nonzero += nz;
  });
  return nonzero.load();
}

// Sparse entries of an [B, S] matrix in row order.
struct Sparse {
  std::vector<int64_t> rowptr;
  std::vector<int32_t> col;
  std::vector<float> val;   // activation value (relu'd)
  std::vector<float> grad;  // dL/dpre at the entry
};

}  // namespace

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
  at::parallel_for(0, S, 256, [&](int64_t j0, int64_t j1) {
    std::vector<double> acc(j1 - j0, 0.0);
    for (int64_t b = 0; b < B; ++b) {
      float* g = gf + b * S;
      const float* p = pre + b * S;
      for (int64_t j = j0; j < j1; ++j) {
        if (std::fabs(p[j] - thr[j]) < half) acc[j - j0] += double(-thr[j] * g[j] - l1_over_n);
        if (!(p[j] > thr[j])) g[j] = 0.f;
      }
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
  at::Tensor pre = at::addmm(b_enc, xin, W_enc).contiguous();  // [B, S]
  float* P = pre.data_ptr<float>();
  const float* Wd = W_dec.data_ptr<float>();
  const float* X = x.data_ptr<float>();
  const float* Xin = xin.data_ptr<float>();
  const double l1c = o.l1_coef;
  StepResult r;
  // jumprelu: threshold, and the straight-through window |pre - thr| < ε/2 of its pseudo-derivatives.
  const at::Tensor thr = jr ? s.threshold.to(at::kFloat).contiguous() : at::Tensor();
  const float* T = jr ? thr.data_ptr<float>() : nullptr;
  const float bw = float(kJumpReluBandwidth), half_bw = bw / 2;
  const float l1_over_n = float(l1c / B);

  // Decoder row norms (for the norm-weighted L1; jumprelu's penalty counts latents and is never weighted).
  const bool weighted = o.l1_norm_weighted && !jr;
  at::Tensor wnorm = weighted ? W_dec.norm(2, {1}).contiguous() : at::ones({S}, x.options());
  const float* Wn = wnorm.data_ptr<float>();

  // ---- epilogue: activation + selection into sparse rows ----
  Sparse sp;
  sp.rowptr.assign(B + 1, 0);
  Sparse nr;  // jumprelu: inactive entries inside the threshold window (only their dL/df is needed)
  nr.rowptr.assign(B + 1, 0);
  const bool topk = A == "topk", btk = A == "batchtopk";
  const int64_t K = std::min<int64_t>(s.k, S);
  float bthr = 0;
  if (topk) {
    for (int64_t b = 0; b <= B; ++b) sp.rowptr[b] = b * K;
  } else {
    if (btk) {
      int64_t kk = std::min<int64_t>(s.k * B, B * S);
      auto v = std::get<0>(at::topk(at::relu(pre).reshape({-1}), kk, 0, true, false));
      bthr = v.min().item<float>();
      r.batch_threshold = bthr;
    }
    const float lo = btk ? bthr : 0.f;
    std::vector<int64_t> cnt(B, 0), ncnt(B, 0);
    at::parallel_for(0, B, 16, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const float* row = P + b * S;
        int64_t c = 0, n = 0;
        if (jr) {
          for (int64_t j = 0; j < S; ++j) {
            const bool on = row[j] > T[j];
            c += on;
            n += !on && std::fabs(row[j] - T[j]) < half_bw;
          }
        } else {
          for (int64_t j = 0; j < S; ++j) c += (row[j] > 0.f && row[j] >= lo);
        }
        cnt[b] = c;
        ncnt[b] = n;
      }
    });
    for (int64_t b = 0; b < B; ++b) sp.rowptr[b + 1] = sp.rowptr[b] + cnt[b], nr.rowptr[b + 1] = nr.rowptr[b] + ncnt[b];
  }
  const int64_t nnz = sp.rowptr[B];
  const bool dense_act = (A == "relu" || jr) && nnz > o.dense_threshold * double(B) * double(S);
  // topk with many latents per row (k / d_sae above the threshold, e.g. k 32 of 256): torch's top-k and dense
  // GEMMs beat the per-row selection and sparse loops. Not while the aux-k loss has dead latents to train.
  const bool aux_live = topk && o.aux_coef > 0 && o.aux_k > 0 && o.dead_mask.defined() && o.dead_mask.any().item<bool>();
  const bool dense_topk = topk && !aux_live && double(K) > o.dense_threshold * double(S);

  if (dense_act || dense_topk) {
    // Dense activations: dense matmuls, fused epilogues (the selected latents are those with f > 0; jumprelu:
    // pre > thr, keeping pre for the threshold window).
    at::Tensor f;
    if (dense_topk) {
      auto tk = at::topk(pre, K, 1);
      f = at::zeros_like(pre).scatter_(1, std::get<1>(tk), std::get<0>(tk).relu_());
    } else if (jr) {
      f = at::empty_like(pre);
      jumprelu_epilogue_cpu(P, nullptr, T, f.data_ptr<float>(), B, S);
    } else {
      f = pre.relu_();
    }
    at::Tensor x_hat = at::addmm(b_dec, f, W_dec);
    at::Tensor e = x_hat.sub_(x);
    r.mse = e.pow(2).mean().item<double>();
    at::Tensor g = e.mul_(2.0 / double(B * D));
    r.l1 = jr ? double(nnz) / B : (f.mv(wnorm)).sum().item<double>() / B;
    at::Tensor gf = g.mm(W_dec.t()).contiguous();  // [B, S]
    float* GF = gf.data_ptr<float>();
    const float* F = f.data_ptr<float>();
    if (jr) {
      r.gthreshold = at::empty({S}, x.options());
      jumprelu_backward_epilogue_cpu(GF, P, T, r.gthreshold.data_ptr<float>(), B, S, l1_over_n, bw);
    } else {
      at::parallel_for(0, B, 16, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          float* gr = GF + b * S;
          const float* fr = F + b * S;
          for (int64_t j = 0; j < S; ++j) gr[j] = fr[j] > 0.f ? gr[j] + float(l1c * Wn[j] / B) : 0.f;
        }
      });
    }
    r.gW_dec = f.t().mm(g);
    if (weighted && l1c != 0)
      r.gW_dec.add_(W_dec * (f.sum(0) / wnorm.clamp_min(1e-12) * float(l1c / B)).unsqueeze(1));
    r.gW_enc = xin.t().mm(gf);
    r.gb_enc = gf.sum(0);
    r.gb_dec = g.sum(0);
    if (s.apply_b_dec_to_input) r.gb_dec.sub_(W_enc.mv(r.gb_enc));
    r.fired = at::empty({S}, at::kLong);
    r.l0 = double(count_dense(F, B, S, r.fired.data_ptr<int64_t>())) / B;
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
      std::vector<int32_t> cand;
      for (int64_t b = b0; b < b1; ++b) {
        const float* row = P + b * S;
        int64_t o0 = sp.rowptr[b];
        if (topk) {
          cand.resize(S);
          std::iota(cand.begin(), cand.end(), 0);
          select_top(row, cand, K);
          for (int64_t t = 0; t < K; ++t) {
            sp.col[o0 + t] = cand[t];
            sp.val[o0 + t] = std::max(row[cand[t]], 0.f);
          }
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

  // ---- sparse decoder + error ----
  at::Tensor x_hat = b_dec.unsqueeze(0).expand({B, D}).contiguous();
  at::Tensor g = at::empty({B, D}, x.options());
  float* XH = x_hat.data_ptr<float>();
  float* G = g.data_ptr<float>();
  std::vector<double> row_sq(B), row_l1(B);
  const float gscale = float(2.0 / double(B * D));
  at::parallel_for(0, B, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      float* xh = XH + b * D;
      double l1 = 0;
      for (int64_t t = sp.rowptr[b]; t < sp.rowptr[b + 1]; ++t) {
        float v = sp.val[t];
        if (v != 0.f) axpy(v, Wd + int64_t(sp.col[t]) * D, xh, D);
        l1 += double(v) * Wn[sp.col[t]];
      }
      row_l1[b] = l1;
      double sq = 0;
      const float* xr = X + b * D;
      float* gr = G + b * D;
      for (int64_t i = 0; i < D; ++i) {
        float e = xh[i] - xr[i];
        sq += double(e) * e;
        gr[i] = e * gscale;
      }
      row_sq[b] = sq;
      if (jr) {
        // dL/dpre = dL/df = g . W_dec[c] at the active entries (the L0 penalty has no gradient in pre); dL/df
        // also in the inactive part of the threshold window, for the threshold's pseudo-derivative
        for (int64_t t = sp.rowptr[b]; t < sp.rowptr[b + 1]; ++t) sp.grad[t] = dot(gr, Wd + int64_t(sp.col[t]) * D, D);
        for (int64_t q = nr.rowptr[b]; q < nr.rowptr[b + 1]; ++q) nr.grad[q] = dot(gr, Wd + int64_t(nr.col[q]) * D, D);
      } else {
        // gradient at the active entries: dL/dpre = g . W_dec[c] + l1 * w_c / B  (only where pre > 0)
        for (int64_t t = sp.rowptr[b]; t < sp.rowptr[b + 1]; ++t)
          if (sp.val[t] > 0.f) sp.grad[t] = dot(gr, Wd + int64_t(sp.col[t]) * D, D) + float(l1c * Wn[sp.col[t]] / B);
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
  Sparse ax;
  at::Tensor ga;
  bool use_aux = is_topk_family(A) && o.aux_coef > 0 && o.aux_k > 0 && o.dead_mask.defined();
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
    at::Tensor a = at::zeros({B, D}, x.options());
    float* AR = a.data_ptr<float>();
    at::parallel_for(0, B, 16, [&](int64_t b0, int64_t b1) {
      std::vector<int32_t> cand;
      for (int64_t b = b0; b < b1; ++b) {
        const float* row = P + b * S;
        cand = dead;
        select_top(row, cand, ka);
        float* ar = AR + b * D;
        for (int64_t t = 0; t < ka; ++t) {
          int64_t q = b * ka + t;
          ax.col[q] = cand[t];
          ax.val[q] = std::max(row[cand[t]], 0.f);
          if (ax.val[q] != 0.f) axpy(ax.val[q], Wd + int64_t(cand[t]) * D, ar, D);
        }
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
        for (int64_t b = b0; b < b1; ++b)
          for (int64_t q = ax.rowptr[b]; q < ax.rowptr[b + 1]; ++q)
            if (ax.val[q] > 0.f) ax.grad[q] = dot(GA + b * D, Wd + int64_t(ax.col[q]) * D, D);
      });
    } else {
      use_aux = false;
    }
  }

  // ---- backward, accumulated per latent (counting sort of the entries by latent; deterministic) ----
  const int64_t n_aux = use_aux ? int64_t(ax.col.size()) : 0;
  const int64_t n_all = nnz + n_aux;
  std::vector<int64_t> start(S + 1, 0);
  for (int64_t t = 0; t < nnz; ++t) start[sp.col[t] + 1]++;
  for (int64_t q = 0; q < n_aux; ++q) start[ax.col[q] + 1]++;
  for (int64_t j = 0; j < S; ++j) start[j + 1] += start[j];
  std::vector<int64_t> order(n_all);  // entry ids: t < nnz main, else nnz + q aux
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = sp.rowptr[b]; t < sp.rowptr[b + 1]; ++t) order[fill[sp.col[t]]++] = t;
      if (use_aux)
        for (int64_t q = ax.rowptr[b]; q < ax.rowptr[b + 1]; ++q) order[fill[ax.col[q]]++] = nnz + q;
    }
  }
  // row of each entry
  std::vector<int32_t> row_of(n_all);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = sp.rowptr[b]; t < sp.rowptr[b + 1]; ++t) row_of[t] = int32_t(b);
    if (use_aux)
      for (int64_t q = ax.rowptr[b]; q < ax.rowptr[b + 1]; ++q) row_of[nnz + q] = int32_t(b);
  }
  r.gW_dec = at::zeros({S, D}, x.options());
  at::Tensor gW_encT = at::zeros({S, D}, x.options());
  r.gb_enc = at::zeros({S}, x.options());
  r.fired = at::zeros({S}, at::kLong);
  float* GWD = r.gW_dec.data_ptr<float>();
  float* GWE = gW_encT.data_ptr<float>();
  float* GBE = r.gb_enc.data_ptr<float>();
  int64_t* FIRED = r.fired.data_ptr<int64_t>();
  const float* GA = use_aux ? ga.data_ptr<float>() : nullptr;
  at::parallel_for(0, S, 8, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      float* gd = GWD + j * D;
      float* ge = GWE + j * D;
      double gb = 0, fsum = 0;
      int64_t fired = 0;
      for (int64_t u = start[j]; u < start[j + 1]; ++u) {
        int64_t id = order[u];
        int64_t b = row_of[id];
        float v, gpre;
        const float* gsrc;
        if (id < nnz) {
          v = sp.val[id];
          gpre = sp.grad[id];
          gsrc = G + b * D;
          fired += v > 0.f;
          fsum += v;
        } else {
          v = ax.val[id - nnz];
          gpre = ax.grad[id - nnz];
          gsrc = GA + b * D;
        }
        if (v != 0.f) axpy(v, gsrc, gd, D);
        if (gpre != 0.f) axpy(gpre, Xin + b * D, ge, D);
        gb += gpre;
      }
      GBE[j] = float(gb);
      FIRED[j] = fired;
      if (weighted && l1c != 0 && fsum != 0) {
        float c = float(l1c / B * fsum / std::max(Wn[j], 1e-12f));
        axpy(c, Wd + j * D, gd, D);
      }
    }
  });
  r.gW_enc = gW_encT.t().contiguous();
  r.gb_dec = g.sum(0);
  if (use_aux) {
    // the aux loss does not reach b_dec through x_hat (its residual is detached); through the encoder it does
  }
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
  at::parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float gi = Gp[i];
      float mi = b1 * M[i] + (1 - b1) * gi;
      float vi = b2 * V[i] + (1 - b2) * gi * gi;
      M[i] = mi;
      V[i] = vi;
      P[i] -= step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + e);
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
