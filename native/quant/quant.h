// bitsandbytes-compatible quantization: NF4/FP4 blockwise 4-bit (with optional double quantization of the
// absmax statistics) and LLM.int8 (row-wise int8 weights + outlier decomposition), their CPU/CUDA linear
// layers, and (de)serialization in the HF + bitsandbytes safetensors layout.
//
// Formats reproduce bitsandbytes bit for bit (tested against ../shared/reference/bnb):
//  * 4-bit: flatten row-major, blocks of `blocksize` (32..4096, power of two; trailing partial block has its
//    own absmax), code = nearest entry of the 16-value table (midpoint thresholds, ties to the lower code),
//    two codes per byte, first element in the HIGH nibble, odd count padded with code 0.
//  * double quant: offset = mean(absmax); (absmax - offset) quantized 8-bit blockwise (blocksize 256) with
//    bitsandbytes' signed dynamic map.
//  * int8: SCB = max|W_row| (fp32), CB = round_half_even(W * ((1 / SCB) * 127)), each step rounded to fp32 (what
//    torch makes of bitsandbytes' `A * (127.0 / row_stats)`).
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace qsae::quant {

enum class Format { NF4, FP4 };

// "nf4" / "fp4" <-> Format. parse_format throws a TypeError naming `what` for anything else.
const char* format_name(Format f);
Format parse_format(const std::string& s, const std::string& what = "quant_type");

// The 16-entry code tables (index = 4-bit code), as bitsandbytes defines them.
const std::array<float, 16>& code_table(Format f);
// bitsandbytes' signed dynamic 8-bit map (create_dynamic_map(signed=True)), 256 entries, sorted ascending.
const std::array<float, 256>& dynamic_map_signed();

struct Quant4 {                 // bitsandbytes 4-bit layout
  Format format = Format::NF4;
  int64_t blocksize = 64;
  std::vector<int64_t> shape;   // original shape (row-major flatten)
  at::ScalarType dtype = at::kFloat;  // original dtype
  at::Tensor packed;            // uint8 [(numel+1)/2], first element in the high nibble
  at::Tensor absmax;            // fp32 [nblocks]  (when double quant: the dequantized absmax is cached here too)
  bool double_quant = false;
  at::Tensor nested_absmax, nested_quant_map; float offset = 0; at::Tensor quant_absmax; // uint8 codes of absmax
  int64_t nested_blocksize = 256;

  int64_t numel() const;
  int64_t nblocks() const;
  // Bytes held (packed + statistics), for memory accounting.
  int64_t bytes() const;
  // Moves every tensor to `device` (packed, absmax, nested stats). Format facts stay.
  Quant4 to(const at::Device& device) const;
};

// Checks blocksize (power of two in 32..4096); throws RangeError naming `what`.
void check_blocksize(int64_t blocksize, const std::string& what);

Quant4 quantize_4bit(const at::Tensor& w, Format f, int64_t blocksize = 64, bool double_quant = false);
at::Tensor dequantize_4bit(const Quant4& q, at::ScalarType out = at::kFloat);

// Blockwise 8-bit quantization with the signed dynamic map (bitsandbytes quantize_blockwise), used for
// double quantization. Returns {codes uint8 [n], absmax fp32 [ceil(n/blocksize)]}.
std::pair<at::Tensor, at::Tensor> quantize_blockwise_8bit(const at::Tensor& x, int64_t blocksize = 256);
at::Tensor dequantize_blockwise_8bit(const at::Tensor& codes, const at::Tensor& absmax, const at::Tensor& code_map,
                                     int64_t blocksize = 256);

// y = x @ W^T + bias for W [out, in] quantized; x [..., in] any float dtype; result in `compute` dtype
// (CPU: compute fp32). Never materializes the whole dequantized W on CPU (GEMV for 1 row, blocked GEMM otherwise).
at::Tensor linear_4bit(const at::Tensor& x, const Quant4& w, const at::Tensor& bias, at::ScalarType compute);

struct Int8Weight {
  at::Tensor CB;  /* int8 [out,in] */
  at::Tensor SCB; /* fp32 [out] */
  int64_t bytes() const;
  Int8Weight to(const at::Device& device) const;
};
Int8Weight quantize_int8(const at::Tensor& w);
at::Tensor dequantize_int8(const Int8Weight& w, at::ScalarType out = at::kFloat);

// LLM.int8: outlier columns (any |x| >= threshold over ALL rows of x) in `compute` dtype, the rest int8xint8->int32,
// dequantized as acc * (row_scale * SCB) / 127^2 (exact 127^2, not bitsandbytes' 6.200124e-05 literal), then
// + bias, then + x[:, outliers] @ (CB[:, outliers] * SCB / 127)^T. threshold <= 0: no outlier decomposition.
at::Tensor linear_int8(const at::Tensor& x, const Int8Weight& w, const at::Tensor& bias, double threshold,
                       at::ScalarType compute);

// Row-wise activation quantization (LLM.int8, bitsandbytes' int8_vectorwise_quant): outlier columns are those
// with any |x| >= threshold (none when threshold <= 0); per row scale = max|x| over the elements below the
// threshold; q = round_half_even(x * ((1 / scale) * 127)) (fp32 steps, as for weights); outlier columns are
// zeroed in q.
struct RowQuant {
  at::Tensor q;      // int8 [M, K]
  at::Tensor scale;  // fp32 [M]
  std::vector<int64_t> outlier_cols;
};
RowQuant quantize_rows_int8(const at::Tensor& x2d, double threshold);
// Columns of x2d [M,K] where any |x| >= threshold (ascending).
std::vector<int64_t> outlier_columns(const at::Tensor& x2d, double threshold);

// CPU kernel selection, for tests and benchmarks: "auto" (AVX2/FMA when the processor has them) or "generic".
void set_cpu_kernel(const std::string& which);
std::string cpu_kernel();  // the kernel in use: "avx2" or "generic"

// ---- Serialization: the HF + bitsandbytes safetensors layout, names relative to a weight name / prefix ----
// 4-bit, for weight name W ("model.layers.0.mlp.up_proj.weight"): W U8 [ceil(n/2),1], W.absmax (F32, or U8
// codes with double quant), W.quant_map F32[16], W.nested_absmax, W.nested_quant_map (double quant),
// W.quant_state.bitsandbytes__nf4 (U8 JSON bytes).
void append_4bit_tensors(const std::string& name, const Quant4& q,
                         std::vector<std::pair<std::string, at::Tensor>>& out);
// Loads W from a name->tensor lookup. `get` returns an undefined tensor when the name is absent.
// Throws naming the tensor for an unknown quant_type, a bad blocksize, packed length vs shape mismatch, etc.
Quant4 load_4bit(const std::string& name, const std::function<at::Tensor(const std::string&)>& get);
Quant4 load_4bit_from(const std::string& name, const std::map<std::string, at::Tensor>& tensors);
// True when `name` + ".quant_state.bitsandbytes__nf4" or "__fp4" is among the names.
bool is_4bit_weight(const std::string& name, const std::vector<std::string>& names);

// int8, for PREFIX ("model.layers.0.mlp.up_proj"): PREFIX.weight I8 [out,in], PREFIX.SCB F32 [out].
void append_int8_tensors(const std::string& prefix, const Int8Weight& w,
                         std::vector<std::pair<std::string, at::Tensor>>& out);
Int8Weight load_int8(const std::string& prefix, const at::Tensor& weight_i8, const at::Tensor& scb);

// The quant_state JSON (what bitsandbytes' QuantState.as_dict(packed=True) stores).
std::string quant_state_json(const Quant4& q);

}  // namespace qsae::quant
