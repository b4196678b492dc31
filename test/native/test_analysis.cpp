// analysis: LAP solvers against brute force and each other, alignment known cases, and the streamed
// transfer metrics against a plain two-pass implementation of issue 6's definitions.
#include "testing.h"
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>

#include <ATen/CPUGeneratorImpl.h>

#include "analysis/align.h"
#include "analysis/lap.h"
#include "analysis/transfer.h"
#include "common/error.h"
#include "io/safetensors.h"
#include "sae/sae.h"

using namespace qsae;
using namespace qsae::analysis;

namespace {
std::vector<float> random_matrix(int64_t n, uint32_t seed, bool ints = false) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::uniform_int_distribution<int> ui(0, 5);
  std::vector<float> w(n * n);
  for (auto& x : w) x = ints ? float(ui(g)) : u(g);
  return w;
}
double brute_force(const std::vector<float>& w, int64_t n) {
  std::vector<int64_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  double best = -1e300;
  do {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += w[i * n + p[i]];
    best = std::max(best, s);
  } while (std::next_permutation(p.begin(), p.end()));
  return best;
}
bool is_permutation(const std::vector<int64_t>& p) {
  std::set<int64_t> s(p.begin(), p.end());
  return s.size() == p.size() && *s.begin() == 0 && *s.rbegin() == int64_t(p.size()) - 1;
}
std::string temp_path(const std::string& name) { return "/tmp/qsae-test-analysis-" + std::to_string(::getpid()) + "-" + name; }

// ---- a plain implementation of the definitions (two passes, full matrices) ----
struct Ref {
  double sc, fc, tk, sp, jac;
};
Ref reference(const at::Tensor& FA, const at::Tensor& FB, int64_t k) {
  const int64_t N = FA.size(0), M = FA.size(1);
  auto a = FA.to(at::kDouble).contiguous(), b = FB.to(at::kDouble).contiguous();
  const double* A = a.data_ptr<double>();
  const double* B = b.data_ptr<double>();
  auto pearson = [](const std::vector<double>& x, const std::vector<double>& y) {
    double mx = 0, my = 0;
    for (size_t i = 0; i < x.size(); ++i) mx += x[i], my += y[i];
    mx /= x.size();
    my /= y.size();
    double sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      sxy += (x[i] - mx) * (y[i] - my);
      sxx += (x[i] - mx) * (x[i] - mx);
      syy += (y[i] - my) * (y[i] - my);
    }
    return sxy / std::sqrt(sxx * syy);
  };
  auto is_const = [](const std::vector<double>& x) { return *std::min_element(x.begin(), x.end()) == *std::max_element(x.begin(), x.end()); };
  Ref r{};
  double sc = 0, tk = 0, jac = 0, agree = 0;
  int64_t nsc = 0, ntk = 0, njac = 0;
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> x(A + n * M, A + (n + 1) * M), y(B + n * M, B + (n + 1) * M);
    bool zx = std::all_of(x.begin(), x.end(), [](double v) { return v == 0; });
    bool zy = std::all_of(y.begin(), y.end(), [](double v) { return v == 0; });
    if (!(zx && zy)) {
      sc += (is_const(x) || is_const(y)) ? 0.0 : pearson(x, y);
      nsc++;
    }
    int64_t na = 0, inter = 0, uni = 0;
    for (int64_t j = 0; j < M; ++j) {
      na += x[j] > 0;
      inter += (x[j] > 0) && (y[j] > 0);
      uni += (x[j] > 0) || (y[j] > 0);
      agree += (x[j] > 0) == (y[j] > 0);
    }
    if (uni > 0) {
      jac += double(inter) / uni;
      njac++;
    }
    int64_t K = std::min(k, na);
    if (K > 0) {
      std::vector<int64_t> ix(M), iy(M);
      std::iota(ix.begin(), ix.end(), 0);
      std::iota(iy.begin(), iy.end(), 0);
      std::stable_sort(ix.begin(), ix.end(), [&](int64_t p, int64_t q) { return x[p] > x[q]; });
      std::stable_sort(iy.begin(), iy.end(), [&](int64_t p, int64_t q) { return y[p] > y[q]; });
      std::set<int64_t> ta(ix.begin(), ix.begin() + K);
      int64_t c = 0;
      for (int64_t q = 0; q < K; ++q) c += ta.count(iy[q]);
      tk += double(c) / K;
      ntk++;
    }
  }
  double fc = 0;
  int64_t nfc = 0;
  for (int64_t j = 0; j < M; ++j) {
    std::vector<double> x(N), y(N);
    for (int64_t n = 0; n < N; ++n) x[n] = A[n * M + j], y[n] = B[n * M + j];
    if (!std::any_of(x.begin(), x.end(), [](double v) { return v > 0; })) continue;
    fc += is_const(y) ? 0.0 : pearson(x, y);
    nfc++;
  }
  r.sc = sc / nsc;
  r.tk = tk / ntk;
  r.jac = jac / njac;
  r.sp = agree / double(N * M);
  r.fc = fc / nfc;
  return r;
}

