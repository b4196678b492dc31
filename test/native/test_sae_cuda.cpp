// The relu / batchtopk epilogues with fused column statistics: their CPU references against plain ATen (always),
// the CUDA kernels against those references in fp32 and bf16, and the CUDA relu step on the bf16 tensor-core path
// against autograd, the topk / batchtopk steps (aux-k included) against the fused CPU step (where a GPU exists).
#include "testing.h"

#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "sae/epilogue_cpu.h"
#include "sae/fused_cpu.h"
#include "sae/sae.h"
#include "sae/sae_cuda.h"
#ifdef QSAE_HAVE_CUDA
#include <c10/cuda/CUDAStream.h>

#include "sae/sae_kernels.h"
#endif

using namespace qsae;
using namespace qsae::sae;

namespace {
at::Generator seeded() {
  const uint64_t seed = std::random_device{}();
  MESSAGE("seed " << seed);
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}
// max |a - b| / max |b|
double rel_max(const at::Tensor& a, const at::Tensor& b) {
  auto ad = a.cpu().to(at::kDouble), bd = b.cpu().to(at::kDouble);
  return (ad - bd).abs().max().item<double>() / std::max(bd.abs().max().item<double>(), 1e-30);
}
// ||a - b|| / ||b||
double rel_l2(const at::Tensor& a, const at::Tensor& b) {
  auto ad = a.cpu().to(at::kDouble), bd = b.cpu().to(at::kDouble);
  return (ad - bd).norm().item<double>() / std::max(bd.norm().item<double>(), 1e-30);
}
// An SAE whose encoder operands lie on binary grids small enough that pre, pre + b_enc and f are exact in bf16
// (|pre| <= 4 in steps of 1/64), so the GEMM dtype cannot change which latents fire; W_dec is continuous (the
// decoder side carries bf16 rounding). Returns x [B, d] on the grid too.
at::Tensor grid_sae(Sae& s, int64_t B, at::Generator& g) {
  s.W_enc = testing::grid_values({s.d_in, s.d_sae}, -4, 4, 1.0 / 16, g);
  s.b_enc = testing::grid_values({s.d_sae}, -8, 8, 1.0 / 64, g);
  s.b_dec = testing::grid_values({s.d_in}, -1, 1, 0.25, g);
  s.W_dec.normal_(0, 0.3, g);
  return testing::grid_values({B, s.d_in}, -2, 2, 0.25, g);
}
// S not a multiple of 32 (and below 32), fewer rows than a block's row lanes, and enough rows for several row
// chunks in the CUDA kernels
const std::pair<int64_t, int64_t> kShapes[] = {{300, 203}, {1000, 64}, {5, 1000}, {2, 33}, {9, 31}};
}  // namespace

TEST_CASE("relu epilogue references equal plain ATen") {
  auto g = seeded();
  for (const auto& bs : kShapes) {
    const int64_t B = bs.first, S = bs.second;
    for (int act : {1, 2}) {
      INFO("B " << B << " S " << S << " act " << act);
      auto pre = at::randn({B, S}, g), b_enc = at::randn({S}, g) * 0.3f;
      const float thr = act == 2 ? 0.7f : 0.f;
      auto v = pre + b_enc;
      auto f_ref = act == 1 ? v.relu() : at::where((v > 0) & (v >= thr), v, at::zeros_like(v));
      auto f = pre.clone();
      auto fired = at::empty({S}, at::kLong), fsum = at::empty({S});
      relu_epilogue_stats_cpu(f.data_ptr<float>(), b_enc.data_ptr<float>(), B, S, act, thr, fired.data_ptr<int64_t>(),
                              fsum.data_ptr<float>());
      CHECK(at::equal(f, f_ref));
      CHECK(at::equal(fired, (f_ref > 0).sum(0)));
      CHECK(fired.sum().item<int64_t>() > 0);
      CHECK(rel_max(fsum, f_ref.to(at::kDouble).sum(0)) < 1e-6);

      auto gf = at::randn({B, S}, g), w = at::rand({S}, g) + 0.5f;
      const float l1_over_n = 0.02f / float(B);
      for (bool weighted : {false, true}) {
        INFO("weighted " << weighted);
        auto add = weighted ? w * l1_over_n : at::full({S}, l1_over_n);
        auto gpre_ref = at::where(f_ref > 0, gf + add, at::zeros_like(gf));
        auto gpre = gf.clone();
        auto gsum = at::empty({S});
        relu_backward_stats_cpu(gpre.data_ptr<float>(), f.data_ptr<float>(), weighted ? w.data_ptr<float>() : nullptr,
                                l1_over_n, gsum.data_ptr<float>(), B, S);
        CHECK(at::equal(gpre, gpre_ref));
        CHECK(rel_max(gsum, gpre_ref.to(at::kDouble).sum(0)) < 1e-6);
      }
    }
  }
}

