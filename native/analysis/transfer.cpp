// Streamed transfer metrics with bootstrap intervals (see transfer.h for the definitions and the
// bootstrap design).
#include "analysis/transfer.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

#include "common/error.h"
#include "common/tensor_util.h"
#include "sae/activation_source.h"
#include "sae/sae.h"

namespace qsae::analysis {

const std::vector<std::string> kTransferMetrics = {
    "sample_correlation", "feature_correlation", "topk_agreement",  "sparsity_agreement", "active_jaccard",
    "explained_variance_a", "explained_variance_b", "mse_a",        "mse_b",              "l0_a",
    "l0_b",               "dead_fraction_a",      "dead_fraction_b"};

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// splitmix64: a small, well-mixed counter-based generator (streams are independent per seed).
struct SplitMix {
  uint64_t s;
  explicit SplitMix(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform integer in [0, n) (Lemire's multiply-shift; bias < n / 2^64).
  uint64_t below(uint64_t n) { return uint64_t((static_cast<unsigned __int128>(next()) * n) >> 64); }
};
uint64_t mix(uint64_t a, uint64_t b) { return SplitMix(a ^ (b * 0xD1B54A32D192ED03ULL + 0x632BE59BD9B4E019ULL)).next(); }

// Top-k selection of one row under the strict order (value desc, index asc), single scan.
// vals/idx hold the best `cnt` entries sorted in that order.
void topk_row(const float* x, int64_t M, int64_t k, std::vector<float>& vals, std::vector<int64_t>& idx) {
  vals.clear();
  idx.clear();
  if (k <= 0) return;
  for (int64_t j = 0; j < M; ++j) {
    const float v = x[j];
    if (int64_t(vals.size()) == k && !(v > vals.back())) continue;  // equal value, larger index: loses
    // position: after every entry with value ≥ v (those have lower indices on ties)
    int64_t pos = int64_t(vals.size());
    while (pos > 0 && vals[pos - 1] < v) --pos;
    if (int64_t(vals.size()) < k) {
      vals.push_back(v);
      idx.push_back(j);
    }
    for (int64_t p = int64_t(vals.size()) - 1; p > pos; --p) {
      vals[p] = vals[p - 1];
      idx[p] = idx[p - 1];
    }
    vals[pos] = v;
    idx[pos] = j;
  }
}

double pearson_from_sums(double n, double sa, double sb, double saa, double sbb, double sab, bool const_a,
                         bool const_b, bool same_constant) {
  if (const_a && const_b) return same_constant ? 1.0 : 0.0;
  if (const_a || const_b) return 0.0;
  const double va = saa - sa * sa / n, vb = sbb - sb * sb / n, cov = sab - sa * sb / n;
  if (!(va > 0) || !(vb > 0)) return 0.0;
  return std::clamp(cov / std::sqrt(va * vb), -1.0, 1.0);
}

// numpy's default ("linear") percentile of a sorted vector.
double percentile_sorted(const std::vector<double>& v, double q) {
  if (v.empty()) return kNaN;
  const double pos = q * double(v.size() - 1);
  const size_t lo = size_t(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

std::array<double, 2> interval(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }), v.end());
  std::sort(v.begin(), v.end());
  return {percentile_sorted(v, 0.025), percentile_sorted(v, 0.975)};
}

// Per-feature metrics from the 7 sums [7][M] over n tokens: feature_correlation, dead_fraction_a, _b.
std::array<double, 3> feature_metrics(const double* s, int64_t M, double n) {
  const double *Sa = s, *Sb = s + M, *Saa = s + 2 * M, *Sbb = s + 3 * M, *Sab = s + 4 * M, *Ca = s + 5 * M,
               *Cb = s + 6 * M;
  double fc_sum = 0;
  int64_t alive = 0, dead_a = 0, dead_b = 0;
  for (int64_t j = 0; j < M; ++j) {
    if (Cb[j] == 0) dead_b++;
    if (Ca[j] == 0) {
      dead_a++;
      continue;
    }
    alive++;
    const double va = Saa[j] - Sa[j] * Sa[j] / n, vb = Sbb[j] - Sb[j] * Sb[j] / n;
    const bool ca = va <= 1e-12 * Saa[j], cb = vb <= 1e-12 * Sbb[j];
    const bool same = ca && cb && std::abs(Sa[j] - Sb[j]) <= 1e-9 * std::max(std::abs(Sa[j]), std::abs(Sb[j]));
    fc_sum += pearson_from_sums(n, Sa[j], Sb[j], Saa[j], Sbb[j], Sab[j], ca, cb, same);
  }
  return {alive > 0 ? fc_sum / double(alive) : kNaN, double(dead_a) / double(M), double(dead_b) / double(M)};
}

void report(const ProgressFn& progress, const char* stage, double done, double total, const char* unit,
            const std::string& msg = "") {
  if (progress) progress(Progress{stage, done, total, unit, msg});
}
}  // namespace

double token_correlation(const float* a, const float* b, int64_t M) {
  double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
  float mina = a[0], maxa = a[0], minb = b[0], maxb = b[0];
  for (int64_t j = 0; j < M; ++j) {
    const double x = a[j], y = b[j];
    sa += x;
    sb += y;
    saa += x * x;
    sbb += y * y;
    sab += x * y;
    mina = std::min(mina, a[j]);
    maxa = std::max(maxa, a[j]);
    minb = std::min(minb, b[j]);
    maxb = std::max(maxb, b[j]);
  }
  const bool ca = mina == maxa, cb = minb == maxb;
  if (ca && cb && mina == 0 && minb == 0) return kNaN;  // both rows all zero: left out
  return pearson_from_sums(double(M), sa, sb, saa, sbb, sab, ca, cb, ca && cb && mina == minb);
}

TransferAccumulator::TransferAccumulator(int64_t M, int64_t d, int64_t k, const at::Tensor& mean_a,
                                         const at::Tensor& mean_b, int64_t n_units, const TransferOptions& opts)
    : M_(M), d_(d), k_(k), n_units_expected_(n_units), opts_(opts) {
  QSAE_CHECK_RANGE(M > 0 && d > 0, "transfer: empty SAE (M=", M, ", d_in=", d, ")");
  QSAE_CHECK_RANGE(k >= 1, "transfer: k must be ≥ 1, got ", k);
  QSAE_CHECK_RANGE(n_units >= 1, "transfer: no tokens");
  mean_a_ = mean_a.to(at::kCPU, at::kDouble).reshape({1, d});
  mean_b_ = mean_b.to(at::kCPU, at::kDouble).reshape({1, d});
  int64_t cap = opts.max_groups;
  if (cap <= 0) cap = std::min<int64_t>(256, std::max<int64_t>(32, (int64_t(64) << 20) / (56 * M)));
  G_ = std::min(n_units, cap);
  feat_.assign(size_t(G_) * kNumFeatStats * M, 0.0);
  group_tokens_.assign(G_, 0.0);
}

int64_t TransferAccumulator::unit_index(int64_t key) {
  auto it = unit_of_key_.find(key);
  if (it != unit_of_key_.end()) return it->second;
  const int64_t u = int64_t(unit_of_key_.size());
  unit_of_key_.emplace(key, u);
  unit_stats_.resize(size_t(u + 1) * kNumUnitStats, 0.0);
  // Units ≤ G: one group each (the exact unit bootstrap). Otherwise a fixed pseudo-random partition.
  const int64_t g = n_units_expected_ <= G_ ? (u % G_) : int64_t(mix(opts_.seed ^ 0xA5A5A5A5ULL, uint64_t(key)) % uint64_t(G_));
  group_of_unit_.push_back(g);
  return u;
}

void TransferAccumulator::add(const at::Tensor& fa_in, const at::Tensor& fb_in, const at::Tensor& xa,
                              const at::Tensor& xb, const at::Tensor& xa_hat, const at::Tensor& xb_hat,
                              const at::Tensor& unit_in) {
  const int64_t n = fa_in.size(0);
  QSAE_CHECK_RANGE(fa_in.dim() == 2 && fa_in.size(1) == M_ && fb_in.sizes() == fa_in.sizes(),
                   "transfer: code chunks must be [n, ", M_, "]");
  QSAE_CHECK_RANGE(unit_in.numel() == n, "transfer: unit keys must have one entry per row");
  if (n == 0) return;
  at::Tensor fa = fa_in.to(at::kCPU, at::kFloat).contiguous(), fb = fb_in.to(at::kCPU, at::kFloat).contiguous();
  at::Tensor units = unit_in.to(at::kCPU, at::kLong).contiguous();
  // Reconstruction terms per row, in float64.
  auto dbl = [](const at::Tensor& t) { return t.to(at::kCPU, at::kDouble); };
  at::Tensor Xa = dbl(xa), Xb = dbl(xb);
  at::Tensor sse_a = (Xa - dbl(xa_hat)).pow(2).sum(1).contiguous();
  at::Tensor sse_b = (Xb - dbl(xb_hat)).pow(2).sum(1).contiguous();
  at::Tensor sst_a = (Xa - mean_a_).pow(2).sum(1).contiguous();
  at::Tensor sst_b = (Xb - mean_b_).pow(2).sum(1).contiguous();

  const float* A = fa.data_ptr<float>();
  const float* B = fb.data_ptr<float>();
  const int64_t M = M_, k = k_;
  // Per-row values: sc, tk, jac (NaN = left out), agree, l0a, l0b.
  std::vector<double> row(size_t(n) * 6);
  at::parallel_for(0, n, 8, [&](int64_t r0, int64_t r1) {
    std::vector<float> va, vb;
    std::vector<int64_t> ia, ib;
    va.reserve(k + 1);
    vb.reserve(k + 1);
    ia.reserve(k + 1);
    ib.reserve(k + 1);
    for (int64_t r = r0; r < r1; ++r) {
      const float* a = A + r * M;
      const float* b = B + r * M;
      int64_t na = 0, nb = 0, both = 0;
      for (int64_t j = 0; j < M; ++j) {
        const bool pa = a[j] > 0, pb = b[j] > 0;
        na += pa;
        nb += pb;
        both += pa & pb;
      }
      double* out = row.data() + r * 6;
      out[0] = token_correlation(a, b, M);
      const int64_t K = std::min(k, na);
      if (K > 0) {
        topk_row(a, M, K, va, ia);
        topk_row(b, M, K, vb, ib);
        std::sort(ia.begin(), ia.end());
        std::sort(ib.begin(), ib.end());
        int64_t common = 0;
        for (size_t p = 0, q = 0; p < ia.size() && q < ib.size();) {
          if (ia[p] == ib[q]) {
            common++;
            p++;
            q++;
          } else if (ia[p] < ib[q]) {
            p++;
          } else {
            q++;
          }
        }
        out[1] = double(common) / double(K);
      } else {
        out[1] = kNaN;
      }
      const int64_t uni = na + nb - both;
      out[2] = uni > 0 ? double(both) / double(uni) : kNaN;
      out[3] = double(M - (na + nb - 2 * both));
      out[4] = double(na);
      out[5] = double(nb);
    }
  });

  // Unit sufficient statistics (serial: cheap).
  const int64_t* keys = units.data_ptr<int64_t>();
  const double *pa = sse_a.data_ptr<double>(), *pb = sse_b.data_ptr<double>(), *qa = sst_a.data_ptr<double>(),
               *qb = sst_b.data_ptr<double>();
  std::vector<int64_t> grp(n);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t u = unit_index(keys[r]);
    grp[r] = group_of_unit_[u];
    double* s = unit_stats_.data() + u * kNumUnitStats;
    const double* o = row.data() + r * 6;
    s[kTok] += 1;
    if (!std::isnan(o[0])) {
      s[kScSum] += o[0];
      s[kScN] += 1;
    }
    if (!std::isnan(o[1])) {
      s[kTkSum] += o[1];
      s[kTkN] += 1;
    }
    if (!std::isnan(o[2])) {
      s[kJacSum] += o[2];
      s[kJacN] += 1;
    }
    s[kAgree] += o[3];
    s[kSseA] += pa[r];
    s[kSseB] += pb[r];
    s[kSstA] += qa[r];
    s[kSstB] += qb[r];
    s[kL0A] += o[4];
    s[kL0B] += o[5];
    group_tokens_[grp[r]] += 1;
  }

