// Fused CPU kernels against plain ATen autograd (values and gradients) on fresh random inputs, fused Adam
// against the reference Adam, a fused jumprelu training run against the autograd one, and the CUDA kernels
// against the CPU reference when a GPU is present.
#include "testing.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "common/runtime.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "sae/fused_cpu.h"
#include "sae/kernels.h"
#include "sae/sae.h"
#include "sae/sae_cuda.h"
#include "sae/trainer.h"
#ifdef QSAE_HAVE_CUDA
#include <c10/cuda/CUDAStream.h>

#include "sae/sae_kernels.h"
#endif

using namespace qsae;
using namespace qsae::sae;

namespace {
uint64_t fresh_seed() { return std::random_device{}(); }

void check_close(const at::Tensor& a, const at::Tensor& b, const std::string& what, double rtol = 2e-4, double atol = 2e-6) {
  INFO(what);
  REQUIRE(a.defined());
  REQUIRE(b.defined());
  CHECK(a.sizes() == b.sizes());
  auto diff = (a.cpu().to(at::kDouble) - b.cpu().to(at::kDouble)).abs().max().item<double>();
  auto scale = b.abs().max().item<double>();
  INFO("max |diff| = " << diff << ", max |ref| = " << scale);
  CHECK(diff <= atol + rtol * scale);
}

void compare_step(const Sae& s, const StepResult& f, const StepResult& r) {
  if (s.architecture == "jumprelu") {
    check_close(f.gthreshold, r.gthreshold, "gthreshold");
    CHECK(r.gthreshold.abs().max().item<double>() > 0);  // the threshold windows were not empty
  }
  CHECK(f.mse == doctest::Approx(r.mse).epsilon(1e-4));
  CHECK(f.l1 == doctest::Approx(r.l1).epsilon(1e-4));
  CHECK(f.l0 == doctest::Approx(r.l0).epsilon(1e-6));
  CHECK(f.aux == doctest::Approx(r.aux).epsilon(1e-4));
  CHECK(f.loss == doctest::Approx(r.loss).epsilon(1e-4));
  CHECK(at::equal(f.fired, r.fired));
  check_close(f.gW_enc, r.gW_enc, "gW_enc");
  check_close(f.gb_enc, r.gb_enc, "gb_enc");
  check_close(f.gW_dec, r.gW_dec, "gW_dec");
  check_close(f.gb_dec, r.gb_dec, "gb_dec");
}

// The fused step with the CPU loops in use (AVX2 where the processor has it) and with the portable ones.
void compare(const Sae& s, const at::Tensor& x, const LossOptions& o, const std::string& label) {
  auto r = autograd_forward_backward(s, x, o);
  for (std::string kernel : {"auto", "generic"}) {
    set_cpu_kernel(kernel);
    auto f = fused_forward_backward_cpu(s, x, o);
    set_cpu_kernel("auto");
    INFO(label << ", cpu kernel " << kernel);
    compare_step(s, f, r);
  }
}

Sae random_sae(const std::string& arch, int64_t d, int64_t S, int64_t k, at::Generator& g) {
  auto s = init_sae(arch, d, S, k, g);
  s.W_enc.normal_(0, 0.3, g);
  s.W_dec.normal_(0, 0.3, g);
  s.b_enc.normal_(0, 0.2, g);
  s.b_dec.normal_(0, 0.2, g);
  return s;
}

// How far the step's selections are from being decided by rounding: the fused path computes pre as mm, then the
// bias; autograd as addmm, whose sums can differ in the last bits (d_in above one GEMM block). Returns the smallest
// |pre| (relu: fires or not), gap between each row's k-th and (k+1)-th largest pre (topk), or gap at the batch's
// (k n)-th largest relu(pre) (batchtopk), relative to max |pre|.
double selection_margin(const Sae& s, const at::Tensor& x) {
  c10::NoGradGuard ng;
  auto pre = s.pre_acts(x);
  const double scale = pre.abs().max().item<double>() + 1e-30;
  const int64_t n = pre.size(0), S = pre.size(1);
  if (s.architecture == "relu") return pre.abs().min().item<double>() / scale;
  if (s.architecture == "topk" && s.k < S) {
    auto v = std::get<0>(pre.sort(1, true));
    return (v.select(1, s.k - 1) - v.select(1, s.k)).min().item<double>() / scale;
  }
  if (s.architecture == "batchtopk" && s.k * n < n * S) {
    auto v = std::get<0>(at::relu(pre).reshape({-1}).sort(0, true));
    const double above = v[s.k * n - 1].item<double>(), below = v[s.k * n].item<double>();
    return below == 0 ? 1.0 : (above - below) / scale;
  }
  return 1.0;
}

// x drawn by `draw` again (up to 50 times) until no selection lies within 1e-5 of max |pre| of flipping.
template <class Draw>
at::Tensor with_margin(const Sae& s, Draw draw) {
  at::Tensor x = draw();
  for (int i = 0; i < 50 && selection_margin(s, x) < 1e-5; ++i) x = draw();
  REQUIRE(selection_margin(s, x) >= 1e-5);
  return x;
}

// Encoder operands on binary grids (x and b_dec: multiples of 1/4; W_enc: of 1/16, |w| <= 1/4; b_enc: of 1/64), for
// jumprelu: pre is then exact in fp32 whatever the summation order (d_in up to ~10^5), so that the fused path (mm,
// then the bias) and autograd (addmm) see the same pre, and no entry crosses a threshold or a window edge by
// rounding alone. Returns x [n, d_in].
at::Tensor grid_encoder(Sae& s, int64_t n, at::Generator& g) {
  s.W_enc = testing::grid_values({s.d_in, s.d_sae}, -4, 4, 1.0 / 16, g);
  s.b_enc = testing::grid_values({s.d_sae}, -8, 8, 1.0 / 64, g);
  s.b_dec = testing::grid_values({s.d_in}, -2, 2, 0.25, g);
  return testing::grid_values({n, s.d_in}, -3, 3, 0.25, g);
}

// jumprelu thresholds that put one entry of each latent's column (a random row) inside the straight-through
// window |pre - thr| < ε/2, on either side of the threshold (at most 0.4 ε away), so that every threshold has a
// pseudo-gradient; about half the latents fire. Thresholds come out of either sign.
void window_thresholds(Sae& s, const at::Tensor& x, at::Generator& g) {
  c10::NoGradGuard ng;
  auto pre = s.pre_acts(x);
  auto rows = at::randint(pre.size(0), {s.d_sae}, g, at::kLong);
  auto at_row = pre.gather(0, rows.unsqueeze(0)).squeeze(0);
  auto u = (at::rand({s.d_sae}, g) * 2 - 1) * float(0.4 * kJumpReluBandwidth);
  s.threshold = (at_row + u).contiguous();
}
}  // namespace

