// Quantized linear layers against torch's own matmul, in one run (ratios; the machine is shared and noisy).
//  CPU (default): NF4 and int8 GEMV (1 token) and NF4 GEMM (128 tokens) vs fp32 at::matmul on W [N, K] for
//  4096x4096, 8192x8192 and the MoE expert shape 768x2048; also the portable (non-AVX2) NF4 GEMV.
//  CUDA (--device cuda): NF4 GEMV batch 1 on 8192x8192 with L2 flushed between runs: GB/s of the weight
//  bytes, vs a device-to-device copy of the same bytes (read+write GB/s) and vs bf16 at::matmul.
// Usage: qsae_bench_quant [--device cpu|cuda] [--out FILE.json] [--quick] [--shape NxK ...]
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
#include "quant/quant.h"

#ifdef QSAE_HAVE_CUDA
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#endif

using namespace qsae;
using namespace qsae::quant;
using clk = std::chrono::steady_clock;

namespace {

using bench::time_it;

// Medians of a set of functions timed in interleaved rounds (a, b, c, a, b, c, ...), so that the load of a
// shared machine drifts over all of them alike and the ratios stay meaningful.
std::vector<double> time_interleaved(const std::vector<std::function<void()>>& fns, int rounds) {
  std::vector<std::vector<double>> t(fns.size());
  for (auto& f : fns) f();
  for (int r = 0; r < rounds; ++r)
    for (size_t i = 0; i < fns.size(); ++i) {
      const auto t0 = clk::now();
      fns[i]();
      t[i].push_back(std::chrono::duration<double>(clk::now() - t0).count());
    }
  std::vector<double> med;
  for (auto& v : t) {
    std::sort(v.begin(), v.end());
    med.push_back(v[v.size() / 2]);
  }
  return med;
}

json bench_cpu(bool quick, std::vector<std::pair<int64_t, int64_t>> shapes) {
  json rows = json::array();
  if (shapes.empty()) shapes = {{4096, 4096}, {8192, 8192}, {768, 2048}};
  if (quick && shapes.size() == 3) shapes = {{768, 2048}};
  for (auto [N, K] : shapes) {
    at::manual_seed(0);
    at::Tensor w = at::randn({N, K}) * 0.02;
    Quant4 q = quantize_4bit(w, Format::NF4, 64);
    Int8Weight i8 = quantize_int8(w);
    at::Tensor x1 = at::randn({1, K}), x128 = at::randn({128, K});
    at::Tensor wt = w.t();
    const int rounds = quick ? 5 : (N * K > (int64_t(1) << 25) ? 9 : 21);
    auto g = time_interleaved({[&] { at::matmul(x1, wt); }, [&] { linear_4bit(x1, q, {}, at::kFloat); },
                               [&] { linear_int8(x1, i8, {}, 6.0, at::kFloat); }},
                              rounds);
    const double fp32_gemv = g[0], nf4_gemv = g[1], int8_gemv = g[2];
    set_cpu_kernel("generic");
    const double nf4_gemv_generic = time_it([&] { linear_4bit(x1, q, {}, at::kFloat); }, 3, 0.2);
    set_cpu_kernel("auto");
    auto m = time_interleaved({[&] { at::matmul(x128, wt); }, [&] { linear_4bit(x128, q, {}, at::kFloat); }},
                              quick ? 3 : 7);
    const double fp32_gemm = m[0], nf4_gemm = m[1];
    json r = {{"N", N},
              {"K", K},
              {"fp32_gemv_ms", fp32_gemv * 1e3},
              {"nf4_gemv_ms", nf4_gemv * 1e3},
              {"nf4_gemv_generic_ms", nf4_gemv_generic * 1e3},
              {"int8_gemv_ms", int8_gemv * 1e3},
              {"fp32_gemm128_ms", fp32_gemm * 1e3},
              {"nf4_gemm128_ms", nf4_gemm * 1e3},
              {"nf4_gemv_ratio", nf4_gemv / fp32_gemv},
              {"int8_gemv_ratio", int8_gemv / fp32_gemv},
              {"nf4_gemm128_ratio", nf4_gemm / fp32_gemm},
              {"fp32_gemv_GBps", double(N * K * 4) / fp32_gemv / 1e9},
              {"nf4_gemv_weight_GBps", double(q.bytes()) / nf4_gemv / 1e9}};
    std::printf("%5lldx%-5lld  gemv fp32 %7.3f ms | nf4 %7.3f ms (%.2fx; portable %.3f ms) | int8 %7.3f ms (%.2fx)"
                "  || gemm128 fp32 %8.2f ms | nf4 %8.2f ms (%.2fx)\n",
                (long long)N, (long long)K, fp32_gemv * 1e3, nf4_gemv * 1e3, nf4_gemv / fp32_gemv,
                nf4_gemv_generic * 1e3, int8_gemv * 1e3, int8_gemv / fp32_gemv, fp32_gemm * 1e3, nf4_gemm * 1e3,
                nf4_gemm / fp32_gemm);
    std::fflush(stdout);
    rows.push_back(r);
  }
  return rows;
}

#ifdef QSAE_HAVE_CUDA
json bench_cuda() {
  const at::Device dev(at::kCUDA, 0);
  const int64_t N = 8192, K = 8192;
  at::manual_seed(0);
  at::Tensor w = at::randn({N, K}) * 0.02;
  Quant4 q = quantize_4bit(w, Format::NF4, 64).to(dev);
  at::Tensor wb = w.to(dev, at::kBFloat16);
  at::Tensor x = at::randn({1, K}).to(dev);
  at::Tensor xb = x.to(at::kBFloat16);
  at::Tensor flush = at::empty({int64_t(256) << 20}, at::TensorOptions().device(dev).dtype(at::kByte));  // 256 MiB
  at::Tensor src = at::empty({q.packed.numel()}, q.packed.options()), dst = at::empty_like(src);
  cudaStream_t s = c10::cuda::getCurrentCUDAStream(0).stream();
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  auto timed = [&](const std::function<void()>& fn, int reps) {
    std::vector<float> ms;
    fn();
    for (int i = 0; i < reps; ++i) {
      flush.zero_();  // evicts L2 (50 MB on H100) between runs
      cudaEventRecord(e0, s);
      fn();
      cudaEventRecord(e1, s);
      cudaEventSynchronize(e1);
      float m = 0;
      cudaEventElapsedTime(&m, e0, e1);
      ms.push_back(m);
    }
    std::sort(ms.begin(), ms.end());
    return double(ms[ms.size() / 2]) * 1e-3;
  };
  const double t_nf4 = timed([&] { linear_4bit(x, q, {}, at::kFloat); }, 50);
  const double t_nf4_bf16 = timed([&] { linear_4bit(xb, q, {}, at::kBFloat16); }, 50);
  const double t_copy = timed([&] { dst.copy_(src); }, 50);
  const double t_bf16 = timed([&] { at::matmul(xb, wb.t()); }, 50);
  const double bytes = double(q.packed.nbytes() + q.absmax.nbytes());
  json r = {{"shape", {N, K}},
            {"nf4_gemv_us", t_nf4 * 1e6},
            {"nf4_gemv_bf16_io_us", t_nf4_bf16 * 1e6},
            {"nf4_weight_GBps", bytes / t_nf4 / 1e9},
            {"d2d_copy_us", t_copy * 1e6},
            {"d2d_copy_GBps", 2.0 * double(src.nbytes()) / t_copy / 1e9},
            {"bf16_matmul_us", t_bf16 * 1e6},
            {"fraction_of_copy_bandwidth", (bytes / t_nf4) / (2.0 * double(src.nbytes()) / t_copy)},
            {"speedup_vs_bf16", t_bf16 / t_nf4}};
  std::cout << r.dump(2) << std::endl;
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return r;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  std::string device = "cpu", out;
  bool quick = false;
  std::vector<std::pair<int64_t, int64_t>> shapes;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--device" && i + 1 < argc) device = argv[++i];
    else if (a == "--out" && i + 1 < argc) out = argv[++i];
    else if (a == "--quick") quick = true;
    else if (a == "--shape" && i + 1 < argc) {
      long long n = 0, k = 0;
      if (std::sscanf(argv[++i], "%lldx%lld", &n, &k) != 2 || n <= 0 || k <= 0) {
        std::fprintf(stderr, "qsae_bench_quant: --shape expects NxK, e.g. 4096x4096\n");
        return 2;
      }
      shapes.emplace_back(n, k);
    }
    else {
      std::fprintf(stderr, "usage: qsae_bench_quant [--device cpu|cuda] [--out FILE.json] [--quick] [--shape NxK ...]\n");
      return 2;
    }
  }
  try {
    init_runtime();
    c10::InferenceMode guard;
    const RuntimeInfo ri = runtime_info();
    json result = {{"bench", "quant"}, {"device", device}, {"threads", ri.threads}, {"blas", ri.blas},
                   {"cpu_features", ri.cpu_features}, {"cpu_kernel", cpu_kernel()}};
    std::printf("qsae_bench_quant: device %s, %d threads, %s, kernel %s\n", device.c_str(), ri.threads,
                ri.blas.c_str(), cpu_kernel().c_str());
    if (device == "cuda") {
#ifdef QSAE_HAVE_CUDA
      if (!at::hasCUDA()) throw std::runtime_error("--device cuda: no CUDA device");
      result["cuda"] = bench_cuda();
      result["cpu_quick"] = bench_cpu(true, {});
#else
      throw std::runtime_error("--device cuda: qsae was built without CUDA");
#endif
    } else {
      result["cpu"] = bench_cpu(quick, shapes);
    }
    if (!out.empty()) write_file_atomic(out, result.dump(2) + "\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qsae_bench_quant: %s\n", e.what());
    return 1;
  }
  return 0;
}