  // Per-group per-feature sums: parallel over feature ranges (each thread owns its columns).
  double* F = feat_.data();
  at::parallel_for(0, M, 256, [&](int64_t j0, int64_t j1) {
    for (int64_t r = 0; r < n; ++r) {
      double* base = F + grp[r] * kNumFeatStats * M;
      const float* a = A + r * M;
      const float* b = B + r * M;
      for (int64_t j = j0; j < j1; ++j) {
        const double x = a[j], y = b[j];
        if (x == 0 && y == 0) continue;
        base[kSa * M + j] += x;
        base[kSb * M + j] += y;
        base[kSaa * M + j] += x * x;
        base[kSbb * M + j] += y * y;
        base[kSab * M + j] += x * y;
        base[kCa * M + j] += x > 0;
        base[kCb * M + j] += y > 0;
      }
    }
  });
  n_tokens_ += n;
}

std::map<std::string, double> TransferAccumulator::unit_metrics(const double* s) const {
  auto ratio = [](double a, double b) { return b > 0 ? a / b : kNaN; };
  std::map<std::string, double> m;
  m["sample_correlation"] = ratio(s[kScSum], s[kScN]);
  m["topk_agreement"] = ratio(s[kTkSum], s[kTkN]);
  m["active_jaccard"] = ratio(s[kJacSum], s[kJacN]);
  m["sparsity_agreement"] = ratio(s[kAgree], s[kTok] * double(M_));
  m["explained_variance_a"] = s[kSstA] > 0 ? 1.0 - s[kSseA] / s[kSstA] : kNaN;
  m["explained_variance_b"] = s[kSstB] > 0 ? 1.0 - s[kSseB] / s[kSstB] : kNaN;
  m["mse_a"] = ratio(s[kSseA], s[kTok] * double(d_));
  m["mse_b"] = ratio(s[kSseB], s[kTok] * double(d_));
  m["l0_a"] = ratio(s[kL0A], s[kTok]);
  m["l0_b"] = ratio(s[kL0B], s[kTok]);
  return m;
}