sae::Sae random_sae(int64_t d, int64_t M, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  sae::Sae s = sae::init_sae("relu", d, M, 0, gen);
  s.b_enc = at::randn({M}, gen) * 0.3 - 0.2;
  s.b_dec = at::randn({d}, gen) * 0.1;
  return s;
}
}  // namespace

TEST_CASE("exact LAP equals brute force on small matrices, including ties") {
  for (int64_t n = 1; n <= 7; ++n) {
    for (uint32_t seed = 0; seed < 6; ++seed) {
      auto w = random_matrix(n, seed * 31 + n, seed % 2 == 1);
      auto r = solve_lap_exact(w.data(), n);
      CHECK(is_permutation(r.col_of_row));
      CHECK(r.value == doctest::Approx(brute_force(w, n)).epsilon(1e-9));
      CHECK(r.upper_bound == doctest::Approx(r.value).epsilon(1e-9));
    }
  }
}

TEST_CASE("auction is within its certified gap of the exact optimum") {
  for (int64_t n : {2, 17, 150}) {
    auto w = random_matrix(n, 1000 + n);
    auto ex = solve_lap_exact(w.data(), n);
    AuctionOptions o;
    o.eps_final = 1e-5;
    auto au = solve_lap_auction(w.data(), n, o);
    CHECK(is_permutation(au.col_of_row));
    CHECK(au.value <= ex.value + 1e-6);
    CHECK(au.upper_bound >= ex.value - 1e-6);
    CHECK(au.gap_bound <= n * o.eps_final + 1e-6);
    CHECK(ex.value - au.value <= au.gap_bound + 1e-6);
  }
}

TEST_CASE("LAP rejects NaN weights") {
  std::vector<float> w = {1, 2, std::nanf(""), 4};
  CHECK_THROWS_AS(solve_lap_exact(w.data(), 2), Error);
}

TEST_CASE("alignment of a dictionary with a permuted, rotated copy recovers the permutation") {
  const int64_t M = 96, d = 32;
  at::manual_seed(7);
  at::Tensor D = at::randn({M, d}, at::kDouble);
  // A rotation near the identity (exp of a small skew-symmetric matrix): the matching stays recoverable.
  at::Tensor S = at::randn({d, d}, at::kDouble) * 0.05;
  at::Tensor Q = at::linalg_matrix_exp(S - S.t());
  at::Tensor perm = at::randperm(M, at::kLong);
  // B[perm[i]] = D[i] Q  (so π(i) = perm[i])
  at::Tensor B = at::empty_like(D);
  B.index_copy_(0, perm, at::mm(D, Q) * 3.0);  // scaled rows: cosines ignore norms
  for (bool approx : {false, true}) {
    AlignOptions o;
    o.force_approx = approx;
    auto r = align_dictionaries(D, B, o);
    CHECK(r.exact == !approx);
    std::vector<int64_t> want(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + M);
    CHECK(r.permutation == want);
    CHECK(r.procrustes_alignment == doctest::Approx(1.0).epsilon(1e-9));
    CHECK(r.frac_cosine_ge_0_7 == 1.0);
    CHECK(r.matched_cosine < 1.0);
    CHECK(r.gap_bound >= 0);
  }
  // Identical dictionaries: everything is 1 and the permutation is the identity.
  auto same = align_dictionaries(D, D, AlignOptions{});
  CHECK(same.matched_cosine == doctest::Approx(1.0).epsilon(1e-6));
  for (int64_t i = 0; i < M; ++i) CHECK(same.permutation[i] == i);
}

