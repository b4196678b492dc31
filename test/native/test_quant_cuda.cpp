// quant CUDA kernels against the CPU reference on fresh random inputs (skipped without a GPU).
#include "testing.h"

#include "quant/quant.h"

using namespace qsae::quant;

namespace {
bool have_cuda() {
  if (!at::hasCUDA()) {
    MESSAGE("no CUDA device: quant CUDA kernel tests skipped");
    return false;
  }
  return true;
}
double max_rel_err(const at::Tensor& got, const at::Tensor& want) {
  const double scale = want.abs().max().item<double>() + 1e-12;
  return (got.cpu().to(at::kDouble) - want.cpu().to(at::kDouble)).abs().max().item<double>() / scale;
}
}  // namespace

TEST_CASE("quant cuda: dequantize_4bit equals the CPU dequantization exactly") {
  if (!have_cuda()) return;
  at::manual_seed(11);
  for (Format f : {Format::NF4, Format::FP4}) {
    for (int64_t bs : {32, 64, 256}) {
      at::Tensor w = at::randn({97, 130});
      Quant4 q = quantize_4bit(w, f, bs, bs == 64);
      at::Tensor cpu = dequantize_4bit(q);
      Quant4 qc = q.to(at::Device(at::kCUDA, 0));
      CHECK(at::equal(dequantize_4bit(qc).cpu(), cpu));
      CHECK(at::equal(dequantize_4bit(qc, at::kBFloat16).cpu(), cpu.to(at::kBFloat16)));
      CHECK(at::equal(dequantize_4bit(qc, at::kHalf).cpu(), cpu.to(at::kHalf)));
    }
  }
}

TEST_CASE("quant cuda: 4-bit GEMV (batch 1..16) and large-M path against the CPU linear_4bit") {
  if (!have_cuda()) return;
  at::manual_seed(12);
  const at::Device dev(at::kCUDA, 0);
  for (Format f : {Format::NF4, Format::FP4}) {
    for (auto [N, K, bs] : {std::tuple<int64_t, int64_t, int64_t>{256, 512, 64}, {301, 1024, 128}, {64, 96, 32},
                            {33, 100, 64}}) {
      at::Tensor w = at::randn({N, K});
      Quant4 q = quantize_4bit(w, f, bs);
      Quant4 qc = q.to(dev);
      at::Tensor bias = at::randn({N});
      for (int64_t M : {1, 2, 7, 16, 33}) {
        at::Tensor x = at::randn({M, K});
        at::Tensor want = linear_4bit(x, q, bias, at::kFloat);
        at::Tensor got = linear_4bit(x.to(dev), qc, bias.to(dev), at::kFloat);
        CAPTURE(N);
        CAPTURE(K);
        CAPTURE(M);
        CHECK(max_rel_err(got, want) < 1e-4);
        at::Tensor gb = linear_4bit(x.to(dev, at::kBFloat16), qc, bias.to(dev), at::kBFloat16);
        CHECK((gb.scalar_type() == at::kBFloat16));
        CHECK(max_rel_err(gb, want) < 3e-2);
      }
    }
  }
}

TEST_CASE("quant cuda: LLM.int8 (outliers, int8 x int8 -> int32) against the CPU linear_int8") {
  if (!have_cuda()) return;
  at::manual_seed(13);
  const at::Device dev(at::kCUDA, 0);
  // {200, 256, 512}: M > 16 with K, N multiples of 8 takes the cuBLASLt int8 GEMM (at::_int_mm, torch >= 2).
  for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 64, 128}, {9, 130, 256}, {40, 33, 100}, {200, 256, 512}}) {
    Int8Weight w = quantize_int8(at::randn({N, K}));
    Int8Weight wc = w.to(dev);
    at::Tensor x = at::randn({M, K}) * 2;
    x.index_put_({0, 3}, 8.0f);
    at::Tensor bias = at::randn({N});
    at::Tensor want = linear_int8(x, w, bias, 6.0, at::kFloat);
    at::Tensor got = linear_int8(x.to(dev), wc, bias.to(dev), 6.0, at::kFloat);
    CAPTURE(M);
    CAPTURE(K);
    CHECK(max_rel_err(got, want) < 1e-5);
    CHECK(max_rel_err(linear_int8(x.to(dev), wc, {}, 0.0, at::kFloat), linear_int8(x, w, {}, 0.0, at::kFloat)) < 1e-5);
  }
}