TEST_CASE("CUDA relu epilogues equal their CPU reference, fp32 and bf16" * doctest::skip(!at::hasCUDA())) {
#ifdef QSAE_HAVE_CUDA
  if (!at::hasCUDA()) return;
  auto g = seeded();
  auto dev = at::Device("cuda");
  auto st = c10::cuda::getCurrentCUDAStream().stream();
  auto bits = [](const at::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); };
  for (auto dt : {at::kFloat, at::kBFloat16})
    for (const auto& bs : kShapes)
      for (int act : {1, 2}) {
        const int64_t B = bs.first, S = bs.second;
        INFO("dtype " << (dt == at::kFloat ? "fp32" : "bf16") << " B " << B << " S " << S << " act " << act);
        // inputs representable in dt, so both sides start from the same values
        auto pre = at::randn({B, S}, g).to(dt).to(at::kFloat), b_enc = at::randn({S}, g) * 0.3f;
        auto gf = at::randn({B, S}, g).to(dt).to(at::kFloat), w = at::rand({S}, g) + 0.5f;
        const float thr = act == 2 ? 0.7f : 0.f, l1_over_n = 0.02f / float(B);
        // CPU reference, its outputs rounded to dt as the kernels store them
        auto f_c = pre.clone(), fsum_c = at::empty({S}), gsum_c = at::empty({S});
        auto fired_c = at::empty({S}, at::kLong);
        relu_epilogue_stats_cpu(f_c.data_ptr<float>(), b_enc.data_ptr<float>(), B, S, act, thr,
                                fired_c.data_ptr<int64_t>(), fsum_c.data_ptr<float>());
        auto gpre_c = gf.clone();
        // act 1 with the norm weights, act 2 without (w == nullptr)
        relu_backward_stats_cpu(gpre_c.data_ptr<float>(), f_c.data_ptr<float>(), act == 1 ? w.data_ptr<float>() : nullptr,
                                l1_over_n, gsum_c.data_ptr<float>(), B, S);
        // CUDA
        auto f_d = pre.to(dev, dt).contiguous(), gpre_d = gf.to(dev, dt).contiguous();
        auto b_d = b_enc.to(dev), w_d = w.to(dev);
        const float* wp = act == 1 ? w_d.data_ptr<float>() : nullptr;
        auto fired_d = at::empty({S}, b_d.options().dtype(at::kLong)), fsum_d = at::empty({S}, b_d.options());
        auto gsum_d = at::empty({S}, b_d.options());
        auto scratch = at::empty({qsae::sae::cuda::relu_stats_scratch(B, S)}, b_d.options());
        if (dt == at::kFloat) {
          qsae::sae::cuda::launch_relu_epilogue_stats(f_d.data_ptr<float>(), b_d.data_ptr<float>(), B, S, act, thr,
                                                      fired_d.data_ptr<int64_t>(), fsum_d.data_ptr<float>(),
                                                      scratch.data_ptr<float>(), st);
          qsae::sae::cuda::launch_relu_backward_stats(gpre_d.data_ptr<float>(), f_d.data_ptr<float>(), wp, l1_over_n,
                                                      gsum_d.data_ptr<float>(), scratch.data_ptr<float>(), B, S, st);
        } else {
          qsae::sae::cuda::launch_relu_epilogue_stats(bits(f_d), b_d.data_ptr<float>(), B, S, act, thr,
                                                      fired_d.data_ptr<int64_t>(), fsum_d.data_ptr<float>(),
                                                      scratch.data_ptr<float>(), st);
          qsae::sae::cuda::launch_relu_backward_stats(bits(gpre_d), bits(f_d), wp, l1_over_n, gsum_d.data_ptr<float>(),
                                                      scratch.data_ptr<float>(), B, S, st);
        }
        CHECK(at::equal(f_d.cpu(), f_c.to(dt)));
        CHECK(at::equal(fired_d.cpu(), fired_c));
        CHECK(rel_max(fsum_d, fsum_c) < 1e-5);
        CHECK(at::equal(gpre_d.cpu(), gpre_c.to(dt)));
        CHECK(rel_max(gsum_d, gsum_c) < 1e-5);
      }
#else
  MESSAGE("skipped: qsae built without CUDA kernels");
#endif
}

