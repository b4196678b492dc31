// Dictionary alignment: assignment on decoder (and encoder) cosines, then orthogonal Procrustes.
#include "analysis/align.h"

#include <cmath>

#include "analysis/lap.h"
#include "common/error.h"
#include "sae/sae.h"

namespace qsae::analysis {

namespace {
at::Tensor unit_rows(const at::Tensor& t) {
  at::Tensor x = t.detach().to(at::kCPU, at::kDouble).contiguous();
  at::Tensor norms = x.norm(2, {1}, true);
  // Zero rows stay zero (their cosines are 0).
  return x / norms.clamp_min(1e-30);
}

void check_finite(const at::Tensor& t, const std::string& what) {
  if (!at::isfinite(t).all().item<bool>()) fail_range(what, ": has NaN or Inf entries");
}
}  // namespace

DictAlignment align_dictionaries(const at::Tensor& A, const at::Tensor& B, const AlignOptions& opts,
                                 const CancelToken* cancel, const ProgressFn& progress, const std::string& what) {
  QSAE_CHECK_RANGE(A.dim() == 2 && B.dim() == 2, what, ": expected 2-D dictionaries");
  QSAE_CHECK_RANGE(A.sizes() == B.sizes(), what, ": shapes differ: ", A.sizes(), " vs ", B.sizes());
  const int64_t M = A.size(0);
  QSAE_CHECK_RANGE(M > 0 && A.size(1) > 0, what, ": empty dictionary");
  check_finite(A, what + " A");
  check_finite(B, what + " B");
  at::Tensor Da = unit_rows(A), Db = unit_rows(B);
  // Cosine matrix in float32 (M = 16384: 1 GiB); the solvers sum in float64.
  at::Tensor C = at::mm(Da.to(at::kFloat), Db.to(at::kFloat).t()).contiguous();
  check_cancel(cancel);
  const bool exact = opts.force_exact || (!opts.force_approx && M <= opts.exact_max);
  ProgressFn inner;
  if (progress) {
    inner = [&](const Progress& p) {
      Progress q = p;
      q.stage = what + " " + p.stage;
      progress(q);
    };
  }
  LapResult lap;
  if (exact) {
    lap = solve_lap_exact(C.data_ptr<float>(), M, cancel, inner);
  } else {
    AuctionOptions ao;
    ao.eps_final = opts.eps_final;
    lap = solve_lap_auction(C.data_ptr<float>(), M, ao, cancel, inner);
  }
  DictAlignment out;
  out.exact = lap.exact;
  out.gap_bound = lap.gap_bound / double(M);
  out.iterations = lap.iterations;
  out.permutation = lap.col_of_row;
  out.matched.resize(M);
  const float* c = C.data_ptr<float>();
  for (int64_t i = 0; i < M; ++i) out.matched[i] = c[i * M + lap.col_of_row[i]];
  out.matched_cosine = lap.value / double(M);
  C = at::Tensor();  // free the M×M matrix before the SVD

  // Orthogonal Procrustes: R = U Vᵀ, U S Vᵀ = D_Aᵀ D_B[π].
  at::Tensor perm = at::from_blob(out.permutation.data(), {M}, at::kLong).clone();
  at::Tensor DbP = Db.index_select(0, perm);
  at::Tensor K = at::mm(Da.t(), DbP);
  auto [U, S, Vh] = at::linalg_svd(K, /*full_matrices=*/false);
  at::Tensor R = at::mm(U, Vh);
  at::Tensor rotated = at::mm(Da, R);
  at::Tensor num = (rotated * DbP).sum(1);
  at::Tensor den = (rotated.norm(2, {1}) * DbP.norm(2, {1})).clamp_min(1e-30);
  at::Tensor cos = (num / den).clamp(-1.0, 1.0);
  out.procrustes_alignment = cos.mean().item<double>();
  out.frac_cosine_ge_0_7 = (cos >= 0.7).to(at::kDouble).mean().item<double>();
  at::Tensor cf = cos.to(at::kFloat).contiguous();
  out.rotated.assign(cf.data_ptr<float>(), cf.data_ptr<float>() + M);
  return out;
}

AlignResult align_saes(const sae::Sae& a, const sae::Sae& b, const std::string& name_a, const std::string& name_b,
                       const AlignOptions& opts, const CancelToken* cancel, const ProgressFn& progress) {
  if (a.d_in != b.d_in)
    fail_range("align: d_in differs: ", name_a, " has d_in ", a.d_in, ", ", name_b, " has d_in ", b.d_in);
  if (a.d_sae != b.d_sae)
    fail_range("align: number of features differs: ", name_a, " has d_sae ", a.d_sae, ", ", name_b, " has d_sae ",
               b.d_sae);
  check_finite(a.W_dec, name_a + ": W_dec");
  check_finite(b.W_dec, name_b + ": W_dec");
  check_finite(a.W_enc, name_a + ": W_enc");
  check_finite(b.W_enc, name_b + ": W_enc");
  AlignResult r;
  r.n_features = a.d_sae;
  r.d_in = a.d_in;
  r.decoder = align_dictionaries(a.W_dec, b.W_dec, opts, cancel, progress, "decoder");
  r.encoder = align_dictionaries(a.W_enc.t(), b.W_enc.t(), opts, cancel, progress, "encoder");
  return r;
}

}  // namespace qsae::analysis