TEST_CASE("align_saes names both SAEs on a shape mismatch") {
  auto a = random_sae(8, 16, 1), b = random_sae(8, 32, 2);
  try {
    align_saes(a, b, "saeA", "saeB", AlignOptions{});
    FAIL("expected an error");
  } catch (const Error& e) {
    std::string m = e.what();
    CHECK(m.find("saeA") != std::string::npos);
    CHECK(m.find("saeB") != std::string::npos);
  }
}

TEST_CASE("token_correlation degenerate rules") {
  std::vector<float> z = {0, 0, 0}, c = {2, 2, 2}, x = {1, 0, 3}, y = {2, 0, 6};
  CHECK(std::isnan(token_correlation(z.data(), z.data(), 3)));
  CHECK(token_correlation(z.data(), x.data(), 3) == 0.0);
  CHECK(token_correlation(x.data(), c.data(), 3) == 0.0);
  CHECK(token_correlation(c.data(), c.data(), 3) == 1.0);
  CHECK(token_correlation(x.data(), y.data(), 3) == doctest::Approx(1.0));
}

TEST_CASE("streamed metrics equal a plain implementation; identical inputs give 1") {
  const int64_t N = 150, M = 40, d = 12, k = 5;
  at::manual_seed(3);
  // Sparse codes with ties (rounded values) so tie-breaking matters.
  at::Tensor FA = at::relu(at::randn({N, M}) - 0.8).mul(4).round().div(4);
  at::Tensor FB = at::relu(FA + at::randn({N, M}) * 0.3 - 0.1).mul(4).round().div(4);
  FB.select(0, 5).zero_();
  FA.select(0, 5).zero_();  // a token with both rows zero: left out
  FA.select(1, 3).zero_();  // a feature dead in A
  FB.select(1, 7).zero_();  // a feature constant in B
  at::Tensor X = at::randn({N, d}, at::kDouble), Xh = X + 0.1 * at::randn({N, d}, at::kDouble);
  at::Tensor doc = at::arange(N, at::kLong).div(10, "floor");
  TransferOptions o;
  o.k = k;
  o.n_boot = 200;
  TransferAccumulator acc(M, d, k, X.mean(0), X.mean(0), 15, o);
  for (int64_t r0 = 0; r0 < N; r0 += 37) {
    int64_t n = std::min<int64_t>(37, N - r0);
    acc.add(FA.narrow(0, r0, n), FB.narrow(0, r0, n), X.narrow(0, r0, n), X.narrow(0, r0, n), Xh.narrow(0, r0, n),
            X.narrow(0, r0, n), doc.narrow(0, r0, n));
  }
  auto res = acc.finish("doc");
  auto ref = reference(FA, FB, k);
  CHECK(res.values["sample_correlation"] == doctest::Approx(ref.sc).epsilon(1e-9));
  CHECK(res.values["feature_correlation"] == doctest::Approx(ref.fc).epsilon(1e-9));
  CHECK(res.values["topk_agreement"] == doctest::Approx(ref.tk).epsilon(1e-12));
  CHECK(res.values["active_jaccard"] == doctest::Approx(ref.jac).epsilon(1e-12));
  CHECK(res.values["sparsity_agreement"] == doctest::Approx(ref.sp).epsilon(1e-12));
  double sse = (X - Xh).pow(2).sum().item<double>(), sst = (X - X.mean(0)).pow(2).sum().item<double>();
  CHECK(res.values["explained_variance_a"] == doctest::Approx(1 - sse / sst).epsilon(1e-12));
  CHECK(res.values["explained_variance_b"] == doctest::Approx(1.0));
  CHECK(res.values["mse_a"] == doctest::Approx(sse / (N * d)).epsilon(1e-12));
  CHECK(res.values["l0_a"] == doctest::Approx((FA > 0).sum().item<double>() / N));
  CHECK(res.values["dead_fraction_a"] == doctest::Approx(((FA > 0).sum(0) == 0).sum().item<double>() / M));
  CHECK(res.values["dead_fraction_b"] == doctest::Approx(((FB > 0).sum(0) == 0).sum().item<double>() / M));
  CHECK(res.n_units == 15);
  CHECK(res.n_groups == 15);
  for (const auto& name : kTransferMetrics) {
    auto ci = res.ci95[name];
    CHECK(ci[0] <= res.values[name] + 1e-12);
    CHECK(ci[1] >= res.values[name] - 1e-12);
  }
  CHECK(res.ci95["l0_a"][1] > res.ci95["l0_a"][0]);

  // Identical codes: every correlation and agreement is exactly 1, intervals collapse to [1, 1].
  TransferAccumulator same(M, d, k, X.mean(0), X.mean(0), N, o);
  same.add(FA, FA, X, X, Xh, Xh, at::arange(N, at::kLong));
  auto s = same.finish("token");
  for (const char* name : {"sample_correlation", "feature_correlation", "topk_agreement", "sparsity_agreement", "active_jaccard"}) {
    CHECK(s.values[name] == doctest::Approx(1.0).epsilon(1e-12));
    CHECK(s.ci95[name][0] == doctest::Approx(1.0).epsilon(1e-12));
  }
  CHECK(s.values["explained_variance_a"] == s.values["explained_variance_b"]);
}

