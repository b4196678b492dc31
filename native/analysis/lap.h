// Linear assignment on dense square matrices: an exact shortest-augmenting-path solver
// (Jonker–Volgenant / Crouse's variant, the algorithm behind scipy.optimize.linear_sum_assignment)
// and an approximate forward auction with ε-scaling for large n, both for MAXIMIZING Σ_i W[i, π(i)].
// Both return dual prices from which a rigorous upper bound on the optimum is computed, so the
// reported gap (optimum − found) is a certificate, not an estimate.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/cancel.h"

namespace qsae::analysis {

struct LapResult {
  std::vector<int64_t> col_of_row;  // π: row i is matched to column col_of_row[i]
  double value = 0;                 // Σ_i W[i, π(i)] (float64 sum)
  double upper_bound = 0;           // a dual bound: optimum ≤ upper_bound
  double gap_bound = 0;             // upper_bound − value (≥ 0 up to rounding); 0 for the exact solver
  bool exact = false;
  int64_t iterations = 0;           // augmentations (exact) or bids (auction)
};

// Exact maximum-weight perfect matching of the n×n row-major matrix W (float32). O(n³) worst case.
// Progress: stage "assign", rows done. Cancellation is polled every few rows.
LapResult solve_lap_exact(const float* W, int64_t n, const CancelToken* cancel = nullptr,
                          const ProgressFn& progress = {});

struct AuctionOptions {
  double eps_final = 1e-6;  // final ε: the auction guarantees value ≥ optimum − n·eps_final
  double theta = 8.0;       // ε is divided by theta between phases
};
// Approximate maximum-weight matching by the Gauss–Seidel forward auction with ε-scaling. The returned
// gap_bound is the duality gap computed from the final prices over the whole matrix.
LapResult solve_lap_auction(const float* W, int64_t n, const AuctionOptions& opts = {},
                            const CancelToken* cancel = nullptr, const ProgressFn& progress = {});

// Dual bound for maximization: with prices p, Σ_i max_j (W[i,j] − p_j) + Σ_j p_j ≥ optimum.
double lap_dual_bound(const float* W, int64_t n, const std::vector<double>& prices);

}  // namespace qsae::analysis
