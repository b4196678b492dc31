// Alignment of two dictionaries (two SAEs with the same d_sae = M and d_in), as defined in issue 6:
//   D_A, D_B: M × d_in, each row scaled to unit norm; C = D_A D_Bᵀ.
//   matched_cosine       mean of C[i, π(i)] for the assignment π maximizing Σ_i C[i, π(i)]
//   procrustes_alignment mean over i of cos(D_A[i] R, D_B[π(i)]), R = U Vᵀ from the SVD of D_Aᵀ D_B[π]
//   frac_cosine_ge_0_7   fraction of pairs whose cosine after rotation is ≥ 0.7
// The same for encoders (columns of W_enc, i.e. rows of W_encᵀ), with their own assignment.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "common/cancel.h"

namespace qsae::sae {
struct Sae;
}

namespace qsae::analysis {

struct AlignOptions {
  int64_t exact_max = 4096;    // exact JV up to this M; the ε-scaling auction above it
  double eps_final = 1e-6;     // auction: final ε (mean-cosine gap ≤ eps_final by the auction guarantee)
  bool force_exact = false;    // exact even above exact_max
  bool force_approx = false;   // auction even at or below exact_max
};

struct DictAlignment {
  double matched_cosine = 0;
  double procrustes_alignment = 0;
  double frac_cosine_ge_0_7 = 0;
  std::vector<int64_t> permutation;  // π: feature i of A ↔ feature permutation[i] of B
  std::vector<float> matched;        // C[i, π(i)] (before rotation)
  std::vector<float> rotated;        // cos(D_A[i] R, D_B[π(i)])
  bool exact = true;
  double gap_bound = 0;  // on matched_cosine (mean scale): optimum − matched_cosine ≤ gap_bound
  int64_t iterations = 0;
};

// A, B: [M, d] (any float dtype, CPU). Rows are normalized here (zero rows stay zero).
// `what` names the dictionaries in progress messages ("decoder" / "encoder").
DictAlignment align_dictionaries(const at::Tensor& A, const at::Tensor& B, const AlignOptions& opts,
                                 const CancelToken* cancel = nullptr, const ProgressFn& progress = {},
                                 const std::string& what = "decoder");

struct AlignResult {
  DictAlignment decoder, encoder;
  int64_t n_features = 0, d_in = 0;
};

// Checks d_in and d_sae agree (the error names both folders), then aligns decoders and encoders.
AlignResult align_saes(const sae::Sae& a, const sae::Sae& b, const std::string& name_a, const std::string& name_b,
                       const AlignOptions& opts, const CancelToken* cancel = nullptr, const ProgressFn& progress = {});

}  // namespace qsae::analysis
