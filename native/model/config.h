// Model configuration parsed from a Hugging Face config.json: one struct for every supported
// architecture (llama, mistral, qwen2, qwen3, qwen3_moe, starcoder2, gpt2). Unknown architectures and
// missing fields are reported as one line naming config.json and the field.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/json.h"

namespace qsae::model {

enum class Family { Llama, Qwen3, Qwen3Moe, Starcoder2, Gpt2 };  // the block layouts we implement

struct RopeScaling {
  std::string type;  // "" (none), "linear", "llama3", "yarn", "default"
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
  int64_t original_max_positions = 0;                    // llama3, yarn
  double beta_fast = 32.0, beta_slow = 1.0;              // yarn
  double attention_factor = 0.0;                         // yarn (0: derived from factor)
  double mscale = 0.0, mscale_all_dim = 0.0;             // yarn (deepseek style), 0: unused
  bool truncate = true;                                  // yarn
};

struct ModelConfig {
  std::string path;          // config.json path (for messages)
  std::string model_type;    // as in config.json
  std::string architecture;  // architectures[0] or derived from model_type
  Family family = Family::Llama;
  int64_t vocab_size = 0, hidden_size = 0, num_layers = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  int64_t intermediate_size = 0, max_positions = 0;
  double norm_eps = 1e-6;
  bool layer_norm = false;  // LayerNorm with bias (starcoder2, gpt2) instead of RMSNorm
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool rope = true;                   // gpt2: learned positions instead
  bool qk_norm = false;               // qwen3
  bool qkv_bias = false, o_bias = false, mlp_bias = false;
  std::string act = "silu";           // silu (gated) | gelu_tanh (c_fc/c_proj) | gelu (exact)
  bool gated_mlp = true;              // gate/up/down vs c_fc/c_proj
  bool tie_embeddings = false;
  std::vector<int64_t> sliding_window;  // per layer; 0 = full attention
  // MoE (qwen3_moe)
  int64_t num_experts = 0, experts_per_tok = 0, moe_intermediate_size = 0, decoder_sparse_step = 1;
  bool norm_topk_prob = false;
  std::vector<int64_t> mlp_only_layers;
  // Token ids
  int64_t bos_token_id = -1, pad_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype;  // "bfloat16", "float32", ... ("" when absent)
  json quantization_config;  // null when absent

  bool is_moe_layer(int64_t layer) const;
};

ModelConfig parse_config(const json& j, const std::string& path);
// Reads DIR/config.json (or the file itself when given a config.json path).
ModelConfig load_config(const std::string& dir_or_file);

}  // namespace qsae::model
