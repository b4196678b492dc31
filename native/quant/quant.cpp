// bitsandbytes-compatible formats: 4-bit blockwise quantize/dequantize, 8-bit blockwise (double quant),
// LLM.int8 weights, and the HF + bitsandbytes safetensors layout. See quant.h for the format facts.
#include "quant/quant.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "common/tensor_util.h"
#include "io/json.h"
#include "quant/quant_cuda_glue.h"

namespace qsae::quant {

namespace {

// NF4 (code 0..15), as bitsandbytes defines it.
constexpr std::array<float, 16> kNF4 = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f,
    1.0f};
// FP4 (1 sign, 2 exponent, 1 mantissa bits, normalized by its max 12) as bitsandbytes' reference kernels
// (backends/default/ops.py) use it to quantize and dequantize; code 8 is +0.
constexpr std::array<float, 16> kFP4 = {0.0f,  0.0052f,  0.6667f,  1.0f,  0.3333f,  0.5f,  0.1667f,  0.25f,
                                        0.0f, -0.0052f, -0.6667f, -1.0f, -0.3333f, -0.5f, -0.1667f, -0.25f};

// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), sorted; the float32 bit
// patterns as torch computes them (linspace/means in float32). Checked against an independent float64
// evaluation of the same formula in test_quant.cpp.
constexpr uint32_t kDynamicSignedBits[256] = {
#include "quant/dynamic_map.inc"
};

struct Sorted4 {
  std::array<int, 16> order;   // stable ascending order of the table
  std::array<float, 15> mids;  // float32 midpoints between neighbours in that order
};

Sorted4 make_sorted(const std::array<float, 16>& t) {
  Sorted4 s;
  for (int i = 0; i < 16; ++i) s.order[i] = i;
  std::stable_sort(s.order.begin(), s.order.end(), [&](int a, int b) { return t[a] < t[b]; });
  for (int i = 0; i < 15; ++i) s.mids[i] = (t[s.order[i]] + t[s.order[i + 1]]) / 2.0f;
  return s;
}

const Sorted4& sorted_of(Format f) {
  static const Sorted4 nf4 = make_sorted(kNF4), fp4 = make_sorted(kFP4);
  return f == Format::NF4 ? nf4 : fp4;
}

// Code of a scaled value in [-1, 1]: the nearest table entry, midpoints as thresholds, ties to the lower.
inline uint8_t encode4(const Sorted4& s, float v) {
  int k = 0;
  for (int i = 0; i < 15; ++i) k += v > s.mids[i];
  return static_cast<uint8_t>(s.order[k]);
}

template <class T>
inline float to_f(T v) {
  return static_cast<float>(v);
}

void check_float_input(const at::Tensor& w, const char* what) {
  QSAE_CHECK_TYPE(w.defined(), what, ": tensor is undefined");
  auto t = w.scalar_type();
  QSAE_CHECK_TYPE(t == at::kFloat || t == at::kBFloat16 || t == at::kHalf || t == at::kDouble, what,
                  ": expected a floating tensor (F32, BF16, F16), got ", c10::toString(t));
  QSAE_CHECK_RANGE(w.numel() > 0, what, ": tensor is empty");
}

std::string dtype_py(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kDouble: return "float64";
    default: fail_type("quant_state: unsupported dtype ", c10::toString(t));
  }
}
at::ScalarType dtype_from_py(const std::string& s, const std::string& what) {
  if (s == "float32") return at::kFloat;
  if (s == "bfloat16") return at::kBFloat16;
  if (s == "float16") return at::kHalf;
  if (s == "float64") return at::kDouble;
  fail_type(what, ": unknown dtype '", s, "' in quant_state");
}

