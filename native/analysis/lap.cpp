// Linear assignment solvers (see lap.h).
//
// Exact: the shortest augmenting path method of Jonker & Volgenant in the form of Crouse (2016), as in
// scipy's linear_sum_assignment, started from JV's column reduction (which alone solves near-permutation
// matrices): one Dijkstra-like search per free row over reduced costs c_ij − u_i − v_j,
// then a dual update that keeps every reduced cost ≥ 0. We minimize c = −W. Ties prefer an unassigned
// column (ends the search early), which is what makes the method fast on near-permutation matrices.
//
// Approximate: Bertsekas' forward auction. Each unassigned row bids for its best column j1 (value
// W_ij − p_j), raising p_j1 by (best − second best + ε). ε starts at a fraction of the value range
// and shrinks by theta each phase (assignments are reset, prices kept) down to eps_final; at the end
// every row is within ε of its best, so the matching is within n·ε of the optimum. We report the exact
// duality gap of the final prices over the full matrix, which is usually far below n·ε.
#include "analysis/lap.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/error.h"

namespace qsae::analysis {

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();

void check_finite_matrix(const float* W, int64_t n) {
  for (int64_t i = 0; i < n * n; ++i)
    if (!std::isfinite(W[i])) fail_range("linear assignment: weight matrix has a non-finite entry at (", i / n, ", ", i % n, ")");
}

void report(const ProgressFn& progress, const char* stage, double done, double total, const std::string& msg = "") {
  if (progress) progress(Progress{stage, done, total, "rows", msg});
}
}  // namespace

double lap_dual_bound(const float* W, int64_t n, const std::vector<double>& prices) {
  std::vector<double> row_max(n);
  at::parallel_for(0, n, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float* w = W + i * n;
      double m = -kInf;
      for (int64_t j = 0; j < n; ++j) m = std::max(m, double(w[j]) - prices[j]);
      row_max[i] = m;
    }
  });
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += row_max[i] + prices[i];
  return s;
}

LapResult solve_lap_exact(const float* W, int64_t n, const CancelToken* cancel, const ProgressFn& progress) {
  QSAE_CHECK_RANGE(n >= 0, "linear assignment: negative size");
  check_finite_matrix(W, n);
  LapResult res;
  res.exact = true;
  res.col_of_row.assign(n, -1);
  if (n == 0) return res;
  std::vector<double> u(n, 0.0), v(n, 0.0), spc(n);
  std::vector<int64_t> path(n, -1), col4row(n, -1), row4col(n, -1), remaining(n);
  std::vector<char> SR(n), SC(n);
  std::vector<int64_t> sr_list;
  sr_list.reserve(n);

  // Column reduction (the first step of JV): v_j = min_i c_ij keeps every reduced cost ≥ 0, and each column
  // whose minimizing row is still free is matched to it at reduced cost 0.
  {
    std::vector<int64_t> arg(n, 0);
    for (int64_t j = 0; j < n; ++j) v[j] = -double(W[j]);
    for (int64_t i = 1; i < n; ++i) {
      const float* wi = W + i * n;
      for (int64_t j = 0; j < n; ++j) {
        const double c = -double(wi[j]);
        if (c < v[j]) {
          v[j] = c;
          arg[j] = i;
        }
      }
    }
    for (int64_t j = n - 1; j >= 0; --j) {
      const int64_t i = arg[j];
      if (col4row[i] == -1) {
        col4row[i] = j;
        row4col[j] = i;
      }
    }
  }
  int64_t done_rows = 0;
  for (int64_t cur = 0; cur < n; ++cur) {
    if (col4row[cur] != -1) continue;
    if ((done_rows++ & 63) == 0) {
      check_cancel(cancel);
      report(progress, "assign", double(cur), double(n));
    }
    // Dijkstra over columns from row `cur`.
    double min_val = 0;
    int64_t num_rem = n;
    for (int64_t it = 0; it < n; ++it) remaining[it] = n - it - 1;
    std::fill(SR.begin(), SR.end(), 0);
    std::fill(SC.begin(), SC.end(), 0);
    std::fill(spc.begin(), spc.end(), kInf);
    sr_list.clear();
    int64_t sink = -1, i = cur;
    while (sink == -1) {
      int64_t index = -1;
      double lowest = kInf;
      SR[i] = 1;
      sr_list.push_back(i);
      const float* wi = W + i * n;
      const double base = min_val - u[i];
      for (int64_t it = 0; it < num_rem; ++it) {
        const int64_t j = remaining[it];
        const double r = base - double(wi[j]) - v[j];  // cost = −W
        if (r < spc[j]) {
          path[j] = i;
          spc[j] = r;
        }
        if (spc[j] < lowest || (spc[j] == lowest && row4col[j] == -1)) {
          lowest = spc[j];
          index = it;
        }
      }
      min_val = lowest;
      if (!(min_val < kInf)) fail("linear assignment: no feasible assignment (internal error)");
      const int64_t j = remaining[index];
      if (row4col[j] == -1)
        sink = j;
      else
        i = row4col[j];
      SC[j] = 1;
      remaining[index] = remaining[--num_rem];
    }
    // Dual update.
    u[cur] += min_val;
    for (int64_t r : sr_list)
      if (r != cur) u[r] += min_val - spc[col4row[r]];
    for (int64_t j = 0; j < n; ++j)
      if (SC[j]) v[j] -= min_val - spc[j];
    // Augment along the path.
    int64_t j = sink;
    while (true) {
      const int64_t r = path[j];
      row4col[j] = r;
      std::swap(col4row[r], j);
      if (r == cur) break;
    }
    res.iterations++;
  }
  report(progress, "assign", double(n), double(n));
  res.col_of_row = col4row;
  double value = 0;
  for (int64_t r = 0; r < n; ++r) value += double(W[r * n + col4row[r]]);
  res.value = value;
  // Prices for the maximization dual: p_j = −v_j.
  std::vector<double> p(n);
  for (int64_t j = 0; j < n; ++j) p[j] = -v[j];
  res.upper_bound = lap_dual_bound(W, n, p);
  res.gap_bound = 0;  // optimal by construction; upper_bound − value is rounding only
  return res;
}

