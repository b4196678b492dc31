// SAE training throughput.
//  CPU (default): d_in 512, batch 4096, expansions 0.5 / 2 / 8, relu, topk (k 32) and jumprelu: tokens/s of
//  a full training step (forward, backward, Adam, decoder normalization; jumprelu: its threshold too) on the
//  fused path vs the plain autograd path with the reference Adam, alternating step by step in the same run
//  (tok/s from the median step; the ratio is the median, with quartiles, of the per-pair ratios).
//  CUDA (--device cuda): d_in 2048 and 4096, expansion 8, batch 4096, relu, topk (k 32) and jumprelu, bf16 matmuls with
//  fp32 master weights: tokens/s and the fraction of the bf16 matmul floor (the step's GEMMs timed alone:
//  5 for relu and jumprelu, 3 for topk) reached.
// Usage: qsae_bench_sae [--device cpu|cuda] [--out FILE.json] [--quick] [--only TYPE:EXPANSION]
//                       [--cpu-kernel auto|generic] [--density-sweep]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "common/runtime.h"
#include "io/fs.h"
#include "io/json.h"
#include "sae/fused_cpu.h"
#include "sae/sae.h"
#include "sae/sae_cuda.h"
#ifdef QSAE_HAVE_CUDA
#include <cuda_runtime.h>
#endif

using namespace qsae;
using namespace qsae::sae;
using clk = std::chrono::steady_clock;

namespace {

// Linear-interpolated quantile of v (a copy: the caller's order stays).
double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const size_t i = size_t(pos);
  return i + 1 < v.size() ? v[i] + (pos - double(i)) * (v[i + 1] - v[i]) : v[i];
}

struct Trainer {
  Sae s;
  at::Tensor m[5], v[5];
  int64_t step = 0;
  Trainer(const std::string& arch, int64_t d, int64_t S, int64_t k, at::Device dev) {
    s = init_sae(arch, d, S, k, at::make_generator<at::CPUGeneratorImpl>(1)).to(dev, at::kFloat);
    at::Tensor* p[5] = {&s.W_enc, &s.b_enc, &s.W_dec, &s.b_dec, &s.threshold};
    for (int i = 0; i < 5; ++i)
      if (p[i]->defined()) m[i] = at::zeros_like(*p[i]), v[i] = at::zeros_like(*p[i]);
  }
  void run(const at::Tensor& x, int mode /*0 fused cpu, 1 autograd, 2 cuda*/, double l1) {
    LossOptions o;
    o.l1_coef = l1;
    StepResult r = mode == 0 ? fused_forward_backward_cpu(s, x, o)
                   : mode == 1 ? autograd_forward_backward(s, x, o)
                               : cuda_forward_backward(s, x, o, true);
    at::Tensor g[5] = {r.gW_enc, r.gb_enc, r.gW_dec, r.gb_dec, r.gthreshold};
    at::Tensor* p[5] = {&s.W_enc, &s.b_enc, &s.W_dec, &s.b_dec, &s.threshold};
    ++step;
    for (int i = 0; i < 5; ++i) {
      if (!g[i].defined()) continue;
      if (mode == 0) adam_step_fused_cpu(*p[i], g[i], m[i], v[i], step, 1e-4, 0.9, 0.999, 1e-8);
      else if (mode == 1) adam_step_reference(*p[i], g[i], m[i], v[i], step, 1e-4, 0.9, 0.999, 1e-8);
      else adam_step_cuda(*p[i], g[i], m[i], v[i], step, 1e-4, 0.9, 0.999, 1e-8);
    }
    c10::NoGradGuard ng;
    if (s.threshold.defined()) s.threshold.clamp_min_(1e-6);
    if (mode == 0) normalize_decoder_rows_cpu(s.W_dec);  // the fused path's own pass (fused_cpu.h says why)
    else s.W_dec.div_(s.W_dec.norm(2, {1}, true).clamp_min(1e-12));
  }
};
}  // namespace