TEST_CASE("topk ties go to the lower index") {
  // A: entries 1..4 equal; K = min(2, 4) = 2 → T_A = {1, 2}. B: equal at 2, 3, 4 → T_B = {2, 3}.
  const int64_t M = 6;
  at::Tensor FA = at::tensor({0.f, 1.f, 1.f, 1.f, 1.f, 0.f}).reshape({1, M});
  at::Tensor FB = at::tensor({0.f, 0.f, 1.f, 1.f, 1.f, 0.f}).reshape({1, M});
  at::Tensor X = at::randn({1, 2}, at::kDouble);
  TransferOptions o;
  o.k = 2;
  o.n_boot = 0;
  TransferAccumulator acc(M, 2, 2, X[0], X[0], 1, o);
  acc.add(FA, FB, X, X, X, X, at::zeros({1}, at::kLong));
  auto r = acc.finish("token");
  CHECK(r.values["topk_agreement"] == doctest::Approx(0.5));
  CHECK(r.values["active_jaccard"] == doctest::Approx(3.0 / 4.0));
}

TEST_CASE("bootstrap is deterministic for a seed and grouped above the cap") {
  const int64_t N = 400, M = 24, d = 4;
  at::manual_seed(11);
  at::Tensor FA = at::relu(at::randn({N, M}) - 0.5), FB = at::relu(FA + 0.2 * at::randn({N, M}));
  at::Tensor X = at::randn({N, d}, at::kDouble);
  TransferOptions o;
  o.n_boot = 300;
  o.max_groups = 32;
  auto run = [&] {
    TransferAccumulator acc(M, d, 10, X.mean(0), X.mean(0), N, o);
    acc.add(FA, FB, X, X, X * 0.9, X * 0.8, at::arange(N, at::kLong));
    return acc.finish("token");
  };
  auto r1 = run(), r2 = run();
  CHECK(r1.n_groups == 32);
  for (const auto& name : kTransferMetrics) {
    CHECK(r1.ci95[name][0] == r2.ci95[name][0]);
    CHECK(r1.ci95[name][1] == r2.ci95[name][1]);
  }
  CHECK(r1.ci95["feature_correlation"][0] < r1.values["feature_correlation"]);
  CHECK(r1.ci95["feature_correlation"][1] > r1.values["feature_correlation"]);
}