LapResult solve_lap_auction(const float* W, int64_t n, const AuctionOptions& opts, const CancelToken* cancel,
                            const ProgressFn& progress) {
  QSAE_CHECK_RANGE(n >= 0, "linear assignment: negative size");
  QSAE_CHECK_RANGE(opts.eps_final > 0 && opts.theta > 1, "auction: eps_final must be > 0 and theta > 1");
  check_finite_matrix(W, n);
  LapResult res;
  res.exact = false;
  res.col_of_row.assign(n, -1);
  if (n == 0) return res;
  if (n == 1) {
    res.col_of_row[0] = 0;
    res.value = res.upper_bound = W[0];
    return res;
  }
  float wmin = W[0], wmax = W[0];
  for (int64_t i = 0; i < n * n; ++i) {
    wmin = std::min(wmin, W[i]);
    wmax = std::max(wmax, W[i]);
  }
  const double range = std::max(double(wmax) - double(wmin), 1e-12);
  std::vector<double> price(n, 0.0);
  std::vector<int64_t> owner(n, -1), col_of(n, -1), queue;
  queue.reserve(n);
  double eps = std::max(range / 4.0, opts.eps_final);
  int64_t phase = 0;
  while (true) {
    std::fill(owner.begin(), owner.end(), -1);
    std::fill(col_of.begin(), col_of.end(), -1);
    queue.clear();
    for (int64_t i = n - 1; i >= 0; --i) queue.push_back(i);
    int64_t since_check = 0;
    while (!queue.empty()) {
      const int64_t i = queue.back();
      queue.pop_back();
      const float* wi = W + i * n;
      // Best and second-best value of W_ij − p_j.
      double b1 = -kInf, b2 = -kInf;
      int64_t j1 = -1;
      for (int64_t j = 0; j < n; ++j) {
        const double val = double(wi[j]) - price[j];
        if (val > b2) {
          if (val > b1) {
            b2 = b1;
            b1 = val;
            j1 = j;
          } else {
            b2 = val;
          }
        }
      }
      price[j1] += (b1 - b2) + eps;
      const int64_t prev = owner[j1];
      owner[j1] = i;
      col_of[i] = j1;
      if (prev >= 0) {
        col_of[prev] = -1;
        queue.push_back(prev);
      }
      res.iterations++;
      if (++since_check >= 2048) {
        since_check = 0;
        check_cancel(cancel);
        report(progress, "auction", double(n - int64_t(queue.size())), double(n),
               "phase " + std::to_string(phase) + ", eps " + std::to_string(eps));
      }
    }
    phase++;
    if (eps <= opts.eps_final) break;
    eps = std::max(eps / opts.theta, opts.eps_final);
  }
  res.col_of_row = col_of;
  double value = 0;
  for (int64_t r = 0; r < n; ++r) value += double(W[r * n + col_of[r]]);
  res.value = value;
  res.upper_bound = lap_dual_bound(W, n, price);
  res.gap_bound = std::max(0.0, res.upper_bound - value);
  report(progress, "auction", double(n), double(n));
  return res;
}

}  // namespace qsae::analysis
