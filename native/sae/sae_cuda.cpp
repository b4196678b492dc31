// at::Tensor glue of the SAE CUDA kernels (QSAE_SAE_CUDA_GLUE: compiled only with a CUDA torch). Launches on
// torch's current stream; matmuls through cuBLAS (at::mm), in bf16 with fp32 master weights when asked.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <torch/version.h>

#include <cmath>

#include "common/error.h"
#include "sae/sae_cuda.h"
#include "sae/sae_kernels.h"

namespace qsae::sae {

bool sae_cuda_kernels_built() { return true; }

namespace {
cudaStream_t stream_of(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }
// a @ b in the GEMM dtype `cdt` (bf16: tensor cores, fp32 accumulation), result in fp32. Operands already in cdt
// are used as they are (no copy); transposed views go to cuBLAS as transposes. torch >= 2.8 lets cuBLAS write the
// fp32 result directly (no bf16 rounding of the output, no conversion pass: weight gradients and jumprelu's dL/dpre
// are fp32 consumers); older torch rounds the product to bf16 and widens it.
at::Tensor gemm(const at::Tensor& a, const at::Tensor& b, at::ScalarType cdt) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8)
  if (cdt == at::kBFloat16) return at::mm(a.to(cdt), b.to(cdt), at::kFloat);
#endif
  return a.to(cdt).mm(b.to(cdt)).to(at::kFloat);
}
uint16_t* bf16_bits(const at::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); }
}  // namespace