// Python's repr() of a float (shortest round-trip digits; exponent form below 1e-4 and from 1e16).
std::string py_float_repr(double v) {
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  // sci: [-]d[.ddd]e[+-]XX
  bool neg = sci[0] == '-';
  if (neg) sci = sci.substr(1);
  auto epos = sci.find('e');
  std::string mant = sci.substr(0, epos);
  int exp = std::stoi(sci.substr(epos + 1));
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out;
  if (exp < -4 || exp >= 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  } else if (exp < 0) {
    out = "0." + std::string(-exp - 1, '0') + digits;
  } else {
    if ((int)digits.size() <= exp + 1) {
      out = digits + std::string(exp + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
    }
  }
  return neg ? "-" + out : out;
}

}  // namespace

const char* format_name(Format f) { return f == Format::NF4 ? "nf4" : "fp4"; }

Format parse_format(const std::string& s, const std::string& what) {
  if (s == "nf4") return Format::NF4;
  if (s == "fp4") return Format::FP4;
  fail_type(what, ": unknown 4-bit quant type '", s, "' (expected nf4 or fp4)");
}

const std::array<float, 16>& code_table(Format f) { return f == Format::NF4 ? kNF4 : kFP4; }

// What bitsandbytes stores as quant_map: get_4bit_type(quant_type) (FP4: the e2m1 values / 12).
static at::Tensor quant_map_tensor(Format f) {
  at::Tensor t = at::empty({16}, at::kFloat);
  float* p = t.data_ptr<float>();
  if (f == Format::NF4) {
    std::copy(kNF4.begin(), kNF4.end(), p);
  } else {
    const float v[16] = {0, 0.0625f, 8, 12, 4, 6, 2, 3, 0, -0.0625f, -8, -12, -4, -6, -2, -3};
    for (int i = 0; i < 16; ++i) p[i] = v[i] / 12.0f;
  }
  return t;
}

const std::array<float, 256>& dynamic_map_signed() {
  static const std::array<float, 256> m = [] {
    std::array<float, 256> a{};
    for (int i = 0; i < 256; ++i) std::memcpy(&a[i], &kDynamicSignedBits[i], 4);
    return a;
  }();
  return m;
}

void check_blocksize(int64_t blocksize, const std::string& what) {
  QSAE_CHECK_RANGE(blocksize >= 32 && blocksize <= 4096 && (blocksize & (blocksize - 1)) == 0, what,
                   ": blocksize ", blocksize, " is not a power of two in 32..4096");
}

int64_t Quant4::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}
int64_t Quant4::nblocks() const { return (numel() + blocksize - 1) / blocksize; }
int64_t Quant4::bytes() const {
  int64_t b = 0;
  for (const at::Tensor* t : {&packed, &absmax, &nested_absmax, &nested_quant_map, &quant_absmax})
    if (t->defined()) b += t->nbytes();
  return b;
}
Quant4 Quant4::to(const at::Device& device) const {
  Quant4 q = *this;
  for (at::Tensor* t : {&q.packed, &q.absmax, &q.nested_absmax, &q.nested_quant_map, &q.quant_absmax})
    if (t->defined()) *t = t->to(device);
  return q;
}

int64_t Int8Weight::bytes() const {
  return (CB.defined() ? CB.nbytes() : 0) + (SCB.defined() ? SCB.nbytes() : 0);
}
Int8Weight Int8Weight::to(const at::Device& device) const { return {CB.to(device), SCB.to(device)}; }

// ---------------------------------------------------------------- 8-bit blockwise (dynamic map)