TEST_CASE("fused relu step equals autograd (plain and norm-weighted L1, b_dec subtraction, sparse and dense)") {
  auto seed = fresh_seed();
  INFO("seed " << seed);
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  struct Shape {
    int64_t n, d, s;
  };
  // d 75: every tile width of the AVX2 loops; n 150, d_sae 150: several chunks of rows and blocks of latents
  for (Shape sh : {Shape{33, 24, 40}, Shape{33, 75, 40}, Shape{150, 30, 150}})
    for (bool weighted : {false, true})
      for (bool apply : {false, true})
        for (double bias : {0.0, -1.0}) {  // -1: sparse activations (< 5%), 0: dense
          INFO("n " << sh.n << " d " << sh.d << " d_sae " << sh.s);
          auto s = random_sae("relu", sh.d, sh.s, 0, g);
          s.b_enc.add_(bias);
          s.apply_b_dec_to_input = apply;
          auto x = with_margin(s, [&] { return at::randn({sh.n, sh.d}, g); });
          LossOptions o;
          o.l1_coef = 0.01;
          o.l1_norm_weighted = weighted;
          compare(s, x, o, bias < 0 ? "relu sparse" : "relu dense");
          o.dense_threshold = 2.0;  // force the sparse path on dense activations
          compare(s, x, o, "relu forced sparse");
        }
}