StepResult cuda_forward_backward(const Sae& s, const at::Tensor& x_in, const LossOptions& o, bool bf16) {
  const std::string& A = s.architecture;
  QSAE_CHECK(A == "relu" || A == "topk" || A == "batchtopk" || A == "jumprelu",
             "CUDA SAE step supports relu, topk, batchtopk and jumprelu, not ", A);
  QSAE_CHECK(s.W_enc.is_cuda() && s.W_enc.scalar_type() == at::kFloat, "CUDA SAE step needs fp32 CUDA parameters");
  QSAE_CHECK(A != "jumprelu" || s.threshold.defined(), "CUDA SAE step: jumprelu needs a threshold");
  c10::NoGradGuard ng;
  c10::cuda::CUDAGuard guard(s.W_enc.device());
  const int64_t B = x_in.size(0), D = s.d_in, S = s.d_sae;
  const at::Tensor x = x_in.to(s.W_enc.device(), at::kFloat).contiguous();
  const at::Tensor W_enc = s.W_enc.contiguous(), W_dec = s.W_dec.contiguous(), b_enc = s.b_enc.contiguous(),
                   b_dec = s.b_dec.contiguous();
  const at::Tensor xin = s.apply_b_dec_to_input ? (x - b_dec).contiguous() : x;
  // GEMM operands, each converted once per step (W_dec serves the decoder and, transposed, dL/df).
  const at::ScalarType cdt = bf16 ? at::kBFloat16 : at::kFloat;
  const at::Tensor xin_c = xin.to(cdt), We_c = W_enc.to(cdt), Wd_c = W_dec.to(cdt);
  auto st = stream_of(x);
  const bool weighted = o.l1_norm_weighted && A != "jumprelu";  // jumprelu's L0 penalty is never norm-weighted
  at::Tensor wnorm = weighted ? W_dec.norm(2, {1}).contiguous() : at::Tensor();
  const double l1c = o.l1_coef;
  StepResult r;
  // aux-k (top-k family): the top aux_k pre-activations of dead latents reconstruct the (detached) residual.
  // Adds its gradient to gpre (and to gb_enc when given) and its rows to the decoder-gradient operands fd/gd
  // (gW_dec = fd^T gd), in the dtypes of f and gpre.
  const bool aux_on = (A == "topk" || A == "batchtopk") && o.aux_coef > 0 && o.aux_k > 0 && o.dead_mask.defined();
  auto add_aux = [&](const at::Tensor& pre, const at::Tensor& x_hat, const at::Tensor& f, const at::Tensor& g,
                     at::Tensor& gpre, at::Tensor& fd, at::Tensor& gd, at::Tensor* gb_enc) {
    fd = f;
    gd = g;
    if (!aux_on) return;
    at::Tensor dead = o.dead_mask.to(x.device(), at::kBool);
    int64_t nd = dead.sum().item<int64_t>();
    if (nd == 0) return;
    int64_t ka = std::min<int64_t>(o.aux_k, nd);
    auto atk = at::topk(at::where(dead.unsqueeze(0), pre, at::full({}, -INFINITY, pre.options())), ka, 1);
    at::Tensor av = std::get<0>(atk).relu().contiguous(), ai = std::get<1>(atk).contiguous();
    at::Tensor a = at::empty({B, D}, x.options());
    qsae::sae::cuda::launch_topk_decode(av.data_ptr<float>(), ai.data_ptr<int64_t>(), W_dec.data_ptr<float>(),
                                        nullptr, a.data_ptr<float>(), B, ka, D, st);
    at::Tensor resid = x - x_hat;
    double denom = (resid - resid.mean(0, true)).pow(2).sum(1).mean().item<double>();
    at::Tensor diff = a - resid;
    double aux = diff.pow(2).sum(1).mean().item<double>() / denom;
    if (!std::isfinite(aux) || denom <= 0) return;
    r.aux = aux;
    at::Tensor ga = diff.mul_(float(o.aux_coef * 2.0 / (double(B) * denom))).contiguous();
    at::Tensor gav = at::empty({B, ka}, x.options());
    qsae::sae::cuda::launch_topk_decode_backward(ga.data_ptr<float>(), av.data_ptr<float>(), ai.data_ptr<int64_t>(),
                                                 W_dec.data_ptr<float>(), gav.data_ptr<float>(), B, ka, D, st);
    gpre.scatter_add_(1, ai, gav.to(gpre.scalar_type()));
    // dL/db_enc of the aux term: each row's indices are distinct, so a scatter and a column sum (no float atomics:
    // index_add_ on CUDA would add colliding latents in a run-dependent order)
    if (gb_enc) gb_enc->add_(at::zeros({B, S}, x.options()).scatter_(1, ai, gav).sum(0));
    fd = at::cat({f, at::zeros({B, S}, f.options()).scatter_(1, ai, av.to(f.scalar_type()))}, 0);
    gd = at::cat({g, ga}, 0);
  };
  at::Tensor f, gpre, x_hat, g, fd, gd, fcol;
  if (A == "relu" || A == "batchtopk") {
    // The [B, S] activations stay in the GEMM dtype (bf16 on the tensor cores): the encoder GEMM writes pre, the
    // epilogue turns it into f in place, the dL/df GEMM writes gpre, the backward epilogue masks it in place.
    // Both epilogues compute in fp32 and also produce the column statistics (fired, sums of f, dL/db_enc), so
    // no other pass reads these tensors; the scalars come back in one transfer at the end.
    at::Tensor scratch = at::empty({qsae::sae::cuda::relu_stats_scratch(B, S)}, x.options());
    at::Tensor fired = at::empty({S}, x.options().dtype(at::kLong));
    fcol = at::empty({S}, x.options());
    at::Tensor pre_b;  // batchtopk with aux-k: pre + b_enc before the threshold, fp32
    auto stats = [&](const at::Tensor& t, const float* bias, int act, float thr) {
      if (t.scalar_type() == at::kBFloat16)
        qsae::sae::cuda::launch_relu_epilogue_stats(bf16_bits(t), bias, B, S, act, thr, fired.data_ptr<int64_t>(),
                                                    fcol.data_ptr<float>(), scratch.data_ptr<float>(), st);
      else
        qsae::sae::cuda::launch_relu_epilogue_stats(t.data_ptr<float>(), bias, B, S, act, thr,
                                                    fired.data_ptr<int64_t>(), fcol.data_ptr<float>(),
                                                    scratch.data_ptr<float>(), st);
    };
    at::Tensor pre_c = xin_c.mm(We_c);
    if (A == "relu") {
      stats(pre_c, b_enc.data_ptr<float>(), 1, 0.f);
      f = pre_c;
    } else {
      // the batch threshold is chosen on the fp32 pre + b_enc (as on the CPU), then f is cast for the GEMMs
      at::Tensor pre = pre_c.to(at::kFloat).contiguous();
      qsae::sae::cuda::launch_encoder_epilogue(pre.data_ptr<float>(), b_enc.data_ptr<float>(), B, S, 0, 0.f, st);
      if (aux_on) pre_b = pre.clone();  // the threshold below works in place
      int64_t kk = std::min<int64_t>(s.k * B, B * S);
      float thr = std::get<0>(at::topk(at::relu(pre).reshape({-1}), kk, 0, true, false)).min().item<float>();
      r.batch_threshold = thr;
      stats(pre, nullptr, 2, thr);
      f = pre.to(cdt);
    }
    x_hat = bf16 ? f.mm(Wd_c).to(at::kFloat).add_(b_dec) : at::addmm(b_dec, f, W_dec);
    g = (x_hat - x).contiguous();
    at::Tensor mse = g.pow(2).mean();
    g.mul_(2.0 / double(B * D));
    at::Tensor l1 = (weighted ? fcol.dot(wnorm) : fcol.sum()) / double(B);
    at::Tensor l0 = fired.sum().to(at::kFloat) / double(B);
    gpre = g.to(cdt).mm(Wd_c.t());
    r.gb_enc = at::empty({S}, x.options());
    const float* w = weighted ? wnorm.data_ptr<float>() : nullptr;
    if (bf16)
      qsae::sae::cuda::launch_relu_backward_stats(bf16_bits(gpre), bf16_bits(f), w, float(l1c / B),
                                                  r.gb_enc.data_ptr<float>(), scratch.data_ptr<float>(), B, S, st);
    else
      qsae::sae::cuda::launch_relu_backward_stats(gpre.data_ptr<float>(), f.data_ptr<float>(), w, float(l1c / B),
                                                  r.gb_enc.data_ptr<float>(), scratch.data_ptr<float>(), B, S, st);
    add_aux(pre_b, x_hat, f, g, gpre, fd, gd, &r.gb_enc);
    r.gW_dec = gemm(fd.t(), gd, cdt);
    r.gW_enc = gemm(xin_c.t(), gpre, cdt);
    r.fired = fired;
    auto scalars = at::stack({mse, l1.to(at::kFloat), l0}).to(at::kDouble).cpu();
    r.mse = scalars[0].item<double>();
    r.l1 = scalars[1].item<double>();
    r.l0 = scalars[2].item<double>();
  } else if (A == "jumprelu") {
    // f = pre * [pre > thr] (pre kept for the threshold window); dense decoder as for relu; the backward
    // epilogue masks dL/df into dL/dpre and sums the threshold's pseudo-gradient in the same pass.
    at::Tensor pre = xin_c.mm(We_c).to(at::kFloat).contiguous();
    const at::Tensor thr = s.threshold.to(x.device(), at::kFloat).contiguous();
    f = at::empty_like(pre);
    qsae::sae::cuda::launch_jumprelu_epilogue(pre.data_ptr<float>(), b_enc.data_ptr<float>(), thr.data_ptr<float>(),
                                              f.data_ptr<float>(), B, S, st);
    const at::Tensor f_c = f.to(cdt);
    x_hat = bf16 ? f_c.mm(Wd_c).to(at::kFloat).add_(b_dec) : at::addmm(b_dec, f, W_dec);
    g = (x_hat - x).contiguous();
    at::Tensor mse = g.pow(2).mean();
    g.mul_(2.0 / double(B * D));
    at::Tensor l1 = (pre > thr).sum();  // the L0 penalty (times B)
    gpre = gemm(g, Wd_c.t(), cdt).contiguous();
    r.gthreshold = at::empty({S}, x.options());
    at::Tensor scratch = at::empty({qsae::sae::cuda::jumprelu_backward_scratch(B, S)}, x.options());
    qsae::sae::cuda::launch_jumprelu_backward_epilogue(gpre.data_ptr<float>(), pre.data_ptr<float>(),
                                                       thr.data_ptr<float>(), r.gthreshold.data_ptr<float>(),
                                                       scratch.data_ptr<float>(), B, S, float(l1c / B),
                                                       float(kJumpReluBandwidth), st);
    r.gW_dec = gemm(f_c.t(), g, cdt);
    r.fired = (f > 0).sum(0).to(at::kLong);
    auto scalars = at::stack({mse.to(at::kDouble), l1.to(at::kDouble), (f != 0).sum().to(at::kDouble)}).cpu();
    r.mse = scalars[0].item<double>();
    r.l1 = scalars[1].item<double>() / B;
    r.l0 = scalars[2].item<double>() / B;
  } else {
    // topk: bias epilogue, torch's top-k selection, sparse gather decoder
    at::Tensor pre = xin_c.mm(We_c).to(at::kFloat).contiguous();
    qsae::sae::cuda::launch_encoder_epilogue(pre.data_ptr<float>(), b_enc.data_ptr<float>(), B, S, 0, 0.f, st);
    const int64_t K = std::min<int64_t>(s.k, S);
    auto tk = at::topk(pre, K, 1);
    at::Tensor vals = std::get<0>(tk).relu().contiguous(), idx = std::get<1>(tk).contiguous();
    x_hat = at::empty({B, D}, x.options());
    qsae::sae::cuda::launch_topk_decode(vals.data_ptr<float>(), idx.data_ptr<int64_t>(), W_dec.data_ptr<float>(),
                                        b_dec.data_ptr<float>(), x_hat.data_ptr<float>(), B, K, D, st);
    g = (x_hat - x).contiguous();
    at::Tensor mse = g.pow(2).mean();
    g.mul_(2.0 / double(B * D));
    at::Tensor w_at = weighted ? wnorm.index_select(0, idx.reshape({-1})).reshape({B, K}) : at::ones_like(vals);
    at::Tensor l1 = (vals * w_at).sum();
    at::Tensor gvals = at::empty({B, K}, x.options());
    qsae::sae::cuda::launch_topk_decode_backward(g.data_ptr<float>(), vals.data_ptr<float>(), idx.data_ptr<int64_t>(),
                                                 W_dec.data_ptr<float>(), gvals.data_ptr<float>(), B, K, D, st);
    if (l1c != 0) gvals.add_(w_at * (vals > 0).to(at::kFloat) * float(l1c / B));
    gpre = at::zeros({B, S}, x.options()).scatter_add_(1, idx, gvals);
    f = at::zeros({B, S}, x.options()).scatter_(1, idx, vals);
    add_aux(pre, x_hat, f, g, gpre, fd, gd, nullptr);
    r.gW_dec = gemm(fd.t(), gd, cdt);
    r.fired = (f > 0).sum(0).to(at::kLong);
    auto scalars = at::stack({mse.to(at::kDouble), l1.to(at::kDouble), (vals > 0).sum().to(at::kDouble)}).cpu();
    r.mse = scalars[0].item<double>();
    r.l1 = scalars[1].item<double>() / B;
    r.l0 = scalars[2].item<double>() / B;
  }
  if (weighted && l1c != 0)
    r.gW_dec.add_(W_dec * ((fcol.defined() ? fcol : f.sum(0)) / wnorm.clamp_min(1e-12) * float(l1c / B)).unsqueeze(1));
  if (!r.gW_enc.defined()) r.gW_enc = gemm(xin_c.t(), gpre, cdt);
  if (!r.gb_enc.defined()) r.gb_enc = gpre.sum(0);
  r.gb_dec = g.sum(0);
  if (s.apply_b_dec_to_input) r.gb_dec.sub_(W_enc.mv(r.gb_enc));
  r.loss = r.mse + l1c * r.l1 + o.aux_coef * r.aux;
  return r;
}

void adam_step_cuda(at::Tensor& p, const at::Tensor& g_in, at::Tensor& m, at::Tensor& v, int64_t step, double lr,
                    double beta1, double beta2, double eps) {
  auto ok = [&](const at::Tensor& t) {
    return t.is_cuda() && t.is_contiguous() && t.scalar_type() == at::kFloat && t.device() == p.device() &&
           t.numel() == p.numel();
  };
  QSAE_CHECK(ok(p) && ok(m) && ok(v), "adam (CUDA): parameters and moments must be contiguous fp32 tensors on one CUDA device");
  c10::cuda::CUDAGuard guard(p.device());
  at::Tensor g = g_in.to(p.device(), at::kFloat).contiguous();
  const double bc1 = 1 - std::pow(beta1, double(step)), bc2 = 1 - std::pow(beta2, double(step));
  qsae::sae::cuda::launch_adam_step(p.data_ptr<float>(), g.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(),
                                    p.numel(), float(lr / bc1), float(1.0 / std::sqrt(bc2)), float(beta1), float(beta2),
                                    float(eps), stream_of(p));
}

}  // namespace qsae::sae
