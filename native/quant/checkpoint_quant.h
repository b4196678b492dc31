// `qsae quantize`: a .safetensors file or an HF model folder -> the HF + bitsandbytes layout (atomic output).
#pragma once
#include <string>
#include <vector>

#include "common/cancel.h"

namespace qsae::quant {

struct QuantizeOptions {
  std::string format = "nf4";  // nf4 | fp4 | int8
  int64_t blocksize = 64;
  bool double_quant = false;
  double threshold = 6.0;      // recorded in quantization_config (llm_int8_threshold)
};

struct QuantizeReport {
  std::string out;
  bool model_folder = false;
  std::vector<std::string> quantized;  // source tensor names that were quantized
  std::vector<std::string> kept;       // copied unchanged
  int64_t bytes_in = 0, bytes_out = 0;
};

// Which tensors a model folder quantizes: block projections (model.layers.N.*proj.weight, c_fc/c_proj/c_attn,
// experts), never embeddings, norms, lm_head or the MoE router (mlp.gate.weight).
bool is_block_projection(const std::string& name);

// IN a .safetensors file: every floating tensor of >= 2 dims named *.weight is quantized, the rest copied.
// IN a model folder: writes a pre-quantized HF checkpoint folder OUT (model.safetensors, config.json with
// quantization_config, tokenizer and other files copied). Output is written to a temp path and renamed.
QuantizeReport quantize_checkpoint(const std::string& in, const std::string& out, const QuantizeOptions& opts,
                                   const ProgressFn& progress = {}, const CancelToken* cancel = nullptr);

}  // namespace qsae::quant