TEST_CASE("fused topk and batchtopk steps equal autograd, with the aux-k loss") {
  auto seed = fresh_seed();
  INFO("seed " << seed);
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  struct Shape {
    int64_t n, d, s, k;
  };
  // d 75: full 64-column register tiles, an 8-column one and a scalar tail in the AVX2 loops
  // d 2048: several blocks of rows in the per-latent weight-gradient sums
  for (Shape sh : {Shape{29, 20, 64, 5}, Shape{40, 75, 96, 11}, Shape{100, 2048, 64, 9}})
    for (std::string arch : {"topk", "batchtopk"})
      for (bool aux : {false, true}) {
        INFO("n " << sh.n << " d " << sh.d << " d_sae " << sh.s << " k " << sh.k);
        auto s = random_sae(arch, sh.d, sh.s, sh.k, g);
        s.apply_b_dec_to_input = aux;
        auto x = with_margin(s, [&] { return at::randn({sh.n, sh.d}, g); });
        LossOptions o;
        if (aux) {
          o.aux_coef = 1.0 / 32;
          o.aux_k = 7;
          o.dead_mask = at::rand({sh.s}, g) < 0.4;
        }
        compare(s, x, o, arch + (aux ? " +aux" : ""));
        o.dense_wgrad_threshold = 0.0;  // dense weight gradients (unless aux-k is live)
        compare(s, x, o, arch + (aux ? " +aux" : "") + ", dense weight gradients");
      }
  // with an L1 term and norm weighting too, both ways of computing the weight gradients
  auto s = random_sae("topk", 20, 64, 5, g);
  LossOptions o;
  o.l1_coef = 0.01;
  o.l1_norm_weighted = true;
  auto x = with_margin(s, [&] { return at::randn({29, 20}, g); });
  compare(s, x, o, "topk, weighted L1");
  o.dense_wgrad_threshold = 0.0;
  compare(s, x, o, "topk dense weight gradients, weighted L1");
}

TEST_CASE("fused jumprelu step equals autograd (values and gradients incl. the threshold's; sparse and dense)") {
  auto seed = fresh_seed();
  INFO("seed " << seed);
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  struct Shape {
    int64_t n, d, s;
  };
  for (Shape sh : {Shape{33, 24, 40}, Shape{64, 16, 128}, Shape{7, 33, 9}, Shape{100, 1500, 40}})
    for (bool apply : {false, true})
      for (bool weighted : {false, true}) {  // jumprelu's L0 penalty is never norm-weighted: must not matter
        INFO("n " << sh.n << " d " << sh.d << " d_sae " << sh.s << " apply_b_dec " << apply << " weighted " << weighted);
        auto s = random_sae("jumprelu", sh.d, sh.s, 0, g);
        s.apply_b_dec_to_input = apply;
        auto x = grid_encoder(s, sh.n, g);
        window_thresholds(s, x, g);
        LossOptions o;
        o.l1_coef = 0.02;
        o.l1_norm_weighted = weighted;
        compare(s, x, o, "jumprelu (default path choice)");
        o.dense_threshold = 0.0;
        compare(s, x, o, "jumprelu dense");
        o.dense_threshold = 2.0;
        compare(s, x, o, "jumprelu sparse");
        // sparse activations (one row per latent fires, just above its threshold), the regime of a trained SAE,
        // with positive thresholds as training keeps them
        s.threshold = (std::get<0>(s.pre_acts(x).max(0)) - 1e-4).clamp_min(1e-3).contiguous();
        o.dense_threshold = 0.05;
        compare(s, x, o, "jumprelu sparse activations");
      }
}