std::pair<at::Tensor, at::Tensor> quantize_blockwise_8bit(const at::Tensor& x_in, int64_t blocksize) {
  check_float_input(x_in, "quantize_blockwise");
  at::Tensor x = x_in.to(at::kCPU, at::kFloat).contiguous().reshape(-1);
  const int64_t n = x.numel(), nb = (n + blocksize - 1) / blocksize;
  at::Tensor codes = at::empty({n}, at::kByte), absmax = at::empty({nb}, at::kFloat);
  const float* px = x.data_ptr<float>();
  uint8_t* pc = codes.data_ptr<uint8_t>();
  float* pa = absmax.data_ptr<float>();
  const auto& code = dynamic_map_signed();
  at::parallel_for(0, nb, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t s = b * blocksize, e = std::min(n, s + blocksize);
      float am = 0;
      for (int64_t i = s; i < e; ++i) am = std::max(am, std::fabs(px[i]));
      pa[b] = am;
      const float inv = am > 0 ? 1.0f / am : 0.0f;
      for (int64_t i = s; i < e; ++i) {
        float v = std::min(1.0f, std::max(-1.0f, px[i] * inv));
        // argmin |v - code[j]| with ties to the lower index (code is sorted ascending).
        int64_t hi = std::lower_bound(code.begin(), code.end(), v) - code.begin();
        int64_t best;
        if (hi == 0) best = 0;
        else if (hi == 256) best = 255;
        else best = std::fabs(v - code[hi - 1]) <= std::fabs(v - code[hi]) ? hi - 1 : hi;
        pc[i] = static_cast<uint8_t>(best);
      }
    }
  });
  return {codes, absmax};
}

at::Tensor dequantize_blockwise_8bit(const at::Tensor& codes_in, const at::Tensor& absmax_in, const at::Tensor& map_in,
                                     int64_t blocksize) {
  at::Tensor codes = codes_in.to(at::kCPU).contiguous().reshape(-1);
  at::Tensor absmax = absmax_in.to(at::kCPU, at::kFloat).contiguous();
  at::Tensor map = map_in.to(at::kCPU, at::kFloat).contiguous();
  QSAE_CHECK_TYPE(codes.scalar_type() == at::kByte, "dequantize_blockwise: codes must be U8");
  QSAE_CHECK_RANGE(map.numel() == 256, "dequantize_blockwise: the code map must have 256 entries, got ", map.numel());
  const int64_t n = codes.numel();
  QSAE_CHECK_RANGE(absmax.numel() == (n + blocksize - 1) / blocksize, "dequantize_blockwise: ", absmax.numel(),
                   " absmax values for ", n, " codes with blocksize ", blocksize);
  at::Tensor out = at::empty({n}, at::kFloat);
  const uint8_t* pc = codes.data_ptr<uint8_t>();
  const float* pa = absmax.data_ptr<float>();
  const float* pm = map.data_ptr<float>();
  float* po = out.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) po[i] = pm[pc[i]] * pa[i / blocksize];
  return out;
}

// ---------------------------------------------------------------- 4-bit

namespace {
template <class T>
void quantize4_impl(const T* px, int64_t n, int64_t bs, const Sorted4& srt, uint8_t zero_code, uint8_t* packed,
                    float* absmax) {
  const int64_t nb = (n + bs - 1) / bs;
  at::parallel_for(0, nb, std::max<int64_t>(1, 16384 / bs), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t s = b * bs, e = std::min(n, s + bs);
      float am = 0;
      for (int64_t i = s; i < e; ++i) am = std::max(am, std::fabs(to_f(px[i])));
      absmax[b] = am;
      const float inv = 1.0f / am;
      auto code = [&](int64_t i) -> uint8_t {
        if (i >= e) return zero_code;
        if (am == 0) return zero_code;
        float v = std::min(1.0f, std::max(-1.0f, to_f(px[i]) * inv));
        return encode4(srt, v);
      };
      for (int64_t i = s; i < e; i += 2) packed[i / 2] = static_cast<uint8_t>((code(i) << 4) | code(i + 1));
    }
  });
}
}  // namespace