TransferResult TransferAccumulator::finish(const std::string& unit_name, const CancelToken* cancel,
                                           const ProgressFn& progress) {
  QSAE_CHECK_RANGE(n_tokens_ > 0, "transfer: no tokens were added");
  TransferResult res;
  res.n_tokens = n_tokens_;
  res.n_features = M_;
  res.d_in = d_;
  res.k = k_;
  res.unit = unit_name;
  const int64_t U = int64_t(unit_of_key_.size());
  res.n_units = U;
  res.n_groups = G_;
  const int64_t Bn = std::max<int64_t>(0, opts_.n_boot);
  res.n_boot = Bn;

  // Point estimates.
  std::vector<double> tot(kNumUnitStats, 0.0);
  for (int64_t u = 0; u < U; ++u)
    for (int s = 0; s < kNumUnitStats; ++s) tot[s] += unit_stats_[u * kNumUnitStats + s];
  res.values = unit_metrics(tot.data());
  std::vector<double> ftot(size_t(kNumFeatStats) * M_, 0.0);
  for (int64_t g = 0; g < G_; ++g)
    for (size_t i = 0; i < ftot.size(); ++i) ftot[i] += feat_[g * ftot.size() + i];
  auto fm = feature_metrics(ftot.data(), M_, double(n_tokens_));
  res.values["feature_correlation"] = fm[0];
  res.values["dead_fraction_a"] = fm[1];
  res.values["dead_fraction_b"] = fm[2];

  // Unit bootstrap: exact multinomial resamples of units.
  std::vector<std::string> unit_names = {"sample_correlation", "topk_agreement", "active_jaccard", "sparsity_agreement",
                                         "explained_variance_a", "explained_variance_b", "mse_a", "mse_b", "l0_a", "l0_b"};
  std::vector<std::vector<double>> boot(kTransferMetrics.size(), std::vector<double>(Bn, kNaN));
  std::map<std::string, size_t> col;
  for (size_t i = 0; i < kTransferMetrics.size(); ++i) col[kTransferMetrics[i]] = i;
  at::parallel_for(0, Bn, 1, [&](int64_t b0, int64_t b1) {
    std::vector<uint32_t> cnt(U);
    std::vector<double> s(kNumUnitStats);
    for (int64_t b = b0; b < b1; ++b) {
      if (cancel && cancel->cancelled()) return;
      std::fill(cnt.begin(), cnt.end(), 0u);
      SplitMix rng(mix(opts_.seed, uint64_t(b)));
      for (int64_t i = 0; i < U; ++i) cnt[rng.below(uint64_t(U))]++;
      std::fill(s.begin(), s.end(), 0.0);
      for (int64_t u = 0; u < U; ++u) {
        if (!cnt[u]) continue;
        const double w = cnt[u];
        const double* su = unit_stats_.data() + u * kNumUnitStats;
        for (int q = 0; q < kNumUnitStats; ++q) s[q] += w * su[q];
      }
      auto m = unit_metrics(s.data());
      for (const auto& name : unit_names) boot[col[name]][b] = m[name];
    }
  });
  check_cancel(cancel);
  report(progress, "bootstrap", double(Bn) / 2, double(Bn), "resamples");

  // Group bootstrap for the per-feature metrics: counts [B, G] × sums [G, 7M], in slices.
  if (Bn > 0) {
    at::Tensor W = at::zeros({Bn, G_}, at::kDouble);
    double* w = W.data_ptr<double>();
    for (int64_t b = 0; b < Bn; ++b) {
      SplitMix rng(mix(opts_.seed ^ 0x6A09E667F3BCC908ULL, uint64_t(b)));
      for (int64_t i = 0; i < G_; ++i) w[b * G_ + rng.below(uint64_t(G_))] += 1;
    }
    const int64_t width = kNumFeatStats * M_;
    at::Tensor S = at::from_blob(feat_.data(), {G_, width}, at::kDouble);
    at::Tensor ntok = at::from_blob(group_tokens_.data(), {G_, 1}, at::kDouble);
    const int64_t slice = std::max<int64_t>(1, (int64_t(32) << 20) / (width * 8));
    for (int64_t b0 = 0; b0 < Bn; b0 += slice) {
      check_cancel(cancel);
      const int64_t b1 = std::min(Bn, b0 + slice);
      at::Tensor Ws = W.narrow(0, b0, b1 - b0);
      at::Tensor T = at::mm(Ws, S).contiguous();
      at::Tensor nt = at::mm(Ws, ntok).contiguous();
      const double* t = T.data_ptr<double>();
      const double* ntp = nt.data_ptr<double>();
      at::parallel_for(b0, b1, 1, [&](int64_t x0, int64_t x1) {
        for (int64_t b = x0; b < x1; ++b) {
          auto r = feature_metrics(t + (b - b0) * width, M_, ntp[b - b0]);
          boot[col["feature_correlation"]][b] = r[0];
          boot[col["dead_fraction_a"]][b] = r[1];
          boot[col["dead_fraction_b"]][b] = r[2];
        }
      });
      report(progress, "bootstrap", double(Bn) / 2 + double(b1) / 2, double(Bn), "resamples");
    }
  }
  for (size_t i = 0; i < kTransferMetrics.size(); ++i) {
    const auto& name = kTransferMetrics[i];
    res.ci95[name] = Bn > 0 ? interval(boot[i]) : std::array<double, 2>{kNaN, kNaN};
  }
  return res;
}

