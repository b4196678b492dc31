// Model runtime benchmarks.
//  1. Prefill and decode tokens/s of a synthetic ~100M-parameter Llama-shaped checkpoint written to disk,
//     at fp32, bf16, int8 and nf4 (batch 1; prefill of 128 tokens, then 32 decode steps through the cache).
//  2. Peak host memory while loading a synthetic ~1B-parameter bf16 checkpoint (bf16 and nf4), measured
//     in a child process (VmHWM of /proc/self/status minus the RSS before loading), against the goal
//     final model size + 2x the largest tensor.
// Usage: qsae_bench_model [--device cpu|cuda] [--out FILE.json] [--quick] [--skip-memory] [--dir TMPDIR]
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "common/runtime.h"
#include "common/tensor_util.h"
#include "io/fs.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/model.h"

using namespace qsae;
using namespace qsae::model;
using clk = std::chrono::steady_clock;

namespace {

struct Shape {
  int64_t vocab, d, layers, heads, kv, inter;
};

int64_t params_of(const Shape& s) {
  int64_t hd = s.d / s.heads;
  int64_t per = s.d * s.heads * hd * 2 + s.d * s.kv * hd * 2 + 3 * s.d * s.inter + 2 * s.d;
  return 2 * s.vocab * s.d + s.layers * per + s.d;
}

// Writes a random bf16 Llama checkpoint, one safetensors shard per group of layers (keeps memory low).
void write_llama(const std::string& dir, const Shape& s, const std::string& gen_device = "cpu") {
  std::string cmd = "mkdir -p '" + dir + "'";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("cannot create " + dir);
  json cfg = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"vocab_size", s.vocab},
              {"hidden_size", s.d}, {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads},
              {"num_key_value_heads", s.kv}, {"intermediate_size", s.inter}, {"max_position_embeddings", 4096},
              {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"tie_word_embeddings", false},
              {"torch_dtype", "bfloat16"}};
  const int64_t hd = s.d / s.heads;
  // Random weights are drawn on gen_device (a GPU draws a 1B checkpoint in a blink) and written from host memory.
  auto rnd = [&](std::vector<int64_t> shape, double std) {
    return (at::randn(shape, at::TensorOptions().device(gen_device)) * std).to(at::kBFloat16).cpu();
  };
  json wm = json::object();
  const int64_t per_shard = 4;
  int shard = 0;
  const int nshards = int((s.layers + per_shard - 1) / per_shard) + 1;
  auto shard_name = [&](int i) {
    char b[64];
    std::snprintf(b, sizeof b, "model-%05d-of-%05d.safetensors", i + 1, nshards);
    return std::string(b);
  };
  {
    std::vector<std::pair<std::string, at::Tensor>> t;
    t.emplace_back("model.embed_tokens.weight", rnd({s.vocab, s.d}, 0.02));
    t.emplace_back("lm_head.weight", rnd({s.vocab, s.d}, 0.02));
    t.emplace_back("model.norm.weight", at::ones({s.d}).to(at::kBFloat16));
    for (auto& [n, _] : t) wm[n] = shard_name(shard);
    save_safetensors(join_path(dir, shard_name(shard)), t);
    ++shard;
  }
  for (int64_t l0 = 0; l0 < s.layers; l0 += per_shard, ++shard) {
    std::vector<std::pair<std::string, at::Tensor>> t;
    for (int64_t l = l0; l < std::min(s.layers, l0 + per_shard); ++l) {
      std::string p = "model.layers." + std::to_string(l) + ".";
      double sd = 1.0 / std::sqrt(double(s.d));
      t.emplace_back(p + "input_layernorm.weight", at::ones({s.d}).to(at::kBFloat16));
      t.emplace_back(p + "post_attention_layernorm.weight", at::ones({s.d}).to(at::kBFloat16));
      t.emplace_back(p + "self_attn.q_proj.weight", rnd({s.heads * hd, s.d}, sd));
      t.emplace_back(p + "self_attn.k_proj.weight", rnd({s.kv * hd, s.d}, sd));
      t.emplace_back(p + "self_attn.v_proj.weight", rnd({s.kv * hd, s.d}, sd));
      t.emplace_back(p + "self_attn.o_proj.weight", rnd({s.d, s.heads * hd}, sd));
      t.emplace_back(p + "mlp.gate_proj.weight", rnd({s.inter, s.d}, sd));
      t.emplace_back(p + "mlp.up_proj.weight", rnd({s.inter, s.d}, sd));
      t.emplace_back(p + "mlp.down_proj.weight", rnd({s.d, s.inter}, 1.0 / std::sqrt(double(s.inter))));
    }
    for (auto& [n, _] : t) wm[n] = shard_name(shard);
    save_safetensors(join_path(dir, shard_name(shard)), t);
  }
  write_json_file(join_path(dir, "model.safetensors.index.json"), json{{"metadata", json::object()}, {"weight_map", wm}});
  write_json_file(join_path(dir, "config.json"), cfg);
}

