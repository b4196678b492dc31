// Transfer metrics of one SAE S over token-aligned activations X_A, X_B (issue 6). F_A = S.encode(X_A),
// F_B = S.encode(X_B), each N × M, are never held whole: rows stream through in chunks and every
// statistic is a sum of per-token (or per-token-per-feature) terms.
//
// Point estimates (exactly the definitions; choices on cases the issue leaves open are marked *):
//   sample_correlation  mean over tokens of Pearson(F_A[n,:], F_B[n,:]); both rows all zero: left out;
//                       exactly one row constant: 0; *both constant (not both zero): 1 if equal, else 0.
//   feature_correlation mean over features alive in A (F_A[:,j] > 0 somewhere) of Pearson(F_A[:,j], F_B[:,j]);
//                       constant F_B[:,j]: 0; *constant F_A[:,j]: 1 if F_B[:,j] is the same constant, else 0.
//                       Running float64 sums Σa, Σb, Σa², Σb², Σab per feature.
//   topk_agreement      K = min(k, |active_A(n)|), skip K = 0; |top_K(F_A[n]) ∩ top_K(F_B[n])| / K, ties to
//                       the lower index; mean over tokens.
//   sparsity_agreement  fraction of entries (n, j) with (F_A > 0) == (F_B > 0).
//   active_jaccard      per token |A∩B| / |A∪B| over active sets, mean over tokens with a non-empty union.
//   explained_variance  1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² (x̄: the mean over all tokens of that side, from a pre-pass)
//   mse                 Σ‖x − x̂‖² / (N · d_in) (mean over elements, as the SAE module's eval)
//   l0                  mean number of active (> 0) features per token
//   dead_fraction       fraction of features never active on that side
//
// Bootstrap (95% percentile intervals, n_boot resamples, fixed seed). The resampling unit is the prompt
// (the `doc` column) when the store has one, else the token.
//  * Per-token-averaged metrics (sample_correlation, topk_agreement, active_jaccard, sparsity_agreement,
//    explained_variance, mse, l0) are ratios of sums, so each unit keeps 14 float64 sufficient statistics
//    (O(units) memory) and each resample is an exact multinomial resample of units: weights · stats.
//    (explained_variance keeps x̄ at the full-data mean inside resamples: an O(1/N) difference.)
//  * Per-feature metrics (feature_correlation, dead_fractions) need per-feature sums per unit, which is
//    units × M — too large. Units are therefore dealt into G groups (G = units when units ≤ the cap, so the
//    bootstrap is then exactly the unit bootstrap; otherwise a fixed pseudo-random partition of units,
//    cap = min(256, max(32, 64 MiB / (56·M)))). Each group keeps 7 float64 sums per feature, and resamples
//    draw groups with replacement (a cluster bootstrap over random clusters of whole prompts, which is
//    consistent because the clusters are i.i.d. mixtures of prompts). A resample's per-feature sums are
//    one GEMM: counts [B, G] × sums [G, 7M], done in slices of resamples.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/cancel.h"

namespace qsae::sae {
struct Sae;
}

namespace qsae::analysis {

// Names in output order (the field names).
extern const std::vector<std::string> kTransferMetrics;

struct TransferOptions {
  int64_t k = 10;
  int64_t n_boot = 1000;
  uint64_t seed = 0x5eedULL;
  int64_t chunk_rows = 0;      // 0: automatic (about 16 MiB of codes per side)
  int64_t max_groups = 0;      // 0: automatic (see above)
  std::string device = "cpu";  // where the SAE encodes/decodes
};

struct TransferResult {
  std::map<std::string, double> values;                   // kTransferMetrics -> point estimate (NaN: undefined)
  std::map<std::string, std::array<double, 2>> ci95;      // kTransferMetrics -> [lo, hi]
  int64_t n_tokens = 0, n_features = 0, d_in = 0, k = 0;
  int64_t n_units = 0, n_groups = 0, n_boot = 0;
  std::string unit;  // "doc" or "token"
};

// The streaming core, usable on plain tensors. Rows carry a unit key (doc id or token index).
class TransferAccumulator {
 public:
  // M features, d inputs; mean_a/mean_b: [d] means of X_A, X_B (for explained variance); n_units: how many
  // distinct unit keys will be seen (decides the number of groups).
  TransferAccumulator(int64_t M, int64_t d, int64_t k, const at::Tensor& mean_a, const at::Tensor& mean_b,
                      int64_t n_units, const TransferOptions& opts);
  // fa, fb: [n, M] codes; xa, xb: [n, d] inputs; xa_hat, xb_hat: [n, d] reconstructions; unit: [n] int64 keys.
  void add(const at::Tensor& fa, const at::Tensor& fb, const at::Tensor& xa, const at::Tensor& xb,
           const at::Tensor& xa_hat, const at::Tensor& xb_hat, const at::Tensor& unit);
  TransferResult finish(const std::string& unit_name, const CancelToken* cancel = nullptr,
                        const ProgressFn& progress = {});
  int64_t n_groups() const { return G_; }

 private:
  enum UnitStat { kTok, kScSum, kScN, kTkSum, kTkN, kJacSum, kJacN, kAgree, kSseA, kSseB, kSstA, kSstB, kL0A, kL0B,
                  kNumUnitStats };
  enum FeatStat { kSa, kSb, kSaa, kSbb, kSab, kCa, kCb, kNumFeatStats };
  int64_t unit_index(int64_t key);
  std::map<std::string, double> unit_metrics(const double* s) const;

  int64_t M_, d_, k_, G_, n_units_expected_;
  TransferOptions opts_;
  at::Tensor mean_a_, mean_b_;
  std::unordered_map<int64_t, int64_t> unit_of_key_;
  std::vector<double> unit_stats_;   // [units][kNumUnitStats]
  std::vector<int64_t> group_of_unit_;
  std::vector<double> feat_;         // [G][kNumFeatStats][M]
  std::vector<double> group_tokens_; // [G]
  int64_t n_tokens_ = 0;
};

// Pearson helpers shared with tests: the rules above for degenerate cases. NaN = token left out.
double token_correlation(const float* a, const float* b, int64_t M);

// The whole analysis: opens both activation sources (store folder or .safetensors), validates them against
// each other and the SAE (row counts, tokens/doc columns, D, NaN), pre-pass for means, then streams.
TransferResult transfer(const sae::Sae& s, const std::string& sae_name, const std::string& path_a,
                        const std::string& path_b, const std::string& hook, int64_t layer,
                        const TransferOptions& opts, const CancelToken* cancel = nullptr,
                        const ProgressFn& progress = {});

}  // namespace qsae::analysis
