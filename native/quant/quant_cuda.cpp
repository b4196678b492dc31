// at::Tensor glue for the CUDA kernels (QSAE_QUANT_CUDA_GLUE: compiled only when torch has CUDA): launches on
// torch's current stream. 4-bit: fused GEMV kernel for M <= 16, dequantize + torch matmul otherwise. int8: row
// quantization and int8 x int8 -> int32 kernels, outlier columns through torch matmul in the compute dtype.
#include <c10/cuda/CUDAGuard.h>
#include <torch/version.h>
#include <c10/cuda/CUDAStream.h>

#include "common/error.h"
#include "common/tensor_util.h"
#include "quant/quant.h"
#include "quant/quant_cuda.h"
#include "quant/quant_cuda_glue.h"

namespace qsae::quant::cuda {

namespace {
int out_kind_of(at::ScalarType t) {
  if (t == at::kFloat) return 0;
  if (t == at::kBFloat16) return 1;
  if (t == at::kHalf) return 2;
  fail_type("dequantize_4bit: unsupported output dtype ", c10::toString(t));
}
std::vector<int64_t> out_shape(const at::Tensor& x, int64_t N) {
  auto s = x.sizes().vec();
  s.back() = N;
  return s;
}
}  // namespace

at::Tensor dequantize_4bit_cuda(const Quant4& q, at::ScalarType out) {
  const at::Device dev = q.packed.device();
  c10::cuda::CUDAGuard guard(dev);
  at::Tensor packed = q.packed.contiguous();
  at::Tensor absmax = q.absmax.to(dev, at::kFloat).contiguous();
  const int64_t n = q.numel();
  QSAE_CHECK_RANGE(packed.numel() == (n + 1) / 2 && absmax.numel() == q.nblocks(),
                   "dequantize_4bit: packed data or absmax do not match shape ", shape_str(q.shape));
  at::Tensor o = at::empty({n}, packed.options().dtype(out));
  launch_dequant4(packed.data_ptr<uint8_t>(), absmax.data_ptr<float>(), code_table(q.format).data(), n, q.blocksize,
                  o.data_ptr(), out_kind_of(out), c10::cuda::getCurrentCUDAStream(dev.index()).stream());
  return o.reshape(q.shape);
}

at::Tensor linear_4bit_cuda(const at::Tensor& x, const Quant4& w, const at::Tensor& bias, at::ScalarType compute) {
  const at::Device dev = x.device();
  QSAE_CHECK(w.packed.device() == dev, "linear_4bit: input on ", dev, " but the weight is on ", w.packed.device());
  c10::cuda::CUDAGuard guard(dev);
  const int64_t N = w.shape[0], K = w.shape[1];
  at::Tensor x2 = x.reshape({-1, K});
  const int64_t M = x2.size(0);
  at::Tensor y;
  at::Tensor packed = w.packed.contiguous();
  // The kernel reads 16-byte words: packed data must start 16-byte aligned (a fresh CUDA allocation does).
  if (gemv4_supported(M, K, w.blocksize) && reinterpret_cast<uintptr_t>(packed.data_ptr()) % 16 == 0) {
    at::Tensor xf = x2.to(at::kFloat).contiguous();
    at::Tensor absmax = w.absmax.to(at::kFloat).contiguous();
    y = at::empty({M, N}, xf.options());
    launch_gemv4(packed.data_ptr<uint8_t>(), absmax.data_ptr<float>(), code_table(w.format).data(),
                 xf.data_ptr<float>(), y.data_ptr<float>(), M, N, K, w.blocksize,
                 c10::cuda::getCurrentCUDAStream(dev.index()).stream());
    y = y.to(compute);
    if (bias.defined()) y.add_(bias.to(compute));
  } else {
    at::Tensor wd = dequantize_4bit_cuda(w, compute);
    y = bias.defined() ? at::addmm(bias.to(compute), x2.to(compute), wd.t()) : at::matmul(x2.to(compute), wd.t());
  }
  return y.reshape(out_shape(x, N));
}

at::Tensor linear_int8_cuda(const at::Tensor& x, const Int8Weight& w, const at::Tensor& bias, double threshold,
                            at::ScalarType compute) {
  const at::Device dev = x.device();
  QSAE_CHECK(w.CB.device() == dev, "linear_int8: input on ", dev, " but the weight is on ", w.CB.device());
  c10::cuda::CUDAGuard guard(dev);
  const int64_t N = w.CB.size(0), K = w.CB.size(1);
  at::Tensor x2 = x.reshape({-1, K}).to(at::kFloat).contiguous();
  const int64_t M = x2.size(0);
  auto stream = c10::cuda::getCurrentCUDAStream(dev.index()).stream();
  at::Tensor CB = w.CB.contiguous(), SCB = w.SCB.to(at::kFloat).contiguous();
  at::Tensor flags = at::zeros({K}, x2.options().dtype(at::kByte));
  const float thr = static_cast<float>(threshold);
  launch_find_outliers(x2.data_ptr<float>(), flags.data_ptr<uint8_t>(), M, K, thr, stream);
  at::Tensor xq = at::empty({M, K}, x2.options().dtype(at::kChar));
  at::Tensor rs = at::empty({M}, x2.options());
  launch_quant_rows_int8(x2.data_ptr<float>(), flags.data_ptr<uint8_t>(), xq.data_ptr<int8_t>(), rs.data_ptr<float>(), M,
                         K, thr, stream);
  at::Tensor y;
#if TORCH_VERSION_MAJOR >= 2
  // Many rows (prefill, extraction): cuBLASLt's int8 x int8 -> int32 GEMM, exact like the kernel below, then
  // the same fp32 scaling: acc * (row_scale * SCB) / 127^2. Its shape rules: M > 16, K and N multiples of 8.
  if (M > 16 && K % 8 == 0 && N % 8 == 0 && K >= 16) {
    try {
      y = at::_int_mm(xq, CB.t()).to(at::kFloat).mul_(at::outer(rs, SCB)).div_(16129.0f);
    } catch (const c10::Error&) {
      y = at::Tensor();  // a cuBLASLt without this shape: the kernel below
    }
  }
#endif
  if (!y.defined()) {
    // Few rows (decoding): one warp per output feature, dp4a.
    y = at::empty({M, N}, x2.options());
    launch_gemm_int8(xq.data_ptr<int8_t>(), CB.data_ptr<int8_t>(), rs.data_ptr<float>(), SCB.data_ptr<float>(),
                     y.data_ptr<float>(), M, N, K, stream);
  }
  y = y.to(compute);
  if (bias.defined()) y.add_(bias.to(compute));  // before the outlier part, as on CPU (int8_mixed_scaled_mm)
  if (threshold > 0) {
    at::Tensor cols = flags.nonzero().reshape({-1});
    if (cols.numel() > 0) {
      at::Tensor xo = x.reshape({-1, K}).index_select(1, cols).to(compute);
      at::Tensor wo = (CB.index_select(1, cols).to(at::kFloat) * SCB.reshape({-1, 1}) * 7.874015718698502e-3f).to(compute);
      y.addmm_(xo, wo.t());
    }
  }
  return y.reshape(out_shape(x, N));
}

}  // namespace qsae::quant::cuda