TEST_CASE("fused steps reuse their memory only when the caller let go of the previous results, until released") {
  auto seed = fresh_seed();
  INFO("seed " << seed);
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (std::string arch : {"relu", "topk", "jumprelu"})
    for (double dense : {0.0, 2.0}) {  // relu / jumprelu: dense and sparse paths; topk: dense weight gradients or not
      INFO(arch << " dense_threshold " << dense);
      auto s = random_sae(arch, 40, 96, 6, g);
      auto x1 = at::randn({50, 40}, g), x2 = at::randn({50, 40}, g);
      if (arch == "jumprelu") {
        x1 = grid_encoder(s, 50, g);
        x2 = testing::grid_values({50, 40}, -3, 3, 0.25, g);
        window_thresholds(s, x1, g);
      }
      LossOptions o;
      o.l1_coef = arch == "topk" ? 0.0 : 0.01;
      o.dense_threshold = dense;
      o.dense_wgrad_threshold = dense;
      auto f1 = fused_forward_backward_cpu(s, x1, o);
      std::vector<at::Tensor> kept = {f1.gW_enc.clone(), f1.gW_dec.clone(), f1.gb_enc.clone(), f1.gb_dec.clone()};
      auto f2 = fused_forward_backward_cpu(s, x2, o);  // f1 still held: must get its own memory
      CHECK(at::equal(f1.gW_enc, kept[0]));
      CHECK(at::equal(f1.gW_dec, kept[1]));
      CHECK(at::equal(f1.gb_enc, kept[2]));
      CHECK(at::equal(f1.gb_dec, kept[3]));
      CHECK(!at::equal(f2.gW_enc, f1.gW_enc));
      CHECK(f2.gW_dec.data_ptr() != f1.gW_dec.data_ptr());
      // dropped results are reused, and the step is deterministic
      f1 = StepResult{};
      f2 = StepResult{};
      auto f3 = fused_forward_backward_cpu(s, x1, o);
      CHECK(at::equal(f3.gW_enc, kept[0]));
      CHECK(at::equal(f3.gW_dec, kept[1]));
      compare_step(s, f3, autograd_forward_backward(s, x1, o));
      // releasing the thread's workspace leaves held results intact, and the next step starts afresh
      release_fused_cpu_workspace();
      CHECK(at::equal(f3.gW_enc, kept[0]));
      CHECK(at::equal(f3.gW_dec, kept[1]));
      auto f4 = fused_forward_backward_cpu(s, x1, o);
      CHECK(at::equal(f4.gW_enc, kept[0]));
      CHECK(at::equal(f4.gW_dec, kept[1]));
      CHECK(at::equal(f4.gb_enc, kept[2]));
      CHECK(at::equal(f4.gb_dec, kept[3]));
      CHECK(f4.gW_dec.data_ptr() != f3.gW_dec.data_ptr());
    }
}

TEST_CASE("a fused jumprelu training run follows the autograd one") {
  auto dir = testing::temp_dir("sae-fused", "jumprelu");
  // 3 of 48 unit-norm features active per row, magnitudes in [1, 2)
  auto g = at::make_generator<at::CPUGeneratorImpl>(21);
  auto F = at::randn({48, 16}, g);
  F = F / F.norm(2, {1}, true);
  auto idx = std::get<1>(at::rand({3000, 48}, g).topk(3, 1));
  auto X = at::zeros({3000, 48}).scatter_(1, idx, at::rand({3000, 3}, g) + 1.0).mm(F).contiguous();
  auto acts = join_path(dir, "acts.safetensors");
  save_safetensors(acts, {{"acts", X}});
  for (bool apply : {false, true}) {
    INFO("apply_b_dec_to_input " << apply);
    TrainConfig c;
    c.acts = acts;
    c.architecture = "jumprelu";
    c.expansions = {2};
    c.l1s = {3e-3};
    c.batch_size = 256;
    c.tokens = 256 * 30;
    c.lr = 2e-3;
    c.seed = 3;
    c.apply_b_dec_to_input = apply;
    c.out = join_path(dir, std::string("fused-") + (apply ? "1" : "0"));
    auto rf = train_saes(c);
    c.fused = false;
    c.out = join_path(dir, std::string("autograd-") + (apply ? "1" : "0"));
    auto ra = train_saes(c);
    MESSAGE("jumprelu fused vs autograd (apply_b_dec " << apply << "): loss " << rf.saes[0].loss << " / "
            << ra.saes[0].loss << ", l0 " << rf.saes[0].l0 << " / " << ra.saes[0].l0);
    CHECK(rf.saes[0].loss == doctest::Approx(ra.saes[0].loss).epsilon(1e-3));
    CHECK(rf.saes[0].mse == doctest::Approx(ra.saes[0].mse).epsilon(1e-3));
    CHECK(rf.saes[0].l0 == doctest::Approx(ra.saes[0].l0).epsilon(1e-3));
    auto a = load_sae(join_path(dir, std::string("fused-") + (apply ? "1" : "0")));
    auto b = load_sae(join_path(dir, std::string("autograd-") + (apply ? "1" : "0")));
    auto ta = a.named_tensors(), tb = b.named_tensors();
    REQUIRE(ta.size() == 5);
    REQUIRE(tb.size() == 5);
    for (size_t i = 0; i < ta.size(); ++i) check_close(ta[i].second, tb[i].second, ta[i].first, 1e-3, 1e-5);
  }
  remove_tree(dir);
}

