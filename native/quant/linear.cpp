// Quantized linear layers on CPU (fused dequant+GEMV for one row, blocked dequant+GEMM otherwise; LLM.int8 with
// outlier decomposition), dispatching to CUDA for CUDA inputs.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>

#include "common/error.h"
#include "common/runtime.h"
#include "common/tensor_util.h"
#include "quant/kernels.h"
#include "quant/quant.h"
#include "quant/quant_cuda_glue.h"

namespace qsae::quant {

namespace {

CpuKernelChoice g_kernels("quant");

bool use_avx2() { return g_kernels.avx2(); }

kern::Q4View view_of(const Quant4& w, const at::Tensor& packed, const at::Tensor& absmax) {
  kern::Q4View v;
  v.packed = packed.data_ptr<uint8_t>();
  v.absmax = absmax.data_ptr<float>();
  v.table = code_table(w.format).data();
  v.N = w.shape[0];
  v.K = w.shape[1];
  v.blocksize = w.blocksize;
  return v;
}

std::vector<int64_t> out_shape(const at::Tensor& x, int64_t N) {
  auto s = x.sizes().vec();
  s.back() = N;
  return s;
}

void check_x(const at::Tensor& x, int64_t K, const char* what) {
  QSAE_CHECK_TYPE(x.defined() && x.is_floating_point(), what, ": input must be a floating tensor");
  QSAE_CHECK_RANGE(x.dim() >= 1 && x.size(-1) == K, what, ": input has shape ", shape_str(x.sizes()),
                   ", expected [..., ", K, "]");
}

// Rows of the dequantized tile for the blocked GEMM: up to 256 rows (BLAS packs x once per call, so wide tiles
// amortize that), at most 16 MiB of fp32 (QSAE_QUANT_TILE_ROWS overrides), a multiple of 16.
int64_t tile_rows(int64_t N, int64_t K) {
  const char* env = std::getenv("QSAE_QUANT_TILE_ROWS");
  int64_t r = env ? std::atoll(env) : std::min<int64_t>(256, (int64_t(1) << 22) / std::max<int64_t>(1, K));
  r = std::max<int64_t>(16, r / 16 * 16);
  return std::min(N, r);
}

}  // namespace

void set_cpu_kernel(const std::string& which) { g_kernels.set(which); }
std::string cpu_kernel() { return g_kernels.name(); }

at::Tensor linear_4bit(const at::Tensor& x, const Quant4& w, const at::Tensor& bias, at::ScalarType compute) {
  QSAE_CHECK_RANGE(w.shape.size() == 2, "linear_4bit: the weight must be 2-D [out, in], got ", shape_str(w.shape));
  const int64_t N = w.shape[0], K = w.shape[1];
  check_x(x, K, "linear_4bit");
  if (x.is_cuda()) {
#ifdef QSAE_HAVE_CUDA
    return cuda::linear_4bit_cuda(x, w, bias, compute);
#else
    fail("linear_4bit: CUDA input, but qsae was built without CUDA");
#endif
  }
  QSAE_CHECK(w.packed.device().is_cpu(), "linear_4bit: input on CPU but the weight is on ", w.packed.device());
  at::Tensor packed = w.packed.contiguous(), absmax = w.absmax.to(at::kFloat).contiguous();
  QSAE_CHECK_RANGE(packed.numel() == (N * K + 1) / 2 && absmax.numel() == w.nblocks(),
                   "linear_4bit: packed data or absmax do not match shape ", shape_str(w.shape));
  at::Tensor x2 = x.reshape({-1, K}).to(at::kFloat).contiguous();
  const int64_t M = x2.size(0);
  const kern::Q4View v = view_of(w, packed, absmax);
  const bool avx = use_avx2();
  at::Tensor y = at::empty({M, N}, at::kFloat);
  if (M == 1) {
    const float* px = x2.data_ptr<float>();
    float* py = y.data_ptr<float>();
    at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
      if (avx) kern::gemv4_avx2(v, px, py, n0, n1);
      else kern::gemv4_generic(v, px, py, n0, n1);
    });
  } else if (M > 0) {
    // Blocked: dequantize a tile of rows (never the whole matrix), multiply it with BLAS, next tile.
    const int64_t R = tile_rows(N, K);
    at::Tensor tile = at::empty({R, K}, at::kFloat);
    at::Tensor ytile = at::empty({M, R}, at::kFloat);
    for (int64_t t0 = 0; t0 < N; t0 += R) {
      const int64_t r = std::min(R, N - t0);
      float* pt = tile.data_ptr<float>();
      at::parallel_for(t0, t0 + r, 8, [&](int64_t n0, int64_t n1) {
        float* o = pt + (n0 - t0) * K;
        if (avx) kern::dequant4_rows_avx2(v, o, n0, n1);
        else kern::dequant4_rows_generic(v, o, n0, n1);
      });
      if (r == R) {
        at::mm_out(ytile, x2, tile.t());
        y.narrow(1, t0, r).copy_(ytile);
      } else {
        y.narrow(1, t0, r).copy_(at::mm(x2, tile.narrow(0, 0, r).t()));
      }
    }
  }
  if (bias.defined()) y.add_(bias.to(at::kFloat));
  y = y.reshape(out_shape(x, N));
  return compute == at::kFloat ? y : y.to(compute);
}