Quant4 quantize_4bit(const at::Tensor& w_in, Format f, int64_t blocksize, bool double_quant) {
  check_float_input(w_in, "quantize_4bit");
  check_blocksize(blocksize, "quantize_4bit");
  at::Tensor w = w_in.device().is_cpu() ? w_in.contiguous() : w_in.to(at::kCPU).contiguous();
  Quant4 q;
  q.format = f;
  q.blocksize = blocksize;
  q.shape = w.sizes().vec();
  q.dtype = w.scalar_type();
  const int64_t n = w.numel(), nb = (n + blocksize - 1) / blocksize;
  q.packed = at::empty({(n + 1) / 2}, at::kByte);
  q.absmax = at::empty({nb}, at::kFloat);
  const Sorted4& srt = sorted_of(f);
  const uint8_t zero_code = encode4(srt, 0.0f);
  uint8_t* pp = q.packed.data_ptr<uint8_t>();
  float* pa = q.absmax.data_ptr<float>();
  switch (w.scalar_type()) {
    case at::kFloat: quantize4_impl(w.data_ptr<float>(), n, blocksize, srt, zero_code, pp, pa); break;
    case at::kBFloat16: quantize4_impl(w.data_ptr<at::BFloat16>(), n, blocksize, srt, zero_code, pp, pa); break;
    case at::kHalf: quantize4_impl(w.data_ptr<at::Half>(), n, blocksize, srt, zero_code, pp, pa); break;
    case at::kDouble: {
      at::Tensor wf = w.to(at::kFloat);
      quantize4_impl(wf.data_ptr<float>(), n, blocksize, srt, zero_code, pp, pa);
      break;
    }
    default: fail_type("quantize_4bit: unsupported dtype");
  }
  if (double_quant) {
    // offset = mean(absmax); (absmax - offset) 8-bit blockwise with the signed dynamic map, blocksize 256.
    double sum = 0;
    for (int64_t i = 0; i < nb; ++i) sum += pa[i];
    q.double_quant = true;
    q.offset = static_cast<float>(sum / nb);
    q.nested_blocksize = 256;
    auto [codes, nabs] = quantize_blockwise_8bit(q.absmax - q.offset, 256);
    q.quant_absmax = codes;
    q.nested_absmax = nabs;
    q.nested_quant_map = at::empty({256}, at::kFloat);
    std::memcpy(q.nested_quant_map.data_ptr<float>(), dynamic_map_signed().data(), 256 * sizeof(float));
    // What bitsandbytes computes in dequantize_4bit: dequantize_blockwise(...) + offset.
    q.absmax = dequantize_blockwise_8bit(codes, nabs, q.nested_quant_map, 256) + q.offset;
  }
  return q;
}

at::Tensor dequantize_4bit(const Quant4& q_in, at::ScalarType out_dtype) {
  QSAE_CHECK_TYPE(q_in.packed.defined() && q_in.absmax.defined(), "dequantize_4bit: the quantized tensor is empty");
#ifdef QSAE_HAVE_CUDA
  if (q_in.packed.is_cuda()) return cuda::dequantize_4bit_cuda(q_in, out_dtype);
#endif
  const Quant4 q = q_in.packed.device().is_cpu() ? q_in : q_in.to(at::kCPU);
  const int64_t n = q.numel(), bs = q.blocksize, nb = q.nblocks();
  QSAE_CHECK_RANGE(q.packed.numel() == (n + 1) / 2, "dequantize_4bit: packed data has ", q.packed.numel(),
                   " bytes, shape ", shape_str(q.shape), " needs ", (n + 1) / 2);
  QSAE_CHECK_RANGE(q.absmax.numel() == nb, "dequantize_4bit: ", q.absmax.numel(), " absmax values, expected ", nb);
  at::Tensor packed = q.packed.contiguous(), absmax = q.absmax.to(at::kFloat).contiguous();
  at::Tensor out = at::empty({n}, at::kFloat);
  const uint8_t* pp = packed.data_ptr<uint8_t>();
  const float* pa = absmax.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const auto& tab = code_table(q.format);
  at::parallel_for(0, nb, std::max<int64_t>(1, 16384 / bs), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t s = b * bs, e = std::min(n, s + bs);
      const float a = pa[b];
      for (int64_t i = s; i < e; ++i) {
        const uint8_t byte = pp[i >> 1];
        const int c = (i & 1) ? (byte & 15) : (byte >> 4);
        po[i] = tab[c] * a;
      }
    }
  });
  out = out.reshape(q.shape);
  return out_dtype == at::kFloat ? out : out.to(out_dtype);
}

// ---------------------------------------------------------------- int8

