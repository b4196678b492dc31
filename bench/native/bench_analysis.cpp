// Benchmarks of the analysis module (results in bench/README.md):
//   lap  M...          exact JV vs ε-scaling auction on decoder-cosine matrices of two SAEs (d_in 512):
//                      "related" (B = permuted A + noise, like SAEs of two precisions) and "unrelated" (independent)
//   transfer N d M     streamed transfer metrics over N tokens (in-memory .safetensors pair), bootstrap 1000
// Usage: qsae_bench_analysis lap 1024 2048 4096 16384 | qsae_bench_analysis transfer 20000 512 4096
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "analysis/align.h"
#include "analysis/lap.h"
#include "analysis/transfer.h"
#include "common/runtime.h"
#include "io/safetensors.h"
#include "sae/sae.h"

using namespace qsae;
using namespace qsae::analysis;

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

at::Tensor unit(const at::Tensor& x) { return x / x.norm(2, {1}, true); }

void bench_lap(int64_t M, bool related, bool run_exact) {
  const int64_t d = 512;
  at::manual_seed(M + related);
  at::Tensor A = unit(at::randn({M, d}));
  at::Tensor B = related ? unit(A.index_select(0, at::randperm(M, at::kLong)) + 0.9 * unit(at::randn({M, d})))
                         : unit(at::randn({M, d}));
  at::Tensor C = at::mm(A, B.t()).contiguous();
  const char* kind = related ? "related" : "unrelated";
  double exact_value = 0;
  if (run_exact) {
    double t0 = now();
    auto ex = solve_lap_exact(C.data_ptr<float>(), M);
    double t = now() - t0;
    exact_value = ex.value;
    std::printf("lap exact   M=%-6lld %-9s %8.2f s  mean cos %.6f  augmentations %lld\n", (long long)M, kind, t,
                ex.value / M, (long long)ex.iterations);
    std::fflush(stdout);
  }
  double t0 = now();
  auto au = solve_lap_auction(C.data_ptr<float>(), M, AuctionOptions{});
  double t = now() - t0;
  std::printf("lap auction M=%-6lld %-9s %8.2f s  mean cos %.6f  certified gap %.2e (mean)%s  bids %lld\n",
              (long long)M, kind, t, au.value / M, au.gap_bound / M,
              run_exact ? (std::string("  true gap ") + std::to_string((exact_value - au.value) / M)).c_str() : "",
              (long long)au.iterations);
  std::fflush(stdout);
}

void bench_transfer(int64_t N, int64_t d, int64_t M) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  sae::Sae s = sae::init_sae("relu", d, M, 0, gen);
  s.b_enc = at::full({M}, -0.05f);  // a few % active
  at::manual_seed(2);
  at::Tensor X = at::randn({N, d});
  at::Tensor Xb = X + 0.2 * at::randn({N, d});
  at::Tensor doc = (at::arange(N, at::kInt) / 200).to(at::kInt);
  std::string pa = "/tmp/qsae-bench-a-" + std::to_string(::getpid()) + ".safetensors";
  std::string pb = "/tmp/qsae-bench-b-" + std::to_string(::getpid()) + ".safetensors";
  save_safetensors(pa, {{"acts", X}, {"doc", doc}});
  save_safetensors(pb, {{"acts", Xb}, {"doc", doc}});
  TransferOptions o;
  double t_boot0 = 0, t0 = now();
  auto r = transfer(s, "bench", pa, pb, "", -1, o, nullptr, [&](const Progress& p) {
    if (p.stage == "bootstrap" && t_boot0 == 0) t_boot0 = now();
  });
  double t = now() - t0;
  std::printf("transfer N=%lld d=%lld M=%lld: %.2f s total (%.0f tokens/s incl. pre-pass, encode, metrics); "
              "bootstrap %.2f s; l0_a %.1f, sample_corr %.4f, feature_corr %.4f, units %lld, groups %lld\n",
              (long long)N, (long long)d, (long long)M, t, N / t, t_boot0 > 0 ? now() - t_boot0 : 0.0,
              r.values["l0_a"], r.values["sample_correlation"], r.values["feature_correlation"],
              (long long)r.n_units, (long long)r.n_groups);
  std::remove(pa.c_str());
  std::remove(pb.c_str());
}
}  // namespace

int main(int argc, char** argv) {
  init_runtime();
  std::string mode = argc > 1 ? argv[1] : "lap";
  if (mode == "lap") {
    for (int i = 2; i < argc; ++i) {
      int64_t M = std::atoll(argv[i]);
      const bool run_exact = M <= 4096;
      bench_lap(M, true, run_exact);
      bench_lap(M, false, run_exact);
    }
    if (argc <= 2) bench_lap(1024, true, true);
  } else if (mode == "transfer") {
    int64_t N = argc > 2 ? std::atoll(argv[2]) : 20000, d = argc > 3 ? std::atoll(argv[3]) : 512,
            M = argc > 4 ? std::atoll(argv[4]) : 4096;
    bench_transfer(N, d, M);
  } else {
    std::fprintf(stderr, "usage: %s lap M... | transfer N d M\n", argv[0]);
    return 2;
  }
  return 0;
}