TEST_CASE("transfer() validates its inputs and names both files") {
  const int64_t d = 6, M = 10;
  auto s = random_sae(d, M, 5);
  at::manual_seed(2);
  at::Tensor X = at::randn({20, d});
  at::Tensor tok = at::arange(20, at::kLong);
  auto pa = temp_path("a.safetensors"), pb = temp_path("b.safetensors"), pc = temp_path("c.safetensors"),
       pd = temp_path("d.safetensors"), pe = temp_path("e.safetensors");
  save_safetensors(pa, {{"acts", X}, {"tokens", tok}, {"doc", at::arange(20, at::kInt).div(4, "floor")}});
  save_safetensors(pb, {{"acts", X + 0.01}, {"tokens", tok}, {"doc", at::arange(20, at::kInt).div(4, "floor")}});
  at::Tensor tok2 = tok.clone();
  tok2[13] = 99;
  save_safetensors(pc, {{"acts", X}, {"tokens", tok2}});
  save_safetensors(pd, {{"acts", X.narrow(0, 0, 19)}});
  at::Tensor Xn = X.clone();
  Xn[4][2] = std::nanf("");
  save_safetensors(pe, {{"acts", Xn}});
  auto err = [&](const std::string& a, const std::string& b) -> std::string {
    try {
      transfer(s, "SAE", a, b, "", -1, TransferOptions{});
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  std::string m = err(pa, pc);
  CHECK(m.find("not token-aligned") != std::string::npos);
  CHECK(m.find(pa) != std::string::npos);
  CHECK(m.find(pc) != std::string::npos);
  m = err(pa, pd);
  CHECK(m.find("20 token rows") != std::string::npos);
  CHECK(m.find(pd) != std::string::npos);
  CHECK(err(pa, pe).find("row 4") != std::string::npos);
  auto s2 = random_sae(d + 1, M, 5);
  try {
    transfer(s2, "SAE2", pa, pb, "", -1, TransferOptions{});
    FAIL("expected a d_in error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("SAE2") != std::string::npos);
  }
  // A good pair works and resamples the 5 prompts.
  TransferOptions o;
  o.n_boot = 50;
  auto r = transfer(s, "SAE", pa, pb, "", -1, o);
  CHECK(r.unit == "doc");
  CHECK(r.n_units == 5);
  CHECK(r.n_tokens == 20);
  auto self = transfer(s, "SAE", pa, pa, "", -1, o);
  CHECK(self.values["sample_correlation"] == doctest::Approx(1.0));
  CHECK(self.values["topk_agreement"] == doctest::Approx(1.0));
  for (auto& p : {pa, pb, pc, pd, pe}) std::remove(p.c_str());
}

TEST_CASE("grouped bootstrap of per-feature metrics agrees with the exact prompt bootstrap in width") {
  // 150 prompts of 4 tokens: exact (one group per prompt) vs 32 random groups of prompts.
  const int64_t N = 600, M = 32, d = 4;
  at::manual_seed(21);
  at::Tensor FA = at::relu(at::randn({N, M}) - 0.3), FB = at::relu(FA + 0.6 * at::randn({N, M}) - 0.1);
  at::Tensor X = at::randn({N, d}, at::kDouble);
  at::Tensor doc = at::arange(N, at::kLong).div(4, "floor");
  auto run = [&](int64_t groups) {
    TransferOptions o;
    o.max_groups = groups;
    TransferAccumulator acc(M, d, 10, X.mean(0), X.mean(0), 150, o);
    acc.add(FA, FB, X, X, X * 0.9, X * 0.8, doc);
    return acc.finish("doc");
  };
  auto exact = run(256), grouped = run(32);
  CHECK(exact.n_groups == 150);
  CHECK(grouped.n_groups == 32);
  CHECK(exact.values["feature_correlation"] == doctest::Approx(grouped.values["feature_correlation"]).epsilon(1e-12));
  const double w_exact = exact.ci95["feature_correlation"][1] - exact.ci95["feature_correlation"][0];
  const double w_grouped = grouped.ci95["feature_correlation"][1] - grouped.ci95["feature_correlation"][0];
  CHECK(w_exact > 0);
  CHECK(w_grouped / w_exact > 0.6);
  CHECK(w_grouped / w_exact < 1.6);
}
