// CPU references of the relu / batchtopk CUDA epilogues (see epilogue_cpu.h). Serial and plain: they define the
// result, the CUDA kernels are what is fast.
#include "sae/epilogue_cpu.h"

#include <vector>

namespace qsae::sae {

void relu_epilogue_stats_cpu(float* pre, const float* b_enc, int64_t B, int64_t S, int act, float thr, int64_t* fired,
                             float* fsum) {
  std::vector<double> sum(S, 0.0);
  for (int64_t j = 0; j < S; ++j) fired[j] = 0;
  for (int64_t b = 0; b < B; ++b) {
    float* row = pre + b * S;
    for (int64_t j = 0; j < S; ++j) {
      float v = row[j] + (b_enc ? b_enc[j] : 0.f);
      v = (v > 0.f && (act != 2 || v >= thr)) ? v : 0.f;
      row[j] = v;
      fired[j] += v > 0.f;
      sum[j] += v;
    }
  }
  for (int64_t j = 0; j < S; ++j) fsum[j] = float(sum[j]);
}

void relu_backward_stats_cpu(float* gf, const float* f, const float* w, float l1_over_n, float* gsum, int64_t B,
                             int64_t S) {
  std::vector<double> sum(S, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    float* g = gf + b * S;
    const float* fr = f + b * S;
    for (int64_t j = 0; j < S; ++j) {
      const float v = fr[j] > 0.f ? g[j] + l1_over_n * (w ? w[j] : 1.f) : 0.f;
      g[j] = v;
      sum[j] += v;
    }
  }
  for (int64_t j = 0; j < S; ++j) gsum[j] = float(sum[j]);
}

}  // namespace qsae::sae