TEST_CASE("CUDA relu step on bf16 GEMMs agrees with autograd" * doctest::skip(!at::hasCUDA())) {
  if (!at::hasCUDA() || !sae_cuda_kernels_built()) {
    MESSAGE("skipped: no CUDA device or qsae built without CUDA kernels");
    return;
  }
  auto g = seeded();
  const int64_t B = 200, d = 16, S = 96;
  for (bool apply : {false, true})
    for (bool weighted : {false, true}) {
      INFO("apply_b_dec_to_input " << apply << " weighted " << weighted);
      auto s = init_sae("relu", d, S, 0, g);
      auto x = grid_sae(s, B, g);  // the same latents fire on both paths
      s.apply_b_dec_to_input = apply;
      LossOptions o;
      o.l1_coef = 0.01;
      o.l1_norm_weighted = weighted;
      auto r = autograd_forward_backward(s, x, o);
      auto sc = s.to(at::Device("cuda"), at::kFloat);
      auto c = cuda_forward_backward(sc, x.cuda(), o, true);
      CHECK(at::equal(c.fired.cpu(), r.fired));
      CHECK(r.fired.sum().item<int64_t>() > 0);
      CHECK(c.l0 == doctest::Approx(r.l0).epsilon(1e-6));
      CHECK(c.l1 == doctest::Approx(r.l1).epsilon(1e-5));
      CHECK(c.mse == doctest::Approx(r.mse).epsilon(3e-2));
      // bf16 rounding of the decoder side gives up to ~4e-3 (simulated); dropping the L1 norm weighting ~2%
      CHECK(rel_l2(c.gW_enc, r.gW_enc) < 1e-2);
      CHECK(rel_l2(c.gb_enc, r.gb_enc) < 1e-2);
      CHECK(rel_l2(c.gW_dec, r.gW_dec) < 1e-2);
      CHECK(rel_l2(c.gb_dec, r.gb_dec) < 1e-2);
      // and the fp32 path of the same step to fp32 rounding
      auto c32 = cuda_forward_backward(sc, x.cuda(), o, false);
      CHECK(at::equal(c32.fired.cpu(), r.fired));
      CHECK(c32.mse == doctest::Approx(r.mse).epsilon(1e-4));
      CHECK(rel_max(c32.gW_enc, r.gW_enc) < 1e-3);
      CHECK(rel_max(c32.gb_enc, r.gb_enc) < 1e-3);
      CHECK(rel_max(c32.gW_dec, r.gW_dec) < 1e-3);
      CHECK(rel_max(c32.gb_dec, r.gb_dec) < 1e-3);
    }
}

TEST_CASE("CUDA topk and batchtopk steps on bf16 GEMMs agree with the fused CPU step, aux-k included" *
          doctest::skip(!at::hasCUDA())) {
  if (!at::hasCUDA() || !sae_cuda_kernels_built()) {
    MESSAGE("skipped: no CUDA device or qsae built without CUDA kernels");
    return;
  }
  auto g = seeded();
  // Grid operands (grid_sae) make the encoder GEMM exact in bf16 and fp32 alike; b_enc gets a distinct multiple of 2^-16 per
  // latent, so no two latents of a row tie (pre + b_enc stays exact in fp32). Both paths then select the same
  // entries: per row (topk, aux-k) and at the batch threshold, where both keep every entry >= the threshold.
  // The reference is the fused CPU step, which follows those same selection rules.
  const int64_t B = 160, d = 16, S = 96;
  for (std::string arch : {"topk", "batchtopk"})
    for (bool apply : {false, true}) {
      INFO(arch << " apply_b_dec_to_input " << apply);
      auto s = init_sae(arch, d, S, 6, g);
      auto x = grid_sae(s, B, g);
      s.b_enc += at::arange(S, at::kFloat) * float(std::ldexp(1.0, -16));
      s.apply_b_dec_to_input = apply;
      LossOptions o;
      o.l1_coef = 0.01;
      o.l1_norm_weighted = true;
      o.aux_coef = 1.0 / 32;
      o.aux_k = 8;
      o.dead_mask = at::rand({S}, g) < 0.4;
      auto r = fused_forward_backward_cpu(s, x, o);
      auto sc = s.to(at::Device("cuda"), at::kFloat);
      LossOptions oc = o;
      oc.dead_mask = o.dead_mask.cuda();
      for (bool bf16 : {true, false}) {
        INFO("bf16 GEMMs " << bf16);
        auto c = cuda_forward_backward(sc, x.cuda(), oc, bf16);
        const double tol = bf16 ? 2e-2 : 1e-3;  // batchtopk's f is cast to bf16 for the decoder GEMMs
        CHECK(at::equal(c.fired.cpu(), r.fired));
        CHECK(r.fired.sum().item<int64_t>() > 0);
        CHECK(c.l0 == doctest::Approx(r.l0).epsilon(1e-6));
        CHECK(c.l1 == doctest::Approx(r.l1).epsilon(1e-4));
        CHECK(r.aux > 0);
        CHECK(c.aux == doctest::Approx(r.aux).epsilon(bf16 ? 3e-2 : tol));
        CHECK(c.mse == doctest::Approx(r.mse).epsilon(bf16 ? 3e-2 : tol));
        CHECK(rel_l2(c.gW_enc, r.gW_enc) < tol);
        CHECK(rel_l2(c.gb_enc, r.gb_enc) < tol);
        CHECK(rel_l2(c.gW_dec, r.gW_dec) < tol);
        CHECK(rel_l2(c.gb_dec, r.gb_dec) < tol);
      }
    }
}