std::vector<int64_t> outlier_columns(const at::Tensor& x2d, double threshold) {
  std::vector<int64_t> cols;
  if (!(threshold > 0)) return cols;
  at::Tensor flags = (x2d.abs() >= threshold).any(0).to(at::kCPU);
  const bool* pf = flags.data_ptr<bool>();
  for (int64_t k = 0; k < flags.numel(); ++k)
    if (pf[k]) cols.push_back(k);
  return cols;
}

namespace {

// Row quantization with bitsandbytes' semantics (int8_vectorwise_quant): row max over |x| < threshold;
// q = round(x * (127.0 / max)) with torch's `127.0 / tensor` = reciprocal(max) * 127 (two fp32 roundings, not
// 127 / max: the last bit decides .5 ties); outlier columns zeroed in every row.
void quant_rows(const float* px, int64_t M, int64_t K, double threshold, const std::vector<char>& is_out, int8_t* pq,
                float* ps) {
  const float thr = static_cast<float>(threshold);
  at::parallel_for(0, M, 4, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const float* r = px + m * K;
      float mx = 0;
      for (int64_t k = 0; k < K; ++k) {
        const float a = std::fabs(r[k]);
        if (!(threshold > 0) || a < thr) mx = std::max(mx, a);
      }
      ps[m] = mx;
      const float s = (1.0f / mx) * 127.0f;
      int8_t* q = pq + m * K;
      for (int64_t k = 0; k < K; ++k) {
        if (is_out[k] || mx == 0) {
          q[k] = 0;
        } else {
          const float v = std::nearbyint(r[k] * s);
          q[k] = static_cast<int8_t>(std::max(-127.0f, std::min(127.0f, v)));
        }
      }
    }
  });
}

}  // namespace

RowQuant quantize_rows_int8(const at::Tensor& x2d, double threshold) {
  QSAE_CHECK_RANGE(x2d.dim() == 2, "quantize_rows_int8: expected a 2-D input, got ", shape_str(x2d.sizes()));
  at::Tensor x = x2d.to(at::kCPU, at::kFloat).contiguous();
  const int64_t M = x.size(0), K = x.size(1);
  RowQuant r{at::empty({M, K}, at::kChar), at::empty({M}, at::kFloat), outlier_columns(x, threshold)};
  std::vector<char> is_out(K, 0);
  for (auto c : r.outlier_cols) is_out[c] = 1;
  quant_rows(x.data_ptr<float>(), M, K, threshold, is_out, r.q.data_ptr<int8_t>(), r.scale.data_ptr<float>());
  return r;
}