namespace {
template <class T>
void quantize_int8_impl(const T* pw, int64_t N, int64_t K, int8_t* pc, float* ps) {
  at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* row = pw + n * K;
      float m = 0;
      for (int64_t k = 0; k < K; ++k) m = std::max(m, std::fabs(to_f(row[k])));
      ps[n] = m;
      // bitsandbytes' int8_vectorwise_quant: round(W * (127.0 / SCB)), where torch evaluates `127.0 / tensor` as
      // reciprocal(SCB) * 127 (two fp32 roundings). W * 127 / SCB and W * (127 / SCB) differ in the last bit, which
      // decides the .5 ties that bf16 weights hit often. Half to even; a zero row gives zeros.
      const float s = (1.0f / m) * 127.0f;
      for (int64_t k = 0; k < K; ++k) {
        const float v = m > 0 ? std::nearbyint(to_f(row[k]) * s) : 0.0f;
        pc[n * K + k] = static_cast<int8_t>(std::max(-127.0f, std::min(127.0f, v)));
      }
    }
  });
}
}  // namespace

Int8Weight quantize_int8(const at::Tensor& w_in) {
  check_float_input(w_in, "quantize_int8");
  QSAE_CHECK_RANGE(w_in.dim() == 2, "quantize_int8: expected a 2-D weight [out, in], got shape ",
                   shape_str(w_in.sizes()));
  // Read in the stored dtype (no fp32 copy of a bf16/fp16 weight): memory = input + output.
  at::Tensor w = w_in.device().is_cpu() ? w_in.contiguous() : w_in.to(at::kCPU).contiguous();
  if (w.scalar_type() == at::kDouble) w = w.to(at::kFloat);
  const int64_t N = w.size(0), K = w.size(1);
  Int8Weight r{at::empty({N, K}, at::kChar), at::empty({N}, at::kFloat)};
  int8_t* pc = r.CB.data_ptr<int8_t>();
  float* ps = r.SCB.data_ptr<float>();
  switch (w.scalar_type()) {
    case at::kFloat: quantize_int8_impl(w.data_ptr<float>(), N, K, pc, ps); break;
    case at::kBFloat16: quantize_int8_impl(w.data_ptr<at::BFloat16>(), N, K, pc, ps); break;
    case at::kHalf: quantize_int8_impl(w.data_ptr<at::Half>(), N, K, pc, ps); break;
    default: fail_type("quantize_int8: unsupported dtype");
  }
  return r;
}

at::Tensor dequantize_int8(const Int8Weight& w, at::ScalarType out) {
  // bitsandbytes' int8_vectorwise_dequant: CB * SCB * (1/127) with 1/127 as a float32 constant.
  at::Tensor r = w.CB.to(at::kFloat) * w.SCB.to(at::kFloat).reshape({-1, 1}) * 7.874015718698502e-3f;
  return out == at::kFloat ? r : r.to(out);
}

// ---------------------------------------------------------------- serialization