TEST_CASE("fused Adam equals the reference Adam over several steps (AVX2 and portable loops)") {
  auto g = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  for (std::string kernel : {"auto", "generic"}) {
    INFO("cpu kernel " << kernel);
    set_cpu_kernel(kernel);
    auto p1 = at::randn({999, 37}, g), p2 = p1.clone(), p0 = p1.clone();  // 36,963: a tail after the 8-wide loop
    auto m1 = at::zeros_like(p1), v1 = at::zeros_like(p1), m2 = m1.clone(), v2 = v1.clone();
    for (int t = 1; t <= 5; ++t) {
      auto gr = at::randn({999, 37}, g);
      adam_step_fused_cpu(p1, gr, m1, v1, t, 1e-3, 0.9, 0.999, 1e-8);
      adam_step_reference(p2, gr, m2, v2, t, 1e-3, 0.9, 0.999, 1e-8);
    }
    set_cpu_kernel("auto");
    check_close(p1, p2, "params", 1e-5, 1e-6);
    check_close(m1, m2, "m", 1e-5, 1e-6);
    check_close(v1, v2, "v", 1e-5, 1e-6);
    CHECK((p1 != p0).to(at::kFloat).mean().item<double>() > 0.99);  // the update reached (almost) every element
  }
}

TEST_CASE("decoder rows normalized in one pass equal the ATen normalization") {
  auto g = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  for (int64_t S : {1, 37, 3000}) {
    INFO("d_sae " << S);
    auto w = at::randn({S, 45}, g) * 3;
    w[0].zero_();  // a dead row stays zero (norm clamped to 1e-12)
    auto want = w / w.norm(2, {1}, true).clamp_min(1e-12);
    normalize_decoder_rows_cpu(w);
    check_close(w, want, "W_dec", 1e-6, 1e-7);
    CHECK(w[0].abs().max().item<double>() == 0);
  }
}

TEST_CASE("AVX2 gather loops equal the portable ones (every tile and tail width)") {
  if (!qsae::cpu_has_avx2_fma()) {
    MESSAGE("skipped: the processor has no AVX2/FMA");
    return;
  }
  auto seed = fresh_seed();
  INFO("seed " << seed);
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  const int64_t R = 50;
  for (int64_t n : {1, 7, 8, 9, 63, 64, 65, 75, 136, 512})
    for (int64_t cnt : {0, 1, 3, 4, 5, 9, 33}) {
      INFO("n " << n << " cnt " << cnt);
      const int64_t ld = n + 3;  // rows not packed: the loops must use ld, not n
      auto rows = at::randn({R, ld}, g), base = at::randn({n}, g), a = at::randn({cnt}, g), x = at::randn({n}, g);
      auto idx = at::randint(R, {cnt}, g, at::kInt);
      const float* rp = rows.data_ptr<float>();
      const int32_t* ip = idx.data_ptr<int32_t>();
      auto o1 = at::randn({n}, g), o2 = o1.clone(), o3 = o1.clone(), o4 = o1.clone();
      kern::gather_axpy_avx2(rp, ld, ip, a.data_ptr<float>(), cnt, base.data_ptr<float>(), o1.data_ptr<float>(), n);
      kern::gather_axpy_generic(rp, ld, ip, a.data_ptr<float>(), cnt, base.data_ptr<float>(), o2.data_ptr<float>(), n);
      kern::gather_axpy_avx2(rp, ld, ip, a.data_ptr<float>(), cnt, nullptr, o3.data_ptr<float>(), n);
      kern::gather_axpy_generic(rp, ld, ip, a.data_ptr<float>(), cnt, nullptr, o4.data_ptr<float>(), n);
      // and the definition, in double
      auto sel = rows.index_select(0, idx.to(at::kLong)).narrow(1, 0, n).to(at::kDouble);
      auto want = base.to(at::kDouble) + (a.to(at::kDouble).unsqueeze(1) * sel).sum(0);
      check_close(o1, want, "gather_axpy avx2 (base)", 1e-5, 1e-5);
      check_close(o2, want, "gather_axpy generic (base)", 1e-5, 1e-5);
      check_close(o3, o4, "gather_axpy accumulate", 1e-5, 1e-5);
      if (cnt == 0) continue;
      auto d1 = at::zeros({cnt}), d2 = at::zeros({cnt});
      kern::gather_dot_avx2(x.data_ptr<float>(), rp, ld, ip, cnt, d1.data_ptr<float>(), n);
      kern::gather_dot_generic(x.data_ptr<float>(), rp, ld, ip, cnt, d2.data_ptr<float>(), n);
      auto dwant = sel.mv(x.to(at::kDouble));
      check_close(d1, dwant, "gather_dot avx2", 1e-5, 1e-5);
      check_close(d2, dwant, "gather_dot generic", 1e-5, 1e-5);
    }
  for (int64_t n : {1, 8, 13, 64, 256, 1000}) {
    auto x = at::randn({n}, g), bias = at::randn({n}, g);
    auto r1 = at::randn({n}, g), r2 = r1.clone();
    const double q1 = kern::residual_avx2(r1.data_ptr<float>(), bias.data_ptr<float>(), x.data_ptr<float>(), 0.5f, n);
    const double q2 = kern::residual_generic(r2.data_ptr<float>(), bias.data_ptr<float>(), x.data_ptr<float>(), 0.5f, n);
    INFO("residual n " << n);
    CHECK(q1 == doctest::Approx(q2).epsilon(1e-12));
    CHECK(q1 == doctest::Approx((r2 * 2).to(at::kDouble).pow(2).sum().item<double>()).epsilon(1e-6));
    CHECK(at::equal(r1, r2));
  }
}