int64_t status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(std::strlen(key)));
  return -1;
}

double secs(clk::time_point a, clk::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Child mode: load DIR at PRECISION onto DEVICE, print one JSON line with host-memory facts.
int child_load(const std::string& dir, const std::string& prec, const std::string& device) {
  init_runtime();
  int64_t before = status_kb("VmRSS:");
  LoadOptions o;
  o.precision = parse_precision(prec);
  o.device = device;
  auto t0 = clk::now();
  auto m = Model::load(dir, o);
  auto t1 = clk::now();
  int64_t hwm = status_kb("VmHWM:");
  auto plan = plan_model(dir, o);
  json j = {{"precision", prec},
            {"device", device},
            {"rss_before_bytes", before * 1024},
            {"peak_bytes", hwm * 1024},
            {"peak_over_baseline_bytes", (hwm - before) * 1024},
            {"model_bytes", m->bytes()},
            {"largest_tensor_bytes", plan.largest_tensor_bytes},
            {"goal_bytes", m->bytes() + 2 * plan.largest_tensor_bytes},
            {"load_s", secs(t0, t1)}};
  std::cout << j.dump() << std::endl;
  return 0;
}

json run_child(const std::string& self, const std::string& dir, const std::string& prec, const std::string& device) {
  std::string cmd = "'" + self + "' --child-load '" + dir + "' " + prec + " " + device;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int rc = pclose(p);
  if (rc != 0) throw std::runtime_error("child load failed: " + out);
  return json::parse(out.substr(out.find('{')));
}

}  // namespace

