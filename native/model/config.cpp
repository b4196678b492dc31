#include "model/config.h"

#include <algorithm>

#include "common/error.h"
#include "io/fs.h"

namespace qsae::model {

namespace {

struct Reader {
  const json& j;
  const std::string& path;
  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  int64_t int_req(const char* k) const {
    if (!has(k)) fail(path, ": missing field '", k, "'");
    if (!j[k].is_number_integer()) fail(path, ": field '", k, "' must be an integer");
    int64_t v = j[k].get<int64_t>();
    if (v <= 0) fail(path, ": field '", k, "' must be positive (got ", v, ")");
    return v;
  }
  int64_t int_opt(const char* k, int64_t def) const {
    if (!has(k)) return def;
    if (!j[k].is_number_integer()) fail(path, ": field '", k, "' must be an integer");
    return j[k].get<int64_t>();
  }
  double num_opt(const char* k, double def) const {
    if (!has(k)) return def;
    if (!j[k].is_number()) fail(path, ": field '", k, "' must be a number");
    return j[k].get<double>();
  }
  bool bool_opt(const char* k, bool def) const {
    if (!has(k)) return def;
    if (!j[k].is_boolean()) fail(path, ": field '", k, "' must be true or false");
    return j[k].get<bool>();
  }
  std::string str_opt(const char* k, const std::string& def) const {
    if (!has(k)) return def;
    if (!j[k].is_string()) fail(path, ": field '", k, "' must be a string");
    return j[k].get<std::string>();
  }
};

std::string type_from_architecture(const std::string& a) {
  static const std::pair<const char*, const char*> table[] = {
      {"LlamaForCausalLM", "llama"},       {"MistralForCausalLM", "mistral"},
      {"Qwen2ForCausalLM", "qwen2"},       {"Qwen3ForCausalLM", "qwen3"},
      {"Qwen3MoeForCausalLM", "qwen3_moe"}, {"Starcoder2ForCausalLM", "starcoder2"},
      {"GPT2LMHeadModel", "gpt2"}};
  for (auto& [arch, type] : table)
    if (a == arch) return type;
  return "";
}

std::string architecture_from_type(const std::string& t) {
  if (t == "llama") return "LlamaForCausalLM";
  if (t == "mistral") return "MistralForCausalLM";
  if (t == "qwen2") return "Qwen2ForCausalLM";
  if (t == "qwen3") return "Qwen3ForCausalLM";
  if (t == "qwen3_moe") return "Qwen3MoeForCausalLM";
  if (t == "starcoder2") return "Starcoder2ForCausalLM";
  if (t == "gpt2") return "GPT2LMHeadModel";
  return "";
}

// transformers v5 saves RoPE settings as `rope_parameters` (rope_type, rope_theta and the scaling fields in
// one object); earlier versions as top-level `rope_theta` plus `rope_scaling`. Both are read.
const char* rope_field(const Reader& r) { return r.has("rope_parameters") ? "rope_parameters" : "rope_scaling"; }

double parse_rope_theta(const Reader& r) {
  double theta = r.num_opt("rope_theta", 10000.0);
  if (r.has("rope_parameters") && r.j["rope_parameters"].is_object())
    theta = Reader{r.j["rope_parameters"], r.path}.num_opt("rope_theta", theta);
  return theta;
}

RopeScaling parse_rope_scaling(const Reader& r) {
  RopeScaling s;
  const char* field = rope_field(r);
  if (!r.has(field) || r.j[field].is_null()) return s;
  const json& rs = r.j[field];
  if (!rs.is_object()) fail(r.path, ": field '", field, "' must be an object");
  Reader q{rs, r.path};
  s.type = q.str_opt("rope_type", q.str_opt("type", "default"));
  if (s.type == "default") {
    s.type = "";
    return s;
  }
  s.factor = q.num_opt("factor", 1.0);
  if (s.type == "linear") return s;
  if (s.type == "llama3") {
    s.low_freq_factor = q.num_opt("low_freq_factor", 1.0);
    s.high_freq_factor = q.num_opt("high_freq_factor", 4.0);
    s.original_max_positions = q.int_opt("original_max_position_embeddings", 8192);
    return s;
  }
  if (s.type == "yarn") {
    s.original_max_positions = q.int_opt("original_max_position_embeddings", 0);
    s.beta_fast = q.num_opt("beta_fast", 32.0);
    s.beta_slow = q.num_opt("beta_slow", 1.0);
    s.attention_factor = q.num_opt("attention_factor", 0.0);
    s.mscale = q.num_opt("mscale", 0.0);
    s.mscale_all_dim = q.num_opt("mscale_all_dim", 0.0);
    s.truncate = q.bool_opt("truncate", true);
    return s;
  }
  fail(r.path, ": ", field, " type '", s.type, "' is not supported (supported: linear, llama3, yarn)");
}

}  // namespace

bool ModelConfig::is_moe_layer(int64_t layer) const {
  if (num_experts <= 0) return false;
  if (std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end()) return false;
  return decoder_sparse_step > 0 && (layer + 1) % decoder_sparse_step == 0;
}

ModelConfig parse_config(const json& j, const std::string& path) {
  if (!j.is_object()) fail(path, ": expected a JSON object");
  Reader r{j, path};
  ModelConfig c;
  c.path = path;
  std::string arch;
  if (r.has("architectures")) {
    if (!j["architectures"].is_array() || j["architectures"].empty() || !j["architectures"][0].is_string())
      fail(path, ": field 'architectures' must be a non-empty array of strings");
    arch = j["architectures"][0].get<std::string>();
  }
  c.model_type = r.str_opt("model_type", "");
  if (c.model_type.empty()) {
    c.model_type = type_from_architecture(arch);
    if (c.model_type.empty())
      fail(path, arch.empty() ? std::string(": missing fields 'model_type' and 'architectures'")
                              : ": unknown architecture '" + arch + "'");
  }
  static const char* known[] = {"llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "starcoder2", "gpt2"};
  if (std::find_if(std::begin(known), std::end(known), [&](const char* k) { return c.model_type == k; }) ==
      std::end(known))
    fail(path, ": unknown architecture '", c.model_type,
         "' (supported: llama, mistral, qwen2, qwen3, qwen3_moe, starcoder2, gpt2)");
  if (!arch.empty()) {
    std::string t = type_from_architecture(arch);
    if (t.empty()) fail(path, ": unknown architecture '", arch, "' for model_type '", c.model_type, "'");
    if (t != c.model_type)
      fail(path, ": architecture '", arch, "' does not match model_type '", c.model_type, "'");
  }
  c.architecture = arch.empty() ? architecture_from_type(c.model_type) : arch;
  const std::string& t = c.model_type;

  if (t == "gpt2") {
    c.family = Family::Gpt2;
    c.vocab_size = r.int_req("vocab_size");
    c.hidden_size = r.int_req("n_embd");
    c.num_layers = r.int_req("n_layer");
    c.num_heads = r.int_req("n_head");
    c.num_kv_heads = c.num_heads;
    c.intermediate_size = r.has("n_inner") ? r.int_req("n_inner") : 4 * c.hidden_size;
    c.max_positions = r.int_req("n_positions");
    c.norm_eps = r.num_opt("layer_norm_epsilon", 1e-5);
    c.layer_norm = true;
    c.rope = false;
    c.qkv_bias = c.o_bias = c.mlp_bias = true;
    std::string a = r.str_opt("activation_function", "gelu_new");
    if (a == "gelu_new" || a == "gelu_pytorch_tanh" || a == "gelu_fast")
      c.act = "gelu_tanh";
    else if (a == "gelu")
      c.act = "gelu";
    else
      fail(path, ": activation_function '", a, "' is not supported (gelu_new, gelu_pytorch_tanh, gelu)");
    c.gated_mlp = false;
    c.tie_embeddings = r.bool_opt("tie_word_embeddings", true);
    if (r.bool_opt("scale_attn_by_inverse_layer_idx", false) || r.bool_opt("reorder_and_upcast_attn", false))
      fail(path, ": GPT-2 options scale_attn_by_inverse_layer_idx/reorder_and_upcast_attn are not supported");
  } else {
    c.vocab_size = r.int_req("vocab_size");
    c.hidden_size = r.int_req("hidden_size");
    c.num_layers = r.int_req("num_hidden_layers");
    c.num_heads = r.int_req("num_attention_heads");
    c.num_kv_heads = r.has("num_key_value_heads") ? r.int_req("num_key_value_heads") : c.num_heads;
    c.head_dim = r.has("head_dim") ? r.int_req("head_dim") : 0;
    c.intermediate_size = r.int_req("intermediate_size");
    c.max_positions = r.int_opt("max_position_embeddings", 2048);
    c.rope_theta = parse_rope_theta(r);
    c.rope_scaling = parse_rope_scaling(r);
    c.tie_embeddings = r.bool_opt("tie_word_embeddings", false);
    if (t == "starcoder2") {
      c.family = Family::Starcoder2;
      c.norm_eps = r.num_opt("norm_epsilon", 1e-5);
      c.layer_norm = true;
      bool bias = r.bool_opt("use_bias", true);
      c.qkv_bias = c.o_bias = c.mlp_bias = bias;
      std::string a = r.str_opt("hidden_act", "gelu_pytorch_tanh");
      if (a == "gelu_pytorch_tanh" || a == "gelu_new" || a == "gelu_fast")
        c.act = "gelu_tanh";
      else if (a == "gelu")
        c.act = "gelu";
      else
        fail(path, ": hidden_act '", a, "' is not supported for starcoder2");
      c.gated_mlp = false;
      c.tie_embeddings = r.bool_opt("tie_word_embeddings", true);
    } else {
      c.norm_eps = r.num_opt("rms_norm_eps", 1e-6);
      std::string a = r.str_opt("hidden_act", "silu");
      if (a != "silu" && a != "swish") fail(path, ": hidden_act '", a, "' is not supported (silu)");
      if (t == "llama" || t == "mistral") {
        c.family = Family::Llama;
        c.qkv_bias = c.o_bias = r.bool_opt("attention_bias", false);
        c.mlp_bias = r.bool_opt("mlp_bias", false);
      } else if (t == "qwen2") {
        c.family = Family::Llama;
        c.qkv_bias = true;
      } else if (t == "qwen3" || t == "qwen3_moe") {
        c.family = t == "qwen3" ? Family::Qwen3 : Family::Qwen3Moe;
        c.qk_norm = true;
        c.qkv_bias = c.o_bias = r.bool_opt("attention_bias", false);
      }
    }
  }
  if (c.head_dim == 0) {
    if (c.hidden_size % c.num_heads != 0)
      fail(path, ": hidden_size ", c.hidden_size, " is not divisible by num_attention_heads ", c.num_heads);
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.num_heads % c.num_kv_heads != 0)
    fail(path, ": num_attention_heads ", c.num_heads, " is not a multiple of num_key_value_heads ", c.num_kv_heads);
  if (c.rope && c.head_dim % 2 != 0) fail(path, ": head_dim ", c.head_dim, " must be even for RoPE");

  // Sliding windows per layer (transformers' rules per architecture).
  c.sliding_window.assign(c.num_layers, 0);
  int64_t w = r.has("sliding_window") ? r.int_opt("sliding_window", 0) : 0;
  if (w > 0 && r.has("layer_types") && j["layer_types"].is_array() && t != "mistral" && t != "starcoder2") {
    // transformers v5 writes the per-layer attention kind out ("sliding_attention" | "full_attention").
    const json& lt = j["layer_types"];
    if ((int64_t)lt.size() != c.num_layers)
      fail(path, ": field 'layer_types' has ", lt.size(), " entries for ", c.num_layers, " layers");
    for (int64_t i = 0; i < c.num_layers; ++i)
      if (lt[i].is_string() && lt[i].get<std::string>() == "sliding_attention") c.sliding_window[i] = w;
  } else if (w > 0) {
    if (t == "mistral" || t == "starcoder2") {
      for (auto& x : c.sliding_window) x = w;
    } else if (t == "qwen2" || t == "qwen3" || t == "qwen3_moe") {
      if (r.bool_opt("use_sliding_window", false)) {
        int64_t from = r.int_opt("max_window_layers", 0);
        for (int64_t i = from; i < c.num_layers; ++i) c.sliding_window[i] = w;
      }
    }
  }
  if (t == "qwen3_moe") {
    // transformers v5 names it num_local_experts.
    c.num_experts = r.has("num_experts") || !r.has("num_local_experts") ? r.int_req("num_experts") : r.int_req("num_local_experts");
    c.experts_per_tok = r.int_req("num_experts_per_tok");
    c.moe_intermediate_size = r.int_req("moe_intermediate_size");
    c.decoder_sparse_step = r.int_opt("decoder_sparse_step", 1);
    c.norm_topk_prob = r.bool_opt("norm_topk_prob", false);
    if (r.has("mlp_only_layers")) {
      if (!j["mlp_only_layers"].is_array()) fail(path, ": field 'mlp_only_layers' must be an array");
      for (auto& x : j["mlp_only_layers"]) c.mlp_only_layers.push_back(x.get<int64_t>());
    }
    if (c.experts_per_tok > c.num_experts)
      fail(path, ": num_experts_per_tok ", c.experts_per_tok, " exceeds num_experts ", c.num_experts);
  }
  c.bos_token_id = r.int_opt("bos_token_id", -1);
  c.pad_token_id = r.int_opt("pad_token_id", -1);
  if (r.has("eos_token_id")) {
    const json& e = j["eos_token_id"];
    if (e.is_array())
      for (auto& x : e) c.eos_token_ids.push_back(x.get<int64_t>());
    else if (e.is_number_integer())
      c.eos_token_ids.push_back(e.get<int64_t>());
  }
  c.torch_dtype = r.str_opt("torch_dtype", r.str_opt("dtype", ""));
  if (r.has("quantization_config")) c.quantization_config = j["quantization_config"];
  return c;
}

ModelConfig load_config(const std::string& dir_or_file) {
  std::string path = is_directory(dir_or_file) ? join_path(dir_or_file, "config.json") : dir_or_file;
  if (!file_exists(path)) fail(path, ": missing (a model folder needs config.json)");
  return parse_config(read_json_file(path), path);
}

}  // namespace qsae::model