TEST_CASE("top-k selection loops select the k largest (ties: lower index first), AVX2 and portable alike") {
  auto seed = fresh_seed();
  INFO("seed " << seed);
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (int64_t n : {1, 7, 8, 9, 40, 256, 1000})
    for (int64_t k : {int64_t(1), int64_t(3), n / 2, n})
      for (bool ties : {false, true}) {
        if (k < 1 || k > n) continue;
        INFO("n " << n << " k " << k << " ties " << ties);
        // ties: values from a few levels (of both signs, zeros of both signs too), so the k-th value repeats
        auto row = ties ? (at::randint(-3, 4, {n}, g, at::kLong).to(at::kFloat) * 0.5f) : at::randn({n}, g);
        if (ties && n > 2) row[1] = -0.0f;
        const float* rp = row.data_ptr<float>();
        std::vector<int32_t> ord(n);
        std::iota(ord.begin(), ord.end(), 0);
        std::stable_sort(ord.begin(), ord.end(), [&](int32_t a, int32_t b) {
          return rp[a] > rp[b] || (rp[a] == rp[b] && !std::signbit(rp[a]) && std::signbit(rp[b]));
        });
        std::vector<int32_t> want(ord.begin(), ord.begin() + k);
        std::sort(want.begin(), want.end());
        std::vector<int32_t> scratch(n), o1(k), o2(k);
        kern::top_k_generic(rp, n, k, scratch.data(), o1.data());
        CHECK(o1 == want);
        if (qsae::cpu_has_avx2_fma()) {
          kern::top_k_avx2(rp, n, k, scratch.data(), o2.data());
          CHECK(o2 == want);
        }
      }
}

TEST_CASE("CUDA kernels equal the CPU reference" * doctest::skip(!at::hasCUDA())) {
  if (!at::hasCUDA() || !sae_cuda_kernels_built()) {
    MESSAGE("skipped: no CUDA device or qsae built without CUDA kernels");
    return;
  }
  auto g = at::make_generator<at::CPUGeneratorImpl>(fresh_seed());
  for (std::string arch : {"relu", "topk", "batchtopk"})
    for (bool weighted : {false, true}) {
      INFO(arch << " weighted " << weighted);
      auto s = random_sae(arch, 64, 256, 8, g);
      auto x = with_margin(s, [&] { return at::randn({100, 64}, g); });
      LossOptions o;
      o.l1_coef = arch == "relu" ? 0.01 : 0.0;
      o.l1_norm_weighted = weighted;
      if (arch != "relu") {
        o.aux_coef = 1.0 / 32;
        o.aux_k = 16;
        o.dead_mask = at::rand({256}, g) < 0.3;
      }
      auto r = autograd_forward_backward(s, x, o);
      auto sc = s.to(at::Device("cuda"), at::kFloat);
      LossOptions oc = o;
      if (o.dead_mask.defined()) oc.dead_mask = o.dead_mask.cuda();
      auto c = cuda_forward_backward(sc, x.cuda(), oc);
      CHECK(c.mse == doctest::Approx(r.mse).epsilon(1e-3));
      CHECK(c.l0 == doctest::Approx(r.l0).epsilon(1e-6));
      CHECK(c.aux == doctest::Approx(r.aux).epsilon(1e-3));
      check_close(c.gW_enc, r.gW_enc, "gW_enc", 1e-3, 1e-5);
      check_close(c.gb_enc, r.gb_enc, "gb_enc", 1e-3, 1e-5);
      check_close(c.gW_dec, r.gW_dec, "gW_dec", 1e-3, 1e-5);
      check_close(c.gb_dec, r.gb_dec, "gb_dec", 1e-3, 1e-5);
    }
  auto p1 = at::randn({4096, 33}, g), gr = at::randn({4096, 33}, g);
  auto m1 = at::zeros_like(p1), v1 = at::zeros_like(p1);
  auto p2 = p1.cuda(), m2 = m1.cuda(), v2 = v1.cuda(), g2 = gr.cuda();
  for (int t = 1; t <= 3; ++t) {
    adam_step_fused_cpu(p1, gr, m1, v1, t, 1e-3, 0.9, 0.999, 1e-8);
    adam_step_cuda(p2, g2, m2, v2, t, 1e-3, 0.9, 0.999, 1e-8);
  }
  check_close(p2, p1, "adam cuda params", 1e-5, 1e-6);
}

