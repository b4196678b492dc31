// The model runtime: loads a Hugging Face checkpoint (llama, mistral, qwen2, qwen3, qwen3_moe, starcoder2,
// gpt2) at a precision (fp32/bf16/fp16 dense, int8/nf4/fp4 quantized projections) and runs batched
// forwards with left padding, a KV cache, activation capture and hidden states.
//
// Loading streams the checkpoint tensor by tensor (read with pread into a fresh buffer, converted or
// quantized, then put on the device), so peak host memory stays near the final model size plus a few
// copies of the largest tensor. The fp32 CPU forward uses plain differentiable ATen ops.
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/cancel.h"
#include "model/config.h"
#include "model/linear.h"

namespace qsae::model {

struct LoadOptions {
  std::optional<Precision> precision;          // default: the checkpoint's dtype
  std::optional<at::ScalarType> compute_dtype;  // quantized precisions: default bf16 on CUDA, fp32 on CPU
  std::string device = "cpu";
  // A device map: with two or more devices the blocks are split into contiguous, nearly equal ranges, one per
  // device in order (embeddings with the first, final norm and lm_head with the last); `device` is then
  // ignored. For a model larger than one GPU: {"cuda:0", "cuda:1"}.
  std::vector<std::string> devices;
  int64_t blocksize = 64;
  bool double_quant = false;
  double int8_threshold = 6.0;
};

// What one module of the model holds (or would hold, for a plan): checkpoint-style name, precision, bytes.
struct ModuleInfo {
  std::string name;
  std::string precision;
  int64_t bytes = 0;
};

struct ModelPlan {
  ModelConfig config;
  Precision precision;
  at::ScalarType compute_dtype;
  std::vector<ModuleInfo> modules;
  int64_t total_bytes = 0;      // weights at that precision
  int64_t checkpoint_bytes = 0;  // tensor bytes in the files
  int64_t largest_tensor_bytes = 0;
  bool prequantized = false;
};

// Resolves options against the checkpoint and lists every module with its precision and bytes, reading
// only config.json and the safetensors headers. Throws on the same bad input load() would.
ModelPlan plan_model(const std::string& dir, const LoadOptions& opts);

// KV cache: per layer K and V [B, Hkv, capacity, head_dim] in the activation dtype, appended in place
// (capacity grows by doubling); `mask` [B, length] int64 holds the attention mask of the cached tokens.
struct KvCache {
  std::vector<at::Tensor> k, v;
  at::Tensor mask;
  int64_t length = 0, capacity = 0, batch = 0;
  int64_t bytes() const;
  void clear();
};

struct ForwardOptions {
  at::Tensor attention_mask;             // int64 [B, past + T] (or [B, T] without a cache); undefined: all ones
  KvCache* cache = nullptr;              // appended to in place
  std::vector<std::string> hooks;        // resid_pre | resid_post | attn_out | mlp_out
  std::vector<int64_t> hook_layers;
  bool hidden = false;                   // hidden.{i}: residual after block i, fp32
  bool last_only = false;                // logits for the last position only
  bool logits = true;                    // false: stop after the last needed block (capture only)
  // Edits at hook points (SAE splicing, ablations): the value at (hook, layer), [B, T, D] in the activation
  // dtype, is replaced by fn(value) and the forward goes on from there. Captures record the value before the
  // edit; hidden.{i} after it.
  struct Edit {
    std::string hook;  // resid_pre | resid_post | attn_out | mlp_out
    int64_t layer = 0;
    std::function<at::Tensor(const at::Tensor&)> fn;
  };
  std::vector<Edit> edits;
};

struct ForwardResult {
  at::Tensor logits;  // fp32 [B, T or 1, V] (undefined when not requested)
  std::vector<at::Tensor> hidden;
  std::vector<std::pair<std::string, at::Tensor>> captures;  // "hook.layer" -> fp32 [B, T, D]
};

struct Norm {
  at::Tensor w, b;
};

struct Mlp {
  Linear gate, up, down;  // gated SwiGLU
  Linear fc, proj;        // c_fc / c_proj
};

struct Block {
  Norm ln1, ln2;
  Linear q, k, v, o, qkv;  // qkv: GPT-2's fused c_attn
  at::Tensor q_norm, k_norm;
  bool moe = false;
  Mlp mlp;
  at::Tensor router;  // [E, D]
  std::vector<Mlp> experts;
  int64_t window = 0;
};

// The quantization in effect: from the load options, or from the checkpoint when it was pre-quantized
// (bitsandbytes quantization_config and per-tensor quant state).
struct QuantSettings {
  std::string type;           // "nf4" | "fp4" | "int8"; "" for a dense model
  int64_t blocksize = 0;      // 4-bit only
  bool double_quant = false;  // 4-bit only
  double int8_threshold = 0;  // int8 only: outlier threshold of LLM.int8
  bool prequantized = false;  // read already quantized from the checkpoint
};

class Model {
 public:
  static std::shared_ptr<Model> load(const std::string& dir, const LoadOptions& opts,
                                     const ProgressFn& progress = {}, const CancelToken* cancel = nullptr);

  ForwardResult forward(const at::Tensor& input_ids, const ForwardOptions& opts) const;
  // Logits [B,T,V] with autograd intact (fp32 CPU models: plain differentiable ATen ops); for training.
  at::Tensor forward_train(const at::Tensor& input_ids, const at::Tensor& attention_mask = {}) const;

  const ModelConfig& config() const { return cfg_; }
  Precision precision() const { return precision_; }
  at::ScalarType compute_dtype() const { return act_; }
  const at::Device& device() const { return device_; }  // inputs and outputs live here (the first device)
  const at::Device& layer_device(int64_t layer) const { return layer_device_.at(layer); }
  std::vector<at::Device> devices() const;  // distinct devices in order (one unless a device map was given)
  const std::string& path() const { return path_; }
  std::vector<ModuleInfo> modules() const;
  int64_t bytes() const;
  const LoadOptions& options() const { return opts_; }
  QuantSettings quantization() const;
  const std::vector<Block>& blocks() const { return blocks_; }
  // Dense llama/qwen-family weights under their checkpoint names (defined in native/train/lm_init.cpp).
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const;

 private:
  friend struct Loader;
  at::Tensor rope_inv_freq() const { return inv_freq_; }
  at::Tensor norm(const at::Tensor& x, const Norm& n) const;
  at::Tensor mlp(const at::Tensor& x, const Mlp& m) const;
  at::Tensor moe(const at::Tensor& x, const Block& b) const;
  at::Tensor attention(const at::Tensor& x, const Block& b, int64_t layer, const at::Tensor& cos,
                       const at::Tensor& sin, const at::Tensor& allowed, KvCache* cache, int64_t past) const;

  std::string path_;
  ModelConfig cfg_;
  LoadOptions opts_;
  Precision precision_ = Precision::FP32;
  at::ScalarType act_ = at::kFloat;
  at::Device device_{at::kCPU};
  at::Device out_device_{at::kCPU};         // final norm and lm_head
  std::vector<at::Device> layer_device_;
  bool prequantized_ = false;
  at::Tensor embed_, wpe_, lm_head_;
  bool tied_ = false;
  Norm final_norm_;
  std::vector<Block> blocks_;
  at::Tensor inv_freq_;
  double attn_scaling_ = 1.0;  // yarn
};

// Inverse RoPE frequencies [head_dim/2] (fp32) with rope_scaling applied, and the cos/sin scale.
std::pair<at::Tensor, double> rope_frequencies(const ModelConfig& c);

}  // namespace qsae::model