int main(int argc, char** argv) {
  std::string device = "cpu", out, only;
  bool quick = false, density_sweep = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
    else if (!std::strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];  // e.g. topk:0.5
    else if (!std::strcmp(argv[i], "--cpu-kernel") && i + 1 < argc) set_cpu_kernel(argv[++i]);  // auto | generic
    else if (!std::strcmp(argv[i], "--density-sweep")) density_sweep = true;
  }
  init_runtime();
  auto info = runtime_info();
  json results = json::array();
  if (device == "cpu" && density_sweep) {
    // Where the fused relu/jumprelu step should switch from its sparse kernels to dense GEMMs
    // (LossOptions::dense_threshold): one forward/backward (no Adam, so the density stays put) at a given fraction
    // of active latents, each latent's bias set so that exactly that fraction of the batch fires; dense and sparse
    // paths alternate in pairs, median times.
    const int64_t d = 512, B = quick ? 1024 : 4096;
    auto x = at::randn({B, d}, at::make_generator<at::CPUGeneratorImpl>(2));
    std::printf("qsae bench_sae --density-sweep (CPU, %d threads, %s, kernels %s): relu, d_in %lld, batch %lld\n",
                info.threads, info.blas.c_str(), cpu_kernel().c_str(), (long long)d, (long long)B);
    std::printf("%-9s %-9s %-8s %10s %10s %8s\n", "type", "expansion", "density", "dense ms", "sparse ms",
                "dense/sparse");
    for (std::string arch : {"relu", "jumprelu"})
      for (double e : {2.0, 8.0})
      for (double density : {0.02, 0.05, 0.1, 0.15, 0.2, 0.35, 0.5}) {
        const int64_t S = int64_t(e * d);
        Sae s = init_sae(arch, d, S, 0, at::make_generator<at::CPUGeneratorImpl>(1));
        c10::NoGradGuard ng;
        const int64_t fire = std::max<int64_t>(1, int64_t(density * B));
        // relu: b_enc[j] = -(the fire-th largest x . W_enc[:, j]); jumprelu: that value as the threshold, no bias.
        // Either way `fire` rows are active.
        auto kth = std::get<0>(x.mm(s.W_enc).kthvalue(B - fire, 0)).contiguous();
        if (arch == "relu") s.b_enc = (-kth).contiguous();
        else s.b_enc.zero_(), s.threshold = kth;
        LossOptions dense, sparse;
        dense.l1_coef = sparse.l1_coef = 5e-4;
        dense.dense_threshold = 0.0;
        sparse.dense_threshold = 2.0;
        (void)fused_forward_backward_cpu(s, x, dense), (void)fused_forward_backward_cpu(s, x, sparse);
        std::vector<double> td, ts;
        const auto t_start = clk::now();
        auto secs = [](clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); };
        while (td.size() < 3 || (secs(t_start) < (quick ? 1.0 : 4.0) && td.size() < 100)) {
          auto t0 = clk::now();
          (void)fused_forward_backward_cpu(s, x, dense);
          td.push_back(secs(t0));
          t0 = clk::now();
          (void)fused_forward_backward_cpu(s, x, sparse);
          ts.push_back(secs(t0));
        }
        const double md = quantile(td, 0.5), ms = quantile(ts, 0.5);
        std::printf("%-9s %-9g %-8g %10.2f %10.2f %8.2fx\n", arch.c_str(), e, density, md * 1e3, ms * 1e3, md / ms);
        std::fflush(stdout);
        results.push_back({{"device", "cpu"}, {"sweep", "density"}, {"type", arch}, {"d_in", d}, {"d_sae", S},
                           {"batch", B}, {"density", density}, {"dense_ms", md * 1e3}, {"sparse_ms", ms * 1e3},
                           {"threads", info.threads}, {"cpu_kernel", cpu_kernel()}});
      }
  } else if (device == "cpu") {
    const int64_t d = 512, B = quick ? 1024 : 4096;
    std::printf("qsae bench_sae (CPU, %d threads, %s): d_in %lld, batch %lld\n", info.threads, info.blas.c_str(),
                (long long)d, (long long)B);
    std::printf("(fused kernels: %s; ratio = fused / autograd tok/s: median and quartiles over adjacent pairs of steps)\n",
                cpu_kernel().c_str());
    std::printf("%-16s %-9s %12s %12s %8s %8s %8s %6s\n", "type", "expansion", "fused tok/s", "autograd", "ratio", "q1",
                "q3", "pairs");
    auto x = at::randn({B, d}, at::make_generator<at::CPUGeneratorImpl>(2));
    // relu-sparse: b_enc = -2.05 so ~2% of latents fire (L0 ~ 0.02 d_sae, the regime of a trained SAE);
    // relu: fresh initialization (~50% fire: dense matmuls on both paths). jumprelu and jumprelu-sparse: the
    // same two regimes (threshold 1e-3 from init_sae).
    for (std::string variant : {"relu", "relu-sparse", "topk", "jumprelu", "jumprelu-sparse"})
      for (double e : {0.5, 2.0, 8.0}) {
        int64_t S = int64_t(e * d);
        char tag[64];
        std::snprintf(tag, sizeof tag, "%s:%g", variant.c_str(), e);
        if (!only.empty() && only != tag) continue;
        std::string arch = variant.substr(0, variant.find('-'));
        Trainer a(arch, d, S, 32, at::kCPU), b(arch, d, S, 32, at::kCPU);
        if (variant.find("-sparse") != std::string::npos) a.s.b_enc.fill_(-2.05), b.s.b_enc.fill_(-2.05);
        double l1 = arch == "relu" || arch == "jumprelu" ? 5e-4 : 0.0;
        // Many short pairs, one fused and one autograd step each (which goes first alternates), and the ratio per
        // pair: on a shared machine the load changes between seconds, and each pair sees nearly the same load.
        a.run(x, 0, l1), b.run(x, 1, l1);  // warm-up
        const int min_pairs = quick ? 3 : 5;
        const double min_time = quick ? 1.5 : 8.0;
        std::vector<double> tf, tr, ratio;
        const auto t_start = clk::now();
        auto secs = [](clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); };
        while ((int)ratio.size() < min_pairs || (secs(t_start) < min_time && ratio.size() < 200)) {
          double f = 0, r = 0;
          for (int half = 0; half < 2; ++half) {
            const bool fused_now = (half == 0) == (ratio.size() % 2 == 0);
            const auto t0 = clk::now();
            if (fused_now) a.run(x, 0, l1);
            else b.run(x, 1, l1);
            (fused_now ? f : r) = secs(t0);
          }
          tf.push_back(f), tr.push_back(r), ratio.push_back(r / f);
        }
        double fused = B / quantile(tf, 0.5), ref = B / quantile(tr, 0.5);
        double q1 = quantile(ratio, 0.25), med = quantile(ratio, 0.5), q3 = quantile(ratio, 0.75);
        std::printf("%-16s %-9g %12.0f %12.0f %7.2fx %7.2fx %7.2fx %6zu\n", variant.c_str(), e, fused, ref, med, q1, q3,
                    ratio.size());
        std::fflush(stdout);
        results.push_back({{"device", "cpu"}, {"type", variant}, {"d_in", d}, {"d_sae", S}, {"batch", B}, {"k", 32},
                           {"fused_tokens_per_s", fused}, {"autograd_tokens_per_s", ref}, {"speedup", med},
                           {"speedup_q1", q1}, {"speedup_q3", q3}, {"pairs", ratio.size()},
                           {"threads", info.threads}, {"cpu_kernel", cpu_kernel()}});
      }
  } else {
#ifdef QSAE_HAVE_CUDA
    at::Device dev("cuda");
    const int64_t B = 4096;
    std::printf("qsae bench_sae (CUDA %s): batch %lld, expansion 8, bf16 matmuls\n",
                info.cuda_devices.empty() ? "?" : info.cuda_devices[0].name.c_str(), (long long)B);
    for (int64_t d : {2048, 4096})
      for (std::string arch : {"relu", "topk", "jumprelu"}) {
        int64_t S = 8 * d;
        auto x = at::randn({B, d}, at::TensorOptions().device(dev));
        Trainer t(arch, d, S, 32, dev);
        // Device time per call: synchronize, run `reps` calls back to back, synchronize; median of 5 such groups.
        auto per_call = [&](const std::function<void()>& fn, int reps) {
          fn();
          cudaDeviceSynchronize();
          std::vector<double> t;
          for (int g = 0; g < 5; ++g) {
            auto t0 = clk::now();
            for (int i = 0; i < reps; ++i) fn();
            cudaDeviceSynchronize();
            t.push_back(std::chrono::duration<double>(clk::now() - t0).count() / reps);
          }
          std::sort(t.begin(), t.end());
          return t[t.size() / 2];
        };
        const double l1 = arch == "topk" ? 0.0 : 5e-4;
        double step = per_call([&] { t.run(x, 2, l1); }, 10);
        // Where the step's time goes: the forward/backward alone, Adam over every parameter, the decoder
        // renormalization.
        LossOptions o;
        o.l1_coef = l1;
        StepResult r = cuda_forward_backward(t.s, x, o, true);
        double fb = per_call([&] { (void)cuda_forward_backward(t.s, x, o, true); }, 10);
        at::Tensor grads[5] = {r.gW_enc, r.gb_enc, r.gW_dec, r.gb_dec, r.gthreshold};
        at::Tensor* params[5] = {&t.s.W_enc, &t.s.b_enc, &t.s.W_dec, &t.s.b_dec, &t.s.threshold};
        double adam = per_call([&] {
          for (int i = 0; i < 5; ++i)
            if (grads[i].defined()) adam_step_cuda(*params[i], grads[i], t.m[i], t.v[i], 1000, 1e-4, 0.9, 0.999, 1e-8);
        }, 10);
        double norm = per_call([&] { t.s.W_dec.div_(t.s.W_dec.norm(2, {1}, true).clamp_min(1e-12)); }, 10);
        auto xb = x.to(at::kBFloat16);
        // Fresh random operands (never zeros): the floor is n GEMMs of the step's largest shape, timed alone.
        auto W = at::randn({d, S}, xb.options());
        int n_gemm = arch == "topk" ? 3 : 5;  // relu and jumprelu: dense encoder and decoder GEMMs
        double gemm = per_call([&] { (void)xb.mm(W); }, 20);
        double floor = n_gemm * gemm;
        double tflops = 2.0 * B * d * S / gemm / 1e12;
        std::printf("d_in %lld %-8s %10.0f tok/s  step %.3f ms  floor %.3f ms (%d GEMMs at %.0f TFLOP/s)  %.0f%% of floor"
                    "  [fwd+bwd %.3f, adam %.3f, renorm %.3f ms]\n",
                    (long long)d, arch.c_str(), B / step, step * 1e3, floor * 1e3, n_gemm, tflops, 100 * floor / step,
                    fb * 1e3, adam * 1e3, norm * 1e3);
        results.push_back({{"device", "cuda"}, {"type", arch}, {"d_in", d}, {"d_sae", S}, {"batch", B}, {"k", 32},
                           {"tokens_per_s", B / step}, {"step_ms", step * 1e3}, {"bf16_floor_ms", floor * 1e3},
                           {"gemm_tflops", tflops}, {"fraction_of_floor", floor / step},
                           {"forward_backward_ms", fb * 1e3}, {"adam_ms", adam * 1e3}, {"renorm_ms", norm * 1e3}});
      }
#else
    std::fprintf(stderr, "qsae bench_sae: built without CUDA\n");
    return 1;
#endif
  }
  if (!out.empty()) write_file_atomic(out, json{{"bench", "sae"}, {"results", results}}.dump(2) + "\n");
  return 0;
}