TEST_CASE("CUDA jumprelu epilogues equal their CPU reference" * doctest::skip(!at::hasCUDA())) {
#ifdef QSAE_HAVE_CUDA
  if (!at::hasCUDA()) return;
  auto seed = fresh_seed();
  INFO("seed " << seed);
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  // S not a multiple of 32, and enough rows for several row chunks in the backward
  for (auto bs : {std::pair<int64_t, int64_t>{300, 203}, {1000, 64}, {5, 1000}}) {
    const int64_t B = bs.first, S = bs.second;
    INFO("B " << B << " S " << S);
    auto pre = at::randn({B, S}, g), b_enc = at::randn({S}, g) * 0.3f;
    // every threshold has one row inside its window (as window_thresholds)
    auto rows = at::randint(B, {S}, g, at::kLong);
    auto thr = ((pre + b_enc).gather(0, rows.unsqueeze(0)).squeeze(0) +
                (at::rand({S}, g) * 2 - 1) * float(0.4 * kJumpReluBandwidth)).contiguous();
    auto gf = at::randn({B, S}, g);
    const float l1_over_n = 0.02f / float(B), bw = float(kJumpReluBandwidth);
    // CPU reference
    auto pre_c = pre.clone(), f_c = at::empty_like(pre), gf_c = gf.clone(), gt_c = at::empty({S});
    jumprelu_epilogue_cpu(pre_c.data_ptr<float>(), b_enc.data_ptr<float>(), thr.data_ptr<float>(), f_c.data_ptr<float>(),
                          B, S);
    jumprelu_backward_epilogue_cpu(gf_c.data_ptr<float>(), pre_c.data_ptr<float>(), thr.data_ptr<float>(),
                                   gt_c.data_ptr<float>(), B, S, l1_over_n, bw);
    // CUDA
    auto dev = at::Device("cuda");
    auto pre_d = pre.to(dev), f_d = at::empty_like(pre_d), gf_d = gf.to(dev), gt_d = at::empty({S}, pre_d.options());
    auto b_d = b_enc.to(dev), thr_d = thr.to(dev);
    auto scratch = at::empty({qsae::sae::cuda::jumprelu_backward_scratch(B, S)}, pre_d.options());
    auto st = c10::cuda::getCurrentCUDAStream().stream();
    qsae::sae::cuda::launch_jumprelu_epilogue(pre_d.data_ptr<float>(), b_d.data_ptr<float>(), thr_d.data_ptr<float>(),
                                   f_d.data_ptr<float>(), B, S, st);
    qsae::sae::cuda::launch_jumprelu_backward_epilogue(gf_d.data_ptr<float>(), pre_d.data_ptr<float>(), thr_d.data_ptr<float>(),
                                            gt_d.data_ptr<float>(), scratch.data_ptr<float>(), B, S, l1_over_n, bw, st);
    CHECK(at::equal(pre_d.cpu(), pre_c));
    CHECK(at::equal(f_d.cpu(), f_c));
    CHECK(at::equal(gf_d.cpu(), gf_c));
    CHECK(gt_c.abs().max().item<double>() > 0);
    check_close(gt_d, gt_c, "gthreshold", 1e-5, 1e-4);
  }
#else
  MESSAGE("skipped: qsae built without CUDA kernels");
#endif
}

