// CPU references of the relu / batchtopk CUDA epilogues with fused column statistics (sae_kernels.h:
// launch_relu_epilogue_stats, launch_relu_backward_stats), on raw fp32 row-major buffers. Same contracts; sums in
// row order, in double. test/native/test_sae_cuda.cpp compares the CUDA kernels against these where a GPU exists.
#pragma once
#include <cstdint>

namespace qsae::sae {

// In place on pre [B, S]: v = pre + (b_enc ? b_enc[j] : 0); f = v > 0 (act 1), or v > 0 and v >= thr (act 2) ? v : 0;
// fired[j] = rows with f > 0; fsum[j] = sum of f over rows.
void relu_epilogue_stats_cpu(float* pre, const float* b_enc, int64_t B, int64_t S, int act, float thr, int64_t* fired,
                             float* fsum);
// In place on gf [B, S]: gpre = f > 0 ? gf + l1_over_n * (w ? w[j] : 1) : 0; gsum[j] = sum of gpre over rows.
void relu_backward_stats_cpu(float* gf, const float* f, const float* w, float l1_over_n, float* gsum, int64_t B,
                             int64_t S);

}  // namespace qsae::sae