std::string quant_state_json(const Quant4& q) {
  // json.dumps of QuantState.as_dict(packed=True)'s non-tensor items, in bitsandbytes' key order.
  std::string s = "{\"quant_type\": \"";
  s += format_name(q.format);
  s += "\", \"blocksize\": " + std::to_string(q.blocksize) + ", \"dtype\": \"" + dtype_py(q.dtype) +
       "\", \"shape\": [";
  for (size_t i = 0; i < q.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(q.shape[i]);
  s += "]";
  if (q.double_quant) {
    s += ", \"nested_blocksize\": " + std::to_string(q.nested_blocksize) +
         ", \"nested_dtype\": \"float32\", \"nested_offset\": " + py_float_repr(static_cast<double>(q.offset));
  }
  s += "}";
  return s;
}

void append_4bit_tensors(const std::string& name, const Quant4& q,
                         std::vector<std::pair<std::string, at::Tensor>>& out) {
  const int64_t n = q.numel();
  out.emplace_back(name, q.packed.to(at::kCPU).reshape({(n + 1) / 2, 1}));
  out.emplace_back(name + ".absmax", q.double_quant ? q.quant_absmax.to(at::kCPU) : q.absmax.to(at::kCPU));
  if (q.double_quant) {
    out.emplace_back(name + ".nested_absmax", q.nested_absmax.to(at::kCPU));
    out.emplace_back(name + ".nested_quant_map", q.nested_quant_map.to(at::kCPU));
  }
  out.emplace_back(name + ".quant_map", quant_map_tensor(q.format));
  const std::string js = quant_state_json(q);
  at::Tensor blob = at::empty({(int64_t)js.size()}, at::kByte);
  std::memcpy(blob.data_ptr<uint8_t>(), js.data(), js.size());
  out.emplace_back(name + ".quant_state.bitsandbytes__" + format_name(q.format), blob);
}

bool is_4bit_weight(const std::string& name, const std::vector<std::string>& names) {
  const std::string p = name + ".quant_state.bitsandbytes__";
  for (const auto& n : names)
    if (n.compare(0, p.size(), p) == 0) return true;
  return false;
}

Quant4 load_4bit(const std::string& name, const std::function<at::Tensor(const std::string&)>& get) {
  at::Tensor blob = get(name + ".quant_state.bitsandbytes__nf4");
  std::string qt_name = "nf4";
  if (!blob.defined()) {
    blob = get(name + ".quant_state.bitsandbytes__fp4");
    qt_name = "fp4";
  }
  QSAE_CHECK(blob.defined(), name, ": no quant_state (", name, ".quant_state.bitsandbytes__nf4 or __fp4)");
  QSAE_CHECK_TYPE(blob.scalar_type() == at::kByte, name, ".quant_state.bitsandbytes__", qt_name, ": expected U8, got ",
                  c10::toString(blob.scalar_type()));
  blob = blob.to(at::kCPU).contiguous();
  std::string text(reinterpret_cast<const char*>(blob.data_ptr<uint8_t>()), blob.numel());
  json st;
  try {
    st = json::parse(text);
  } catch (const std::exception& e) {
    fail(name, ": quant_state is not valid JSON (", e.what(), ")");
  }
  QSAE_CHECK(st.is_object(), name, ": quant_state is not a JSON object");
  Quant4 q;
  try {
    const std::string qt = st.value("quant_type", qt_name);
    QSAE_CHECK_TYPE(qt == qt_name, name, ": quant_state says quant_type '", qt, "' but is stored as __", qt_name);
    q.format = parse_format(qt, name + ": quant_type");
    q.blocksize = st.at("blocksize").get<int64_t>();
    q.dtype = dtype_from_py(st.value("dtype", std::string("float32")), name);
    q.shape = st.at("shape").get<std::vector<int64_t>>();
    q.double_quant = st.contains("nested_blocksize") || st.contains("nested_offset");
    if (q.double_quant) {
      q.nested_blocksize = st.value("nested_blocksize", (int64_t)256);
      q.offset = st.at("nested_offset").get<float>();
    }
  } catch (const json::exception& e) {
    fail_type(name, ": bad quant_state (", e.what(), ")");
  }
  check_blocksize(q.blocksize, name);
  for (auto d : q.shape) QSAE_CHECK_RANGE(d > 0, name, ": bad shape ", shape_str(q.shape), " in quant_state");
  const int64_t n = q.numel();
  at::Tensor packed = get(name);
  QSAE_CHECK(packed.defined(), name, ": packed 4-bit data is missing");
  QSAE_CHECK_TYPE(packed.scalar_type() == at::kByte, name, ": packed 4-bit data must be U8, got ",
                  c10::toString(packed.scalar_type()));
  QSAE_CHECK_RANGE(packed.numel() == (n + 1) / 2, name, ": packed data has ", packed.numel(), " bytes but shape ",
                   shape_str(q.shape), " needs ", (n + 1) / 2);
  q.packed = packed.reshape({-1}).contiguous();
  at::Tensor absmax = get(name + ".absmax");
  QSAE_CHECK(absmax.defined(), name, ".absmax is missing");
  const int64_t nb = q.nblocks();
  QSAE_CHECK_RANGE(absmax.numel() == nb, name, ".absmax has ", absmax.numel(), " values, expected ", nb,
                   " (shape ", shape_str(q.shape), ", blocksize ", q.blocksize, ")");
  if (q.double_quant) {
    QSAE_CHECK_TYPE(absmax.scalar_type() == at::kByte, name, ".absmax must be U8 with double quantization");
    at::Tensor nabs = get(name + ".nested_absmax"), nmap = get(name + ".nested_quant_map");
    QSAE_CHECK(nabs.defined(), name, ".nested_absmax is missing");
    QSAE_CHECK(nmap.defined(), name, ".nested_quant_map is missing");
    check_blocksize(q.nested_blocksize, name + " (nested)");
    QSAE_CHECK_RANGE(nabs.numel() == (nb + q.nested_blocksize - 1) / q.nested_blocksize, name, ".nested_absmax has ",
                     nabs.numel(), " values, expected ", (nb + q.nested_blocksize - 1) / q.nested_blocksize);
    QSAE_CHECK_RANGE(nmap.numel() == 256, name, ".nested_quant_map must have 256 entries, got ", nmap.numel());
    q.quant_absmax = absmax.reshape({-1}).contiguous();
    q.nested_absmax = nabs.to(at::kFloat).reshape({-1}).contiguous();
    q.nested_quant_map = nmap.to(at::kFloat).reshape({-1}).contiguous();
    q.absmax = dequantize_blockwise_8bit(q.quant_absmax, q.nested_absmax, q.nested_quant_map, q.nested_blocksize) +
               q.offset;
  } else {
    QSAE_CHECK_TYPE(absmax.is_floating_point(), name, ".absmax must be floating, got ",
                    c10::toString(absmax.scalar_type()));
    q.absmax = absmax.to(at::kFloat).reshape({-1}).contiguous();
  }
  return q;
}

Quant4 load_4bit_from(const std::string& name, const std::map<std::string, at::Tensor>& tensors) {
  const std::string p = name + ".quant_state.bitsandbytes__";
  for (auto it = tensors.lower_bound(p); it != tensors.end() && it->first.compare(0, p.size(), p) == 0; ++it) {
    const std::string qt = it->first.substr(p.size());
    if (qt != "nf4" && qt != "fp4") fail_type(name, ": unknown quant type '", qt, "' (", it->first, ")");
  }
  return load_4bit(name, [&](const std::string& k) {
    auto it = tensors.find(k);
    return it == tensors.end() ? at::Tensor() : it->second;
  });
}

void append_int8_tensors(const std::string& prefix, const Int8Weight& w,
                         std::vector<std::pair<std::string, at::Tensor>>& out) {
  out.emplace_back(prefix + ".SCB", w.SCB.to(at::kCPU));
  out.emplace_back(prefix + ".weight", w.CB.to(at::kCPU));
}

Int8Weight load_int8(const std::string& prefix, const at::Tensor& weight_i8, const at::Tensor& scb) {
  QSAE_CHECK(weight_i8.defined(), prefix, ".weight is missing");
  QSAE_CHECK(scb.defined(), prefix, ".SCB is missing");
  QSAE_CHECK_TYPE(weight_i8.scalar_type() == at::kChar, prefix, ".weight: expected I8, got ",
                  c10::toString(weight_i8.scalar_type()));
  QSAE_CHECK_RANGE(weight_i8.dim() == 2, prefix, ".weight: expected 2-D, got shape ", shape_str(weight_i8.sizes()));
  QSAE_CHECK_TYPE(scb.is_floating_point(), prefix, ".SCB: expected floating, got ", c10::toString(scb.scalar_type()));
  QSAE_CHECK_RANGE(scb.numel() == weight_i8.size(0), prefix, ".SCB has ", scb.numel(), " values for ",
                   weight_i8.size(0), " rows");
  return {weight_i8.contiguous(), scb.to(at::kFloat).reshape({-1}).contiguous()};
}

}  // namespace qsae::quant