TEST_CASE("CUDA jumprelu step equals autograd, the threshold gradient included" * doctest::skip(!at::hasCUDA())) {
  if (!at::hasCUDA() || !sae_cuda_kernels_built()) {
    MESSAGE("skipped: no CUDA device or qsae built without CUDA kernels");
    return;
  }
  auto seed = fresh_seed();
  INFO("seed " << seed);
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  // Encoder inputs on coarse binary grids (x, b_dec: multiples of 1/4; W_enc: of 1/16, |w| <= 1/4; b_enc: of
  // 1/64), so that pre is exact in fp32 (and bf16) on both devices whatever the summation order: the threshold
  // windows then hold the same entries on both, and a rounding difference cannot move an entry across an edge.
  auto grid = [&](at::IntArrayRef shape, int64_t lo, int64_t hi, double step) {
    return testing::grid_values(shape, lo, hi, step, g);
  };
  for (bool apply : {false, true}) {
    INFO("apply_b_dec_to_input " << apply);
    const int64_t B = 100, d = 64, S = 256;
    auto s = init_sae("jumprelu", d, S, 0, g);
    s.W_enc = grid({d, S}, -4, 4, 1.0 / 16);
    s.b_enc = grid({S}, -8, 8, 1.0 / 64);
    s.b_dec = grid({d}, -2, 2, 0.25);
    s.W_dec.normal_(0, 0.3, g);
    s.apply_b_dec_to_input = apply;
    auto x = grid({B, d}, -3, 3, 0.25);
    // thresholds 1e-4..4e-4 from a grid value of pre: the window holds the entries at that value, edges stay
    // >= 1e-4 from every pre
    auto pre = s.pre_acts(x);
    auto rows = at::randint(B, {S}, g, at::kLong);
    auto sign = (at::rand({S}, g) < 0.5).to(at::kFloat) * 2 - 1;
    auto u = sign * (at::rand({S}, g) * 3e-4f + 1e-4f);
    s.threshold = (pre.gather(0, rows.unsqueeze(0)).squeeze(0) + u).contiguous();
    LossOptions o;
    o.l1_coef = 0.02;
    auto r = autograd_forward_backward(s, x, o);
    auto sc = s.to(at::Device("cuda"), at::kFloat);
    auto c = cuda_forward_backward(sc, x.cuda(), o);
    CHECK(c.mse == doctest::Approx(r.mse).epsilon(1e-4));
    // the same entries fire on both devices (fired is compared exactly below); the means of those counts differ
    // only by the order of the fp32 sums (seen on an H200: equal to 5 digits, not to 1e-9)
    CHECK(c.l1 == doctest::Approx(r.l1).epsilon(1e-6));
    CHECK(c.l0 == doctest::Approx(r.l0).epsilon(1e-6));
    CHECK(c.loss == doctest::Approx(r.loss).epsilon(1e-4));
    CHECK(at::equal(c.fired.cpu(), r.fired));
    check_close(c.gW_enc, r.gW_enc, "gW_enc", 1e-3, 1e-5);
    check_close(c.gb_enc, r.gb_enc, "gb_enc", 1e-3, 1e-5);
    check_close(c.gW_dec, r.gW_dec, "gW_dec", 1e-3, 1e-5);
    check_close(c.gb_dec, r.gb_dec, "gb_dec", 1e-3, 1e-5);
    CHECK(r.gthreshold.abs().max().item<double>() > 0);
    check_close(c.gthreshold, r.gthreshold, "gthreshold", 1e-3, 1e-5);
    // bf16 GEMMs (the trainer's default on CUDA): pre is still exact, so the selection and the L0 penalty are
    // the same; the reconstruction carries bf16 rounding
    auto cb = cuda_forward_backward(sc, x.cuda(), o, true);
    CHECK(cb.l1 == doctest::Approx(r.l1).epsilon(1e-6));
    CHECK(cb.l0 == doctest::Approx(r.l0).epsilon(1e-6));
    CHECK(at::equal(cb.fired.cpu(), r.fired));
    CHECK(cb.mse == doctest::Approx(r.mse).epsilon(3e-2));
  }
}
