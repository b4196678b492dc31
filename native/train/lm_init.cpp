// Initial weights for small Llama/Qwen3-family LMs, and the model's trainable tensors by checkpoint name.
#include "train/lm_init.h"

#include <cmath>

#include "common/error.h"
#include "model/model.h"

namespace qsae::train {

std::vector<std::pair<std::string, at::Tensor>> init_lm_weights(const model::ModelConfig& c, uint64_t seed) {
  QSAE_CHECK(c.family == model::Family::Llama || c.family == model::Family::Qwen3, c.path,
             ": train-lm initializes llama/mistral/qwen2/qwen3 configs only (got ", c.model_type, ")");
  auto gen = at::detail::createCPUGenerator(seed);
  const double std = 0.02, out_std = 0.02 / std::sqrt(2.0 * double(c.num_layers));
  auto normal = [&](std::vector<int64_t> shape, double s) { return at::normal(0.0, s, shape, gen, at::kFloat); };
  auto ones = [](int64_t n) { return at::ones({n}, at::kFloat); };
  const int64_t D = c.hidden_size, H = c.num_heads * c.head_dim, KV = c.num_kv_heads * c.head_dim;
  std::vector<std::pair<std::string, at::Tensor>> w;
  w.emplace_back("model.embed_tokens.weight", normal({c.vocab_size, D}, std));
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    w.emplace_back(p + "input_layernorm.weight", ones(D));
    w.emplace_back(p + "self_attn.q_proj.weight", normal({H, D}, std));
    w.emplace_back(p + "self_attn.k_proj.weight", normal({KV, D}, std));
    w.emplace_back(p + "self_attn.v_proj.weight", normal({KV, D}, std));
    w.emplace_back(p + "self_attn.o_proj.weight", normal({D, H}, out_std));
    if (c.qkv_bias) {
      w.emplace_back(p + "self_attn.q_proj.bias", at::zeros({H}));
      w.emplace_back(p + "self_attn.k_proj.bias", at::zeros({KV}));
      w.emplace_back(p + "self_attn.v_proj.bias", at::zeros({KV}));
    }
    if (c.qk_norm) {
      w.emplace_back(p + "self_attn.q_norm.weight", ones(c.head_dim));
      w.emplace_back(p + "self_attn.k_norm.weight", ones(c.head_dim));
    }
    w.emplace_back(p + "post_attention_layernorm.weight", ones(D));
    w.emplace_back(p + "mlp.gate_proj.weight", normal({c.intermediate_size, D}, std));
    w.emplace_back(p + "mlp.up_proj.weight", normal({c.intermediate_size, D}, std));
    w.emplace_back(p + "mlp.down_proj.weight", normal({D, c.intermediate_size}, out_std));
  }
  w.emplace_back("model.norm.weight", ones(D));
  if (!c.tie_embeddings) w.emplace_back("lm_head.weight", normal({c.vocab_size, D}, std));
  return w;
}

}  // namespace qsae::train

namespace qsae::model {

// Dense Llama/Qwen3-family models only: the tensors the runtime holds, under their checkpoint names.
std::vector<std::pair<std::string, at::Tensor>> Model::named_parameters() const {
  QSAE_CHECK(cfg_.family == Family::Llama || cfg_.family == Family::Qwen3, path_,
             ": named_parameters supports llama/mistral/qwen2/qwen3 models");
  std::vector<std::pair<std::string, at::Tensor>> out;
  auto add = [&](const std::string& name, const at::Tensor& t) {
    if (t.defined()) out.emplace_back(name, t);
  };
  auto add_linear = [&](const std::string& name, const Linear& l) {
    QSAE_CHECK(l.kind == Linear::Kind::Dense, name, ": is quantized; load the model at fp32 to train it");
    add(name + ".weight", l.w);
    add(name + ".bias", l.b);
  };
  add("model.embed_tokens.weight", embed_);
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", b.ln1.w);
    add_linear(p + "self_attn.q_proj", b.q);
    add_linear(p + "self_attn.k_proj", b.k);
    add_linear(p + "self_attn.v_proj", b.v);
    add_linear(p + "self_attn.o_proj", b.o);
    add(p + "self_attn.q_norm.weight", b.q_norm);
    add(p + "self_attn.k_norm.weight", b.k_norm);
    add(p + "post_attention_layernorm.weight", b.ln2.w);
    QSAE_CHECK(!b.moe, path_, ": named_parameters does not cover MoE layers");
    add_linear(p + "mlp.gate_proj", b.mlp.gate);
    add_linear(p + "mlp.up_proj", b.mlp.up);
    add_linear(p + "mlp.down_proj", b.mlp.down);
  }
  add("model.norm.weight", final_norm_.w);
  if (!tied_) add("lm_head.weight", lm_head_);
  return out;
}

}  // namespace qsae::model