at::Tensor linear_int8(const at::Tensor& x, const Int8Weight& w, const at::Tensor& bias, double threshold,
                       at::ScalarType compute) {
  QSAE_CHECK(w.CB.defined() && w.SCB.defined(), "linear_int8: the weight is empty");
  QSAE_CHECK_RANGE(w.CB.dim() == 2, "linear_int8: CB must be 2-D [out, in]");
  const int64_t N = w.CB.size(0), K = w.CB.size(1);
  check_x(x, K, "linear_int8");
  if (x.is_cuda()) {
#ifdef QSAE_HAVE_CUDA
    return cuda::linear_int8_cuda(x, w, bias, threshold, compute);
#else
    fail("linear_int8: CUDA input, but qsae was built without CUDA");
#endif
  }
  QSAE_CHECK(w.CB.device().is_cpu(), "linear_int8: input on CPU but the weight is on ", w.CB.device());
  at::Tensor CB = w.CB.contiguous(), SCB = w.SCB.to(at::kFloat).contiguous();
  at::Tensor x2 = x.reshape({-1, K}).to(at::kFloat).contiguous();
  const int64_t M = x2.size(0);
  const std::vector<int64_t> cols = outlier_columns(x2, threshold);
  std::vector<char> is_out(K, 0);
  for (auto c : cols) is_out[c] = 1;
  at::Tensor xq = at::empty({M, K}, at::kChar), rs = at::empty({M}, at::kFloat);
  quant_rows(x2.data_ptr<float>(), M, K, threshold, is_out, xq.data_ptr<int8_t>(), rs.data_ptr<float>());
  at::Tensor acc = at::empty({M, N}, at::kInt);
  {
    const int8_t* pw = CB.data_ptr<int8_t>();
    const int8_t* pxq = xq.data_ptr<int8_t>();
    int32_t* pa = acc.data_ptr<int32_t>();
    const bool avx = use_avx2();
    // Tiles of weight rows so that a tile stays in cache while every input row passes over it.
    const int64_t grain = std::max<int64_t>(8, std::min<int64_t>(256, (int64_t(1) << 17) / std::max<int64_t>(1, K)));
    at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
      for (int64_t t = n0; t < n1; t += grain) {
        const int64_t t1 = std::min(n1, t + grain);
        if (avx) kern::gemm8_avx2(pw, pxq, M, K, pa, N, t, t1);
        else kern::gemm8_generic(pw, pxq, M, K, pa, N, t, t1);
      }
    });
  }
  // Dequantize as int8_mm_dequant does, acc * (row_scale * col_scale) / 127^2, but with the exact 127^2:
  // bitsandbytes' literal 6.200124e-05 is 1.8e-5 (relative) above 1/16129 = 6.2000124e-05, and the LLM.int8
  // references (../shared/reference/*.int8) were made with the exact value (see the int8 test in test_model.cpp).
  // Then the bias, then the outlier columns in fp32 (int8_mixed_scaled_mm: addmm onto the biased int8 part).
  at::Tensor y = acc.to(at::kFloat) * (rs.reshape({-1, 1}) * SCB.reshape({1, -1}));
  y.div_(16129.0f);
  if (bias.defined()) y.add_(bias.to(at::kFloat));
  if (!cols.empty()) {
    at::Tensor idx = at::tensor(cols, at::kLong);
    at::Tensor xo = x2.index_select(1, idx);
    at::Tensor wo = CB.index_select(1, idx).to(at::kFloat) * SCB.reshape({-1, 1}) * 7.874015718698502e-3f;
    y.addmm_(xo, wo.t());
  }
  y = y.reshape(out_shape(x, N));
  return compute == at::kFloat ? y : y.to(compute);
}

}  // namespace qsae::quant