int main(int argc, char** argv) {
  std::string device = "cpu", out, tmp = "/tmp";
  bool quick = false, skip_memory = false;
  std::vector<std::string> precisions = {"fp32", "bf16", "int8", "nf4"};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--child-load" && i + 3 < argc) return child_load(argv[i + 1], argv[i + 2], argv[i + 3]);
    if (a == "--device" && i + 1 < argc) device = argv[++i];
    else if (a == "--out" && i + 1 < argc) out = argv[++i];
    else if (a == "--dir" && i + 1 < argc) tmp = argv[++i];
    else if (a == "--quick") quick = true;
    else if (a == "--precision" && i + 1 < argc) precisions = {argv[++i]};
    else if (a == "--skip-memory") skip_memory = true;
    else {
      std::cerr << "usage: qsae_bench_model [--device cpu|cuda] [--out FILE.json] [--quick] [--skip-memory] [--dir TMP]\n";
      return 2;
    }
  }
  try {
    init_runtime();
    at::manual_seed(0);
    auto info = runtime_info();
    json result = {{"bench", "model"}, {"device", device}, {"threads", info.threads}, {"torch", info.torch_version}};
    const std::string base = tmp + "/qsae-bench-model-" + std::to_string(::getpid());
    // ---- 1. throughput: ~100M Llama on CPU, ~1.3B Llama on CUDA ----
    const bool cuda = device.rfind("cuda", 0) == 0;
    Shape s100 = quick ? Shape{4096, 256, 4, 4, 2, 768}
                 : cuda ? Shape{32000, 2048, 16, 16, 8, 5504}
                        : Shape{8192, 768, 14, 12, 4, 2048};
    std::string d100 = base + "-100m";
    write_llama(d100, s100, cuda ? device : "cpu");
    result["throughput_model"] = {{"params", params_of(s100)}, {"d_model", s100.d}, {"layers", s100.layers},
                                  {"vocab", s100.vocab}};
    double copy_GBps = 0;  // device memory bandwidth: bytes read + written per second by a large copy
    if (cuda) {
      at::Tensor a = at::randn({int64_t(1) << 28}, at::TensorOptions().device(device));  // 1 GiB
      at::Tensor b = at::empty_like(a);
      b.copy_(a);
      b.sum().item<float>();
      const int reps = 20;
      auto t0 = clk::now();
      for (int i = 0; i < reps; ++i) b.copy_(a);
      b.sum().item<float>();
      double t = secs(t0, clk::now());
      copy_GBps = 2.0 * a.numel() * 4 * reps / t / 1e9;
      result["device_copy_GBps"] = copy_GBps;
      std::cerr << "device copy: " << copy_GBps << " GB/s (read + write)" << std::endl;
    }
    const int64_t prefill = quick ? 32 : 128, steps = quick ? 8 : 32;
    json rows = json::array();
    for (const std::string& prec : precisions) {
      LoadOptions o;
      o.precision = parse_precision(prec);
      o.device = device;
      auto t0 = clk::now();
      auto m = Model::load(d100, o);
      auto t1 = clk::now();
      at::Tensor ids = at::randint(0, s100.vocab, {1, prefill}, at::kLong);
      ForwardOptions fo;
      fo.last_only = true;
      m->forward(ids.narrow(1, 0, 8), fo).logits.cpu();  // warm-up
      KvCache cache;
      fo.cache = &cache;
      auto t2 = clk::now();
      auto r = m->forward(ids, fo);
      r.logits.cpu();
      auto t3 = clk::now();
      at::Tensor next = r.logits.argmax(-1).view({1, 1});
      auto t4 = clk::now();
      for (int64_t i = 0; i < steps; ++i) {
        auto rr = m->forward(next, fo);
        next = rr.logits.argmax(-1).view({1, 1}).cpu();  // the host needs each token: one sync per step
      }
      auto t5 = clk::now();
      const double weight_GBps = double(m->bytes()) * double(steps) / secs(t4, t5) / 1e9;
      json row = {{"precision", prec},
                  {"compute_dtype", dtype_name(m->compute_dtype())},
                  {"model_bytes", m->bytes()},
                  {"load_s", secs(t0, t1)},
                  {"prefill_tokens", prefill},
                  {"prefill_tok_s", double(prefill) / secs(t2, t3)},
                  {"decode_steps", steps},
                  {"decode_tok_s", double(steps) / secs(t4, t5)},
                  // Weight bytes streamed per second while decoding (batch 1 reads every weight once per token).
                  {"decode_weight_GBps", weight_GBps}};
      if (cuda) {
        // Bandwidth limit of batch-1 decoding: the weights read once per token at the copy's per-direction rate.
        row["decode_fraction_of_bandwidth"] = weight_GBps / (copy_GBps / 2);
        // Activation extraction: batch 8 x 512 tokens, the residual stream of every layer captured.
        const int64_t eb = 8, et = 512;
        at::Tensor eids = at::randint(0, s100.vocab, {eb, et}, at::kLong);
        ForwardOptions xo;
        xo.hooks = {"resid_post"};
        for (int64_t l = 0; l < s100.layers; ++l) xo.hook_layers.push_back(l);
        xo.logits = false;  // as `qsae extract` runs: stop after the last captured block
        m->forward(eids, xo).captures.back().second.cpu();
        const int reps = 5;
        auto e0 = clk::now();
        for (int i = 0; i < reps; ++i) {
          auto rr = m->forward(eids, xo);
          for (auto& c : rr.captures) c.second.to(at::kBFloat16).cpu();  // what a store writes: bf16 rows on the host
        }
        row["extract_tok_s"] = double(eb * et * reps) / secs(e0, clk::now());
        row["extract_layers"] = s100.layers;
      }
      std::cerr << row.dump() << std::endl;
      rows.push_back(row);
    }
    result["throughput"] = rows;
    std::system(("rm -rf '" + d100 + "'").c_str());
    // ---- 2. peak host memory while loading ~1B ----
    // On CUDA the weights go straight to the device: host peak should stay far under the model size.
    if (!skip_memory) {
      Shape s1b = quick ? Shape{8192, 1024, 8, 8, 4, 2816} : Shape{32000, 2048, 16, 16, 8, 5504};
      std::string d1b = base + "-1b";
      write_llama(d1b, s1b, cuda ? device : "cpu");
      json mem = json::array();
      char self[4096];
      ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
      self[n > 0 ? n : 0] = 0;
      for (const char* prec : {"bf16", "nf4"}) {
        json j = run_child(self, d1b, prec, device);
        j["within_goal"] = j["peak_over_baseline_bytes"].get<int64_t>() <= j["goal_bytes"].get<int64_t>();
        std::cerr << j.dump() << std::endl;
        mem.push_back(j);
      }
      result["load_memory_model"] = {{"params", params_of(s1b)}, {"d_model", s1b.d}, {"layers", s1b.layers}};
      result["load_memory"] = mem;
      std::system(("rm -rf '" + d1b + "'").c_str());
    }
    std::string text = result.dump(2);
    std::cout << text << std::endl;
    if (!out.empty()) write_file_atomic(out, text + "\n");
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_model: " << e.what() << std::endl;
    return 1;
  }
}
