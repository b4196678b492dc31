// quant: bitsandbytes formats byte for byte against ../shared/reference/bnb, hand-computed cases, the
// serialization layout and its errors, and the CPU kernels (fused/blocked, AVX2 and portable) against plain
// ATen references on random inputs.
#include "testing.h"
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <random>

#include "common/error.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "quant/quant.h"

using namespace qsae;
using namespace qsae::quant;

namespace {

const std::string kBnb = "../shared/reference/bnb/";

bool have_bnb() {
  static const bool ok = file_exists(kBnb + "input.safetensors");
  if (!ok) MESSAGE("../shared/reference/bnb not found: bitsandbytes reference tests skipped");
  return ok;
}

bool bytes_equal(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor x = a.contiguous(), y = b.contiguous();
  return x.nbytes() == y.nbytes() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

using testing::error_of;

std::string temp_path(const std::string& name) { return "/tmp/qsae-quant-" + std::to_string(::getpid()) + "-" + name; }

// x @ W^T (+ bias) in float64, the independent reference for the kernels.
at::Tensor ref_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias = {}) {
  at::Tensor y = at::matmul(x.to(at::kDouble), w.to(at::kDouble).t());
  if (bias.defined()) y = y + bias.to(at::kDouble);
  return y;
}

double max_rel_err(const at::Tensor& got, const at::Tensor& want) {
  const double scale = want.abs().max().item<double>() + 1e-12;
  return (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>() / scale;
}

}  // namespace

TEST_CASE("quant: NF4/FP4 reproduce bitsandbytes byte for byte (packed codes, absmax, dequant)") {
  if (!have_bnb()) return;
  auto in = SafetensorsFile::open(kBnb + "input.safetensors");
  for (std::string fmt : {"nf4", "fp4"}) {
    for (int bs : {64, 128}) {
      auto ref = SafetensorsFile::open(kBnb + fmt + "-bs" + std::to_string(bs) + ".safetensors");
      CHECK(ref->metadata().at("quant_type") == fmt);
      for (const auto& t : in->tensors()) {
        CAPTURE(fmt);
        CAPTURE(bs);
        CAPTURE(t.name);
        const at::Tensor w = in->get(t.name);
        Quant4 q = quantize_4bit(w, parse_format(fmt), bs);
        CHECK(bytes_equal(q.packed, ref->get(t.name).reshape({-1})));
        CHECK(bytes_equal(q.absmax, ref->get(t.name + ".absmax")));
        at::Tensor dq = dequantize_4bit(q);
        CHECK(dq.sizes() == w.sizes());
        CHECK(at::equal(dq, ref->get(t.name + ".dequant")));
        // Serialized layout: W is U8 [ceil(n/2), 1] exactly as the reference stores it.
        std::vector<std::pair<std::string, at::Tensor>> out;
        append_4bit_tensors(t.name, q, out);
        CHECK(out[0].first == t.name);
        CHECK(out[0].second.sizes() == ref->get(t.name).sizes());
      }
    }
  }
}

TEST_CASE("quant: LLM.int8 weights reproduce bitsandbytes (CB, SCB) byte for byte") {
  if (!have_bnb()) return;
  auto in = SafetensorsFile::open(kBnb + "input.safetensors");
  auto ref = SafetensorsFile::open(kBnb + "int8.safetensors");
  for (const auto& t : in->tensors()) {
    CAPTURE(t.name);
    const std::string prefix = t.name.substr(0, t.name.size() - std::string(".weight").size());
    Int8Weight w = quantize_int8(in->get(t.name));
    CHECK(bytes_equal(w.CB, ref->get(prefix + ".weight")));
    CHECK(bytes_equal(w.SCB, ref->get(prefix + ".SCB")));
  }
}

TEST_CASE("quant: hand-computed NF4 and FP4 codes, ties, padding, zero blocks") {
  // One block of 32: absmax 2. Scaled values chosen on and around NF4 midpoints.
  std::vector<float> v(33, 0.0f);
  v[0] = 2.0f;                       // 1.0 -> code 15
  v[1] = -2.0f;                      // -1.0 -> code 0
  v[2] = 0.0f;                       // 0 -> code 7
  const float mid = (0.07958029955625534f + 0.0f) / 2.0f;  // midpoint between codes 7 and 8
  v[3] = mid * 2.0f;                 // exactly on the midpoint -> the lower code (7)
  v[4] = std::nextafter(mid, 1.0f) * 2.0f;  // just above -> 8
  v[5] = 0.5626170039176941f * 2.0f;        // exactly code 13
  v[32] = 3.0f;                      // second (partial) block of one element: code 15, padded with code 7
  at::Tensor w = at::from_blob(v.data(), {33}, at::kFloat).clone();
  Quant4 q = quantize_4bit(w, Format::NF4, 32);
  const uint8_t* p = q.packed.data_ptr<uint8_t>();
  CHECK(q.packed.numel() == 17);
  CHECK(p[0] == 0xF0);
  CHECK(p[1] == 0x77);
  CHECK(p[2] == 0x8D);
  CHECK(p[16] == 0xF7);
  CHECK(q.absmax[0].item<float>() == 2.0f);
  CHECK(q.absmax[1].item<float>() == 3.0f);
  // FP4: code 3 is +1, code 11 is -1; tiny positive values sit between +0 (code 0) and 0.0052 (code 1) and go
  // to code 8 (the second zero in the stable order), as bitsandbytes does; the zero pad code is 0.
  std::vector<float> f = {1.0f, -1.0f, 0.001f, -0.001f, 0.25f, 0.0f, 0.1667f, -0.6667f};
  f.resize(64, 0.0f);
  at::Tensor wf = at::from_blob(f.data(), {64}, at::kFloat).clone();
  Quant4 qf = quantize_4bit(wf, Format::FP4, 64);
  const uint8_t* pf = qf.packed.data_ptr<uint8_t>();
  CHECK(pf[0] == 0x3B);
  CHECK(pf[1] == 0x80);
  CHECK(pf[2] == 0x70);
  CHECK(pf[3] == 0x6A);
  // An all-zero block: absmax 0, every code the zero code, dequantized to zeros (not NaN).
  Quant4 qz = quantize_4bit(at::zeros({2, 64}), Format::NF4, 64);
  CHECK(qz.packed[0].item<uint8_t>() == 0x77);
  CHECK(dequantize_4bit(qz).abs().sum().item<float>() == 0.0f);
}

TEST_CASE("quant: bf16 and fp16 inputs quantize like their fp32 values; dequantize to any dtype") {
  at::manual_seed(1);
  at::Tensor w = at::randn({48, 96}).to(at::kBFloat16);
  Quant4 a = quantize_4bit(w, Format::NF4, 64), b = quantize_4bit(w.to(at::kFloat), Format::NF4, 64);
  CHECK(bytes_equal(a.packed, b.packed));
  CHECK(bytes_equal(a.absmax, b.absmax));
  CHECK((a.dtype == at::kBFloat16));
  CHECK((dequantize_4bit(a, at::kBFloat16).scalar_type() == at::kBFloat16));
  at::Tensor h = at::randn({17, 31}).to(at::kHalf);
  CHECK(bytes_equal(quantize_4bit(h, Format::FP4, 32).packed, quantize_4bit(h.to(at::kFloat), Format::FP4, 32).packed));
}

TEST_CASE("quant: int8 of bf16/fp16 weights equals int8 of their fp32 values") {
  at::manual_seed(6);
  at::Tensor w = at::randn({19, 77});
  for (auto t : {at::kBFloat16, at::kHalf}) {
    at::Tensor wl = w.to(t);
    Int8Weight a = quantize_int8(wl), b = quantize_int8(wl.to(at::kFloat));
    CHECK(bytes_equal(a.CB, b.CB));
    CHECK(bytes_equal(a.SCB, b.SCB));
  }
}

TEST_CASE("quant: the signed dynamic map matches create_dynamic_map evaluated in float64") {
  const auto& m = dynamic_map_signed();
  std::vector<double> d;
  for (int i = 0; i < 7; ++i) {
    const int items = (1 << i) + 1;
    for (int j = 0; j + 1 < items; ++j) {
      const double b0 = 0.1 + 0.9 * j / (items - 1), b1 = 0.1 + 0.9 * (j + 1) / (items - 1);
      const double mean = (b0 + b1) / 2, s = std::pow(10.0, -6 + i);
      d.push_back(s * mean);
      d.push_back(-s * mean);
    }
  }
  d.push_back(0);
  d.push_back(1);
  std::sort(d.begin(), d.end());
  REQUIRE(d.size() == 256);
  for (int i = 0; i < 256; ++i) {
    CAPTURE(i);
    CHECK(std::fabs(m[i] - d[i]) <= 1e-6 * std::fabs(d[i]) + 1e-12);
    if (i) CHECK(m[i] > m[i - 1]);
  }
}

TEST_CASE("quant: double quantization of absmax (8-bit dynamic, blocksize 256) and its serialization") {
  at::manual_seed(2);
  at::Tensor w = at::randn({300, 128});  // 600 blocks of 64 -> 3 nested blocks (the last partial)
  Quant4 plain = quantize_4bit(w, Format::NF4, 64, false);
  Quant4 q = quantize_4bit(w, Format::NF4, 64, true);
  CHECK(bytes_equal(q.packed, plain.packed));  // codes do not depend on the statistics' storage
  CHECK(q.quant_absmax.numel() == 600);
  CHECK(q.nested_absmax.numel() == 3);
  CHECK(std::fabs(q.offset - plain.absmax.mean().item<float>()) < 1e-5);
  // The 8-bit dynamic map keeps absmax within a fraction of a percent.
  CHECK(max_rel_err(q.absmax, plain.absmax) < 0.01);
  // dequantize with the cached absmax == code * absmax
  CHECK(max_rel_err(dequantize_4bit(q), dequantize_4bit(plain)) < 0.01);

  std::vector<std::pair<std::string, at::Tensor>> ts;
  append_4bit_tensors("m.w.weight", q, ts);
  std::map<std::string, at::Tensor> byname(ts.begin(), ts.end());
  REQUIRE(byname.count("m.w.weight.quant_state.bitsandbytes__nf4"));
  at::Tensor blob = byname["m.w.weight.quant_state.bitsandbytes__nf4"];
  std::string js((const char*)blob.data_ptr<uint8_t>(), blob.numel());
  CHECK(js.rfind("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [300, 128], "
                 "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": ",
                 0) == 0);
  CHECK((byname["m.w.weight.absmax"].scalar_type() == at::kByte));
  CHECK(byname["m.w.weight.nested_quant_map"].numel() == 256);
  CHECK(byname["m.w.weight.quant_map"].numel() == 16);
  // Through a file and back.
  const std::string path = temp_path("dq.safetensors");
  save_safetensors(path, ts);
  auto f = SafetensorsFile::open(path);
  Quant4 back = load_4bit("m.w.weight", [&](const std::string& n) { return f->contains(n) ? f->get(n) : at::Tensor(); });
  CHECK(back.double_quant);
  CHECK(back.offset == q.offset);
  CHECK(back.shape == q.shape);
  CHECK(at::equal(back.absmax, q.absmax));
  CHECK(at::equal(dequantize_4bit(back), dequantize_4bit(q)));
  std::remove(path.c_str());
}

TEST_CASE("quant: 4-bit and int8 serialization round trips; quant_state JSON as bitsandbytes writes it") {
  at::manual_seed(3);
  at::Tensor w = at::randn({10, 70}).to(at::kHalf);
  Quant4 q = quantize_4bit(w, Format::FP4, 128);
  CHECK(quant_state_json(q) == "{\"quant_type\": \"fp4\", \"blocksize\": 128, \"dtype\": \"float16\", \"shape\": [10, 70]}");
  std::vector<std::pair<std::string, at::Tensor>> ts;
  append_4bit_tensors("a.weight", q, ts);
  std::map<std::string, at::Tensor> m(ts.begin(), ts.end());
  CHECK(m.size() == 4);
  CHECK(m["a.weight"].sizes() == at::IntArrayRef({350, 1}));
  // quant_map as bitsandbytes' get_4bit_type('fp4'): the e2m1 values / 12.
  CHECK(m["a.weight.quant_map"][2].item<float>() == 8.0f / 12.0f);
  Quant4 back = load_4bit_from("a.weight", m);
  CHECK(back.format == Format::FP4);
  CHECK((back.dtype == at::kHalf));
  CHECK(at::equal(dequantize_4bit(back), dequantize_4bit(q)));

  Int8Weight i8 = quantize_int8(at::randn({5, 9}));
  std::vector<std::pair<std::string, at::Tensor>> ti;
  append_int8_tensors("p", i8, ti);
  CHECK(ti[0].first == "p.SCB");
  CHECK(ti[1].first == "p.weight");
  Int8Weight ib = load_int8("p", ti[1].second, ti[0].second);
  CHECK(at::equal(ib.CB, i8.CB));
  CHECK(max_rel_err(dequantize_int8(ib), ti[1].second.to(at::kFloat) * i8.SCB.reshape({-1, 1}) / 127.0) < 1e-6);
}

TEST_CASE("quant: bad input gives one clear error naming the tensor") {
  at::Tensor w = at::randn({8, 64});
  CHECK(error_of([&] { quantize_4bit(w, Format::NF4, 48); }).find("blocksize 48 is not a power of two") !=
        std::string::npos);
  CHECK(error_of([&] { quantize_4bit(w, Format::NF4, 16); }).find("32..4096") != std::string::npos);
  CHECK(error_of([&] { quantize_4bit(w, Format::NF4, 8192); }).find("32..4096") != std::string::npos);
  CHECK(error_of([&] { quantize_4bit(at::ones({4, 4}, at::kInt), Format::NF4, 64); }).find("expected a floating") !=
        std::string::npos);
  CHECK(error_of([&] { quantize_int8(at::randn({4})); }).find("2-D") != std::string::npos);
  CHECK(error_of([&] { parse_format("int3"); }).find("unknown 4-bit quant type 'int3'") != std::string::npos);

  Quant4 q = quantize_4bit(w, Format::NF4, 64);
  std::vector<std::pair<std::string, at::Tensor>> ts;
  append_4bit_tensors("layer.weight", q, ts);
  std::map<std::string, at::Tensor> m(ts.begin(), ts.end());
  {
    auto bad = m;
    bad["layer.weight"] = bad["layer.weight"].narrow(0, 0, 100);
    const std::string e = error_of([&] { load_4bit_from("layer.weight", bad); });
    CHECK(e.find("layer.weight: packed data has 100 bytes but shape [8, 64] needs 256") != std::string::npos);
  }
  {
    auto bad = m;
    bad["layer.weight.quant_state.bitsandbytes__int3"] = bad["layer.weight.quant_state.bitsandbytes__nf4"];
    CHECK(error_of([&] { load_4bit_from("layer.weight", bad); }).find("layer.weight: unknown quant type 'int3'") !=
          std::string::npos);
  }
  {
    auto bad = m;
    std::string js = "{\"quant_type\": \"nf5\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [8, 64]}";
    at::Tensor blob = at::empty({(int64_t)js.size()}, at::kByte);
    std::memcpy(blob.data_ptr(), js.data(), js.size());
    bad["layer.weight.quant_state.bitsandbytes__nf4"] = blob;
    CHECK(error_of([&] { load_4bit_from("layer.weight", bad); }).find("layer.weight") != std::string::npos);
    CHECK(error_of([&] { load_4bit_from("layer.weight", bad); }).find("nf5") != std::string::npos);
  }
  {
    auto bad = m;
    std::string js = "{\"quant_type\": \"nf4\", \"blocksize\": 100, \"dtype\": \"float32\", \"shape\": [8, 64]}";
    at::Tensor blob = at::empty({(int64_t)js.size()}, at::kByte);
    std::memcpy(blob.data_ptr(), js.data(), js.size());
    bad["layer.weight.quant_state.bitsandbytes__nf4"] = blob;
    CHECK(error_of([&] { load_4bit_from("layer.weight", bad); }).find("layer.weight: blocksize 100") !=
          std::string::npos);
  }
  {
    auto bad = m;
    bad["layer.weight"] = bad["layer.weight"].to(at::kChar);
    CHECK(error_of([&] { load_4bit_from("layer.weight", bad); }).find("layer.weight: packed 4-bit data must be U8") !=
          std::string::npos);
  }
  CHECK(error_of([&] { load_int8("p", at::zeros({3, 4}, at::kFloat), at::ones({3})); }).find("p.weight: expected I8") !=
        std::string::npos);
  CHECK(error_of([&] { load_int8("p", at::zeros({3, 4}, at::kChar), at::ones({2})); }).find("p.SCB has 2 values") !=
        std::string::npos);
  CHECK(error_of([&] { linear_4bit(at::randn({2, 63}), q, {}, at::kFloat); }).find("expected [..., 64]") !=
        std::string::npos);
}

TEST_CASE("quant: linear_4bit (fused GEMV, blocked GEMM; AVX2 and portable) against float64 references") {
  at::manual_seed(4);
  struct Case {
    int64_t N, K, bs;
  };
  for (Case c : {Case{64, 256, 64}, Case{33, 128, 32}, Case{7, 100, 64}, Case{300, 512, 128}, Case{1000, 64, 4096}}) {
    for (Format f : {Format::NF4, Format::FP4}) {
      at::Tensor w = at::randn({c.N, c.K}).to(at::kBFloat16);
      Quant4 q = quantize_4bit(w, f, c.bs);
      at::Tensor wd = dequantize_4bit(q);
      at::Tensor bias = at::randn({c.N});
      for (int64_t M : {1, 2, 5, 40}) {
        at::Tensor x = at::randn({M, c.K});
        at::Tensor want = ref_linear(x, wd, bias);
        for (std::string k : {"auto", "generic"}) {
          CAPTURE(c.N);
          CAPTURE(c.K);
          CAPTURE(c.bs);
          CAPTURE(M);
          CAPTURE(k);
          set_cpu_kernel(k);
          at::Tensor y = linear_4bit(x, q, bias, at::kFloat);
          CHECK(y.sizes() == at::IntArrayRef({M, c.N}));
          CHECK(max_rel_err(y, want) < 2e-5);
        }
        set_cpu_kernel("auto");
      }
    }
  }
  // 3-D input, bf16 input, no bias, bf16 compute.
  Quant4 q = quantize_4bit(at::randn({24, 64}), Format::NF4, 64);
  at::Tensor x = at::randn({2, 3, 64}).to(at::kBFloat16);
  at::Tensor y = linear_4bit(x, q, {}, at::kBFloat16);
  CHECK(y.sizes() == at::IntArrayRef({2, 3, 24}));
  CHECK((y.scalar_type() == at::kBFloat16));
  CHECK(max_rel_err(y, ref_linear(x, dequantize_4bit(q))) < 1e-2);
  MESSAGE("quant CPU kernel: " << cpu_kernel());
}

TEST_CASE("quant: linear_int8 (outlier decomposition, int8 x int8 -> int32) against an explicit reference") {
  at::manual_seed(5);
  for (int64_t M : {1, 3, 17}) {
    for (int64_t K : {64, 100}) {
      const int64_t N = 37;
      at::Tensor wf = at::randn({N, K});
      Int8Weight w = quantize_int8(wf);
      at::Tensor x = at::randn({M, K}) * 2;
      x.index_put_({0, 5}, 9.0f);  // an outlier: column 5 goes to the fp32 path for every row
      if (M > 1) x.index_put_({M - 1, 11}, -7.5f);
      at::Tensor bias = at::randn({N});
      const double thr = 6.0;
      // Reference, written from the definition: outlier columns, row scale over |x| < thr, round half even.
      at::Tensor is_out = (x.abs() >= thr).any(0);
      at::Tensor xin = x.masked_fill(x.abs() >= thr, 0.0);
      at::Tensor rs = std::get<0>(xin.abs().max(1));
      // Scale as torch evaluates bitsandbytes' `127.0 / row_stats`: reciprocal(row_stats) * 127 in fp32.
      at::Tensor xq =
          at::round(xin * (rs.reciprocal() * 127.0f).reshape({-1, 1})).masked_fill(is_out.reshape({1, -1}), 0.0);
      at::Tensor acc = at::matmul(xq.to(at::kDouble), w.CB.to(at::kDouble).t());
      // Exact 1/127^2 (bitsandbytes' literal 6.200124e-05 is 1.8e-5 too large; the LLM.int8 model references
      // in ../shared were made with the exact value, see native/quant/linear.cpp).
      at::Tensor want = acc * (rs.to(at::kDouble).reshape({-1, 1}) * w.SCB.to(at::kDouble).reshape({1, -1})) / 16129.0;
      at::Tensor wdq = w.CB.to(at::kDouble) * w.SCB.to(at::kDouble).reshape({-1, 1}) / 127.0;
      at::Tensor cols = is_out.nonzero().reshape({-1});
      want = want + at::matmul(x.to(at::kDouble).index_select(1, cols), wdq.index_select(1, cols).t()) + bias.to(at::kDouble);
      RowQuant rq = quantize_rows_int8(x, thr);
      CHECK(rq.outlier_cols.size() == (size_t)cols.numel());
      CHECK(at::equal(rq.q.to(at::kFloat), xq));
      at::Tensor y_auto = linear_int8(x, w, bias, thr, at::kFloat);
      set_cpu_kernel("generic");
      at::Tensor y_gen = linear_int8(x, w, bias, thr, at::kFloat);
      set_cpu_kernel("auto");
      CAPTURE(M);
      CAPTURE(K);
      CHECK(at::equal(y_auto, y_gen));  // integer accumulation: identical
      CHECK(max_rel_err(y_auto, want) < 1e-5);
      // Without outlier decomposition everything goes through int8.
      at::Tensor y0 = linear_int8(x, w, {}, 0.0, at::kFloat);
      CHECK(max_rel_err(y0, ref_linear(x, dequantize_int8(w))) < 0.1);
    }
  }
}