// ---------------------------------------------------------------------------------------------------------

TransferResult transfer(const sae::Sae& s, const std::string& sae_name, const std::string& path_a,
                        const std::string& path_b, const std::string& hook, int64_t layer,
                        const TransferOptions& opts, const CancelToken* cancel, const ProgressFn& progress) {
  QSAE_CHECK_RANGE(opts.k >= 1, "transfer: --k must be ≥ 1, got ", opts.k);
  QSAE_CHECK_RANGE(opts.n_boot >= 0, "transfer: the number of bootstrap resamples must be ≥ 0");
  auto A = sae::ActivationSource::open(path_a, hook, layer);
  auto B = sae::ActivationSource::open(path_b, hook, layer);
  const int64_t N = A->n_rows();
  if (B->n_rows() != N)
    fail_range("transfer: ", path_a, " has ", N, " token rows but ", path_b, " has ", B->n_rows(),
               ": the two inputs must hold the same tokens (same prompts, tokenization and skip rules)");
  if (A->d() != B->d())
    fail_range("transfer: ", path_a, " has D=", A->d(), " but ", path_b, " has D=", B->d());
  if (A->d() != s.d_in)
    fail_range("transfer: the SAE ", sae_name, " has d_in ", s.d_in, " but ", path_a, " and ", path_b, " have D=",
               A->d());
  for (const auto& [name, t] : s.named_tensors())
    if (t.defined() && at::isFloatingType(t.scalar_type()) && !at::isfinite(t).all().item<bool>())
      fail_range("transfer: the SAE ", sae_name, ": tensor '", name, "' has NaN or Inf entries");
  const int64_t D = A->d(), M = s.d_sae;
  const bool compare_tokens = A->has_tokens() && B->has_tokens();
  const bool compare_doc = A->has_doc() && B->has_doc();
  const bool have_doc = A->has_doc() || B->has_doc();

  // Pre-pass: finiteness, alignment of the tokens/doc columns, means, number of units.
  at::Tensor sum_a = at::zeros({D}, at::kDouble), sum_b = at::zeros({D}, at::kDouble);
  std::unordered_set<int64_t> docs;
  {
    A->seek(0);
    B->seek(0);
    sae::ActivationChunk ca, cb;
    const int64_t rows = std::max<int64_t>(256, (int64_t(16) << 20) / (D * 4));
    while (A->next(ca, rows)) {
      check_cancel(cancel);
      if (!B->next(cb, ca.rows()) || cb.rows() != ca.rows()) fail("transfer: ", path_b, ": ended early");
      sae::check_finite_rows(*A, ca.acts, ca.row0);
      sae::check_finite_rows(*B, cb.acts, cb.row0);
      if (compare_tokens && !at::equal(ca.tokens, cb.tokens)) {
        const int64_t r = (ca.tokens != cb.tokens).nonzero()[0][0].item<int64_t>();
        fail_range("transfer: ", path_a, " and ", path_b, " are not token-aligned: row ", ca.row0 + r,
                   " holds token ", ca.tokens[r].item<int64_t>(), " in the first and ", cb.tokens[r].item<int64_t>(),
                   " in the second (extract both with the same prompts and settings)");
      }
      if (compare_doc && !at::equal(ca.doc, cb.doc)) {
        const int64_t r = (ca.doc != cb.doc).nonzero()[0][0].item<int64_t>();
        fail_range("transfer: ", path_a, " and ", path_b, " are not aligned: row ", ca.row0 + r, " belongs to prompt ",
                   ca.doc[r].item<int64_t>(), " in the first and ", cb.doc[r].item<int64_t>(), " in the second");
      }
      sum_a += ca.acts.to(at::kDouble).sum(0);
      sum_b += cb.acts.to(at::kDouble).sum(0);
      if (have_doc) {
        at::Tensor d = (A->has_doc() ? ca.doc : cb.doc).to(at::kLong).contiguous();
        const int64_t* p = d.data_ptr<int64_t>();
        for (int64_t i = 0; i < d.numel(); ++i) docs.insert(p[i]);
      }
      report(progress, "check", double(ca.row0 + ca.rows()), double(N), "tokens");
    }
  }
  const int64_t n_units = have_doc ? int64_t(docs.size()) : N;
  docs.clear();

  // The SAE on the requested device.
  const sae::Sae* enc = &s;
  sae::Sae moved;
  at::Device dev = parse_device(opts.device);
  if (dev != s.device()) {
    moved = s.to(dev, s.dtype());
    enc = &moved;
  }
  TransferAccumulator acc(M, D, opts.k, sum_a / double(N), sum_b / double(N), n_units, opts);
  const int64_t rows = opts.chunk_rows > 0 ? opts.chunk_rows
                                           : std::clamp<int64_t>((int64_t(4) << 20) / M, 16, 4096);
  A->seek(0);
  B->seek(0);
  sae::ActivationChunk ca, cb;
  while (A->next(ca, rows)) {
    check_cancel(cancel);
    B->next(cb, ca.rows());
    at::Tensor xa = ca.acts.to(dev), xb = cb.acts.to(dev);
    at::Tensor fa = enc->encode(xa), fb = enc->encode(xb);
    at::Tensor ha = enc->decode(fa, xa), hb = enc->decode(fb, xb);  // x: per-token statistics of run-time normalized SAEs
    at::Tensor keys = have_doc ? (A->has_doc() ? ca.doc : cb.doc).to(at::kLong)
                               : at::arange(ca.row0, ca.row0 + ca.rows(), at::kLong);
    acc.add(fa, fb, xa, xb, ha, hb, keys);
    report(progress, "transfer", double(ca.row0 + ca.rows()), double(N), "tokens");
  }
  return acc.finish(have_doc ? "doc" : "token", cancel, progress);
}

}  // namespace qsae::analysis
