// Model loading: a plan of every module (names, shapes, precision, bytes) from config.json and the
// safetensors headers, then a streaming load that reads one tensor at a time with pread (no mapping of
// the whole file stays resident), converts or quantizes it, and moves it to the device.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "common/error.h"
#include "common/tensor_util.h"
#include "io/checkpoint.h"
#include "io/fs.h"
#include "model/model.h"
#include "quant/quant.h"

namespace qsae::model {

namespace {

std::string basename_of(const std::string& p) {
  auto i = p.find_last_of('/');
  return i == std::string::npos ? p : p.substr(i + 1);
}

// One module of the plan.
struct Spec {
  enum Role { Embed, Pos, NormM, QkNorm, Lin, Router, LmHead } role;
  std::string module;  // e.g. model.layers.0.self_attn.q_proj
  std::string weight, bias;  // checkpoint names ("" bias = none)
  std::vector<int64_t> shape;  // expected weight shape in the checkpoint
  bool conv1d = false;         // GPT-2 Conv1D: stored [in, out]
  int64_t layer = -1;
  std::string field;  // ln1, ln2, q, k, v, o, qkv, q_norm, k_norm, gate, up, down, fc, proj, router; "e<E>.gate"...
  bool tied = false;
};

std::vector<Spec> make_specs(const ModelConfig& c, const Checkpoint& ck) {
  std::vector<Spec> s;
  const int64_t D = c.hidden_size, H = c.num_heads, Hkv = c.num_kv_heads, hd = c.head_dim, I = c.intermediate_size;
  auto lin = [&](const std::string& mod, int64_t l, const std::string& f, int64_t out, int64_t in, bool bias,
                 bool conv1d = false) {
    Spec x{Spec::Lin, mod, mod + ".weight", bias ? mod + ".bias" : "", conv1d ? std::vector<int64_t>{in, out} : std::vector<int64_t>{out, in}, conv1d, l, f};
    s.push_back(x);
  };
  auto norm = [&](const std::string& mod, int64_t l, const std::string& f, int64_t n) {
    s.push_back(Spec{Spec::NormM, mod, mod + ".weight", c.layer_norm ? mod + ".bias" : "", {n}, false, l, f});
  };
  if (c.family == Family::Gpt2) {
    std::string p = ck.contains("transformer.wte.weight") ? "transformer." : "";
    s.push_back(Spec{Spec::Embed, p + "wte", p + "wte.weight", "", {c.vocab_size, D}, false, -1, "embed"});
    s.push_back(Spec{Spec::Pos, p + "wpe", p + "wpe.weight", "", {c.max_positions, D}, false, -1, "wpe"});
    for (int64_t l = 0; l < c.num_layers; ++l) {
      std::string b = p + "h." + std::to_string(l) + ".";
      norm(b + "ln_1", l, "ln1", D);
      lin(b + "attn.c_attn", l, "qkv", 3 * D, D, true, true);
      lin(b + "attn.c_proj", l, "o", D, D, true, true);
      norm(b + "ln_2", l, "ln2", D);
      lin(b + "mlp.c_fc", l, "fc", I, D, true, true);
      lin(b + "mlp.c_proj", l, "proj", D, I, true, true);
    }
    norm(p + "ln_f", -1, "final_norm", D);
    Spec lm{Spec::LmHead, "lm_head", "lm_head.weight", "", {c.vocab_size, D}, false, -1, "lm_head"};
    lm.tied = c.tie_embeddings || !ck.contains("lm_head.weight");
    if (lm.tied) lm.weight = p + "wte.weight";
    s.push_back(lm);
    return s;
  }
  s.push_back(Spec{Spec::Embed, "model.embed_tokens", "model.embed_tokens.weight", "", {c.vocab_size, D}, false, -1, "embed"});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    std::string b = "model.layers." + std::to_string(l) + ".";
    norm(b + "input_layernorm", l, "ln1", D);
    lin(b + "self_attn.q_proj", l, "q", H * hd, D, c.qkv_bias);
    lin(b + "self_attn.k_proj", l, "k", Hkv * hd, D, c.qkv_bias);
    lin(b + "self_attn.v_proj", l, "v", Hkv * hd, D, c.qkv_bias);
    lin(b + "self_attn.o_proj", l, "o", D, H * hd, c.o_bias);
    if (c.qk_norm) {
      s.push_back(Spec{Spec::QkNorm, b + "self_attn.q_norm", b + "self_attn.q_norm.weight", "", {hd}, false, l, "q_norm"});
      s.push_back(Spec{Spec::QkNorm, b + "self_attn.k_norm", b + "self_attn.k_norm.weight", "", {hd}, false, l, "k_norm"});
    }
    norm(b + "post_attention_layernorm", l, "ln2", D);
    if (c.is_moe_layer(l)) {
      const int64_t E = c.num_experts, Im = c.moe_intermediate_size;
      s.push_back(Spec{Spec::Router, b + "mlp.gate", b + "mlp.gate.weight", "", {E, D}, false, l, "router"});
      for (int64_t e = 0; e < E; ++e) {
        std::string x = b + "mlp.experts." + std::to_string(e) + ".", f = "e" + std::to_string(e) + ".";
        lin(x + "gate_proj", l, f + "gate", Im, D, false);
        lin(x + "up_proj", l, f + "up", Im, D, false);
        lin(x + "down_proj", l, f + "down", D, Im, false);
      }
    } else if (c.gated_mlp) {
      lin(b + "mlp.gate_proj", l, "gate", I, D, c.mlp_bias);
      lin(b + "mlp.up_proj", l, "up", I, D, c.mlp_bias);
      lin(b + "mlp.down_proj", l, "down", D, I, c.mlp_bias);
    } else {
      lin(b + "mlp.c_fc", l, "fc", I, D, c.mlp_bias);
      lin(b + "mlp.c_proj", l, "proj", D, I, c.mlp_bias);
    }
  }
  norm("model.norm", -1, "final_norm", D);
  Spec lm{Spec::LmHead, "lm_head", "lm_head.weight", "", {c.vocab_size, D}, false, -1, "lm_head"};
  lm.tied = c.tie_embeddings;
  if (lm.tied) lm.weight = "model.embed_tokens.weight";
  s.push_back(lm);
  return s;
}

// Checkpoint facts about pre-quantization (bitsandbytes quantization_config).
struct Prequant {
  bool on = false;
  Precision precision = Precision::NF4;
};

Prequant prequant_of(const ModelConfig& c) {
  Prequant p;
  const json& q = c.quantization_config;
  if (q.is_null()) return p;
  std::string method = q.value("quant_method", "bitsandbytes");
  if (method != "bitsandbytes")
    fail(c.path, ": quantization_config.quant_method '", method, "' is not supported (bitsandbytes only)");
  if (q.value("load_in_4bit", false)) {
    std::string t = q.value("bnb_4bit_quant_type", "fp4");
    p.on = true;
    p.precision = t == "nf4" ? Precision::NF4 : t == "fp4" ? Precision::FP4 : (fail(c.path, ": bnb_4bit_quant_type '", t, "' is not supported"), Precision::NF4);
  } else if (q.value("load_in_8bit", false)) {
    p.on = true;
    p.precision = Precision::INT8;
  } else {
    fail(c.path, ": quantization_config has neither load_in_4bit nor load_in_8bit");
  }
  return p;
}

at::ScalarType dtype_of_torch_name(const std::string& s) {
  if (s == "bfloat16") return at::kBFloat16;
  if (s == "float16") return at::kHalf;
  if (s == "float32") return at::kFloat;
  return at::ScalarType::Undefined;
}

Precision precision_of_dtype(at::ScalarType t) {
  return t == at::kBFloat16 ? Precision::BF16 : t == at::kHalf ? Precision::FP16 : Precision::FP32;
}

struct Resolved {
  Precision precision;
  at::ScalarType act;
  at::Device device{at::kCPU};
  Prequant pre;
  double int8_threshold = 6.0;
};

Resolved resolve(const ModelConfig& c, const Checkpoint& ck, const std::vector<Spec>& specs, const LoadOptions& o) {
  Resolved r;
  auto kind = [](const std::string& d) { return d.rfind("cuda", 0) == 0 ? "cuda" : "cpu"; };
  for (const auto& d : o.devices)
    QSAE_CHECK_TYPE(std::string(kind(d)) == kind(o.devices.front()), "devices: mixes ", o.devices.front(), " and ", d,
                    " (a device map spans devices of one kind)");
  r.device = parse_device(o.devices.empty() ? o.device : o.devices.front());
  r.pre = prequant_of(c);
  r.int8_threshold = o.int8_threshold;
  // A pre-quantized int8 checkpoint records its outlier threshold; an explicit option still wins.
  if (r.pre.on && r.pre.precision == Precision::INT8 && o.int8_threshold == 6.0 &&
      c.quantization_config.contains("llm_int8_threshold") && c.quantization_config["llm_int8_threshold"].is_number())
    r.int8_threshold = c.quantization_config["llm_int8_threshold"].get<double>();
  if (r.pre.on) {
    if (o.precision && *o.precision != r.pre.precision)
      fail(c.path, ": the checkpoint is pre-quantized to ", precision_name(r.pre.precision),
           " (quantization_config); precision ", precision_name(*o.precision), " is not available");
    r.precision = r.pre.precision;
  } else if (o.precision) {
    r.precision = *o.precision;
  } else {
    at::ScalarType t = dtype_of_torch_name(c.torch_dtype);
    if (t == at::ScalarType::Undefined && ck.contains(specs[0].weight))
      t = dtype_from_safetensors(ck.info(specs[0].weight).dtype);
    r.precision = precision_of_dtype(t == at::ScalarType::Undefined ? at::kFloat : t);
  }
  if (is_quantized(r.precision)) {
    r.act = o.compute_dtype ? *o.compute_dtype : (r.device.is_cuda() ? at::kBFloat16 : at::kFloat);
  } else {
    r.act = dense_dtype(r.precision);
  }
  if (r.precision == Precision::FP16 || r.act == at::kHalf) {
    // fine on CUDA; on CPU computed in fp32 and rounded
  }
  if (o.blocksize < 32 || o.blocksize > 4096 || (o.blocksize & (o.blocksize - 1)))
    fail_range("blocksize: ", o.blocksize, " is not a power of two in 32..4096");
  return r;
}

// Where `name` should have been: its shard, the lone weight file, or the index of a sharded checkpoint.
std::string expected_shard(const Checkpoint& ck, const std::string& name) {
  if (ck.contains(name)) return basename_of(ck.shard_path(name));
  auto sh = ck.shards();
  return sh.size() == 1 ? basename_of(sh[0]) : std::string("model.safetensors.index.json");
}

void check_tensor(const Checkpoint& ck, const ModelConfig& c, const std::string& name, const std::vector<int64_t>& shape) {
  if (!ck.contains(name)) fail(name, ": missing from ", expected_shard(ck, name));
  const auto& info = ck.info(name);
  if (info.shape != shape)
    fail(name, ": shape ", shape_str(info.shape), " in ", basename_of(ck.shard_path(name)), " disagrees with ",
         basename_of(c.path), " (expected ", shape_str(shape), ")");
}

int64_t q4_bytes(int64_t numel, int64_t blocksize, bool dq) {
  int64_t nb = (numel + blocksize - 1) / blocksize;
  int64_t b = (numel + 1) / 2;
  if (!dq) return b + nb * 4;
  return b + nb + ((nb + 255) / 256) * 4 + 256 * 4 + 4;
}

// Reads tensors with pread into fresh CPU buffers (peak memory: one tensor, not a whole mapped shard).
class Reader {
 public:
  explicit Reader(std::shared_ptr<Checkpoint> ck) : ck_(std::move(ck)) {}
  ~Reader() {
    for (auto& [p, f] : files_) ::close(f.fd);
  }
  at::Tensor read(const std::string& name) {
    const auto& info = ck_->info(name);
    const std::string& path = ck_->shard_path(name);
    auto& f = file(path);
    at::Tensor t = at::empty(info.shape, at::TensorOptions().dtype(dtype_from_safetensors(info.dtype)));
    uint64_t n = info.end - info.begin, done = 0;
    QSAE_CHECK(uint64_t(t.numel()) * t.element_size() == n, name, ": byte size does not match its shape in ", path);
    char* dst = static_cast<char*>(t.data_ptr());
    while (done < n) {
      ssize_t k = ::pread(f.fd, dst + done, n - done, off_t(f.data_offset + info.begin + done));
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) fail(path, ": read error for ", name, ": ", k < 0 ? std::strerror(errno) : "unexpected end of file");
      done += uint64_t(k);
    }
    return t;
  }
  at::Tensor read_or_undefined(const std::string& name) {
    return ck_->contains(name) ? read(name) : at::Tensor();
  }

 private:
  struct File {
    int fd = -1;
    uint64_t data_offset = 0;
  };
  File& file(const std::string& path) {
    auto it = files_.find(path);
    if (it != files_.end()) return it->second;
    File f;
    f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (f.fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
    uint64_t hl = 0;
    if (::pread(f.fd, &hl, 8, 0) != 8) {
      ::close(f.fd);
      fail(path, ": cannot read the header length");
    }
    f.data_offset = 8 + hl;
    return files_.emplace(path, f).first->second;
  }
  std::shared_ptr<Checkpoint> ck_;
  std::map<std::string, File> files_;
};

quant::Int8Weight i8_to(quant::Int8Weight w, const at::Device& d) {
  w.CB = w.CB.to(d);
  w.SCB = w.SCB.to(d);
  return w;
}

quant::Quant4 q4_to(quant::Quant4 q, const at::Device& d) {
  for (at::Tensor* t : {&q.packed, &q.absmax, &q.quant_absmax, &q.nested_absmax, &q.nested_quant_map})
    if (t->defined()) *t = t->to(d);
  return q;
}

bool prequantized_linear(const Resolved& r, const Checkpoint& ck, const Spec& s) {
  if (!r.pre.on || s.role != Spec::Lin) return false;
  if (r.pre.precision == Precision::INT8) return ck.contains(s.module + ".SCB");
  return ck.contains(s.weight + ".quant_state.bitsandbytes__nf4") || ck.contains(s.weight + ".quant_state.bitsandbytes__fp4");
}

std::shared_ptr<Checkpoint> open_checkpoint(const std::string& dir, const ModelConfig& c) {
  std::string folder = is_directory(dir) ? dir : dir;
  if (!file_exists(join_path(folder, "model.safetensors")) && !file_exists(join_path(folder, "model.safetensors.index.json")))
    fail(folder, ": no weights (expected model.safetensors or model.safetensors.index.json)");
  return Checkpoint::open(folder);
}

}  // namespace

ModelPlan plan_model(const std::string& dir, const LoadOptions& opts) {
  ModelPlan p;
  p.config = load_config(dir);
  auto ck = open_checkpoint(dir, p.config);
  auto specs = make_specs(p.config, *ck);
  Resolved r = resolve(p.config, *ck, specs, opts);
  p.precision = r.precision;
  p.compute_dtype = r.act;
  p.prequantized = r.pre.on;
  const int64_t act_size = int64_t(dtype_size(r.act));
  for (const auto& n : ck->names()) {
    const auto& i = ck->info(n);
    p.checkpoint_bytes += int64_t(i.end - i.begin);
    p.largest_tensor_bytes = std::max<int64_t>(p.largest_tensor_bytes, int64_t(i.end - i.begin));
  }
  for (const auto& s : specs) {
    ModuleInfo m;
    m.name = s.module;
    int64_t numel = 1;
    for (auto d : s.shape) numel *= d;
    const int64_t out = s.conv1d ? s.shape[1] : s.shape[0];
    if (s.role == Spec::LmHead && s.tied) {
      m.name = "lm_head (tied to " + specs[0].module + ")";
      m.precision = dtype_name(r.act);
      p.modules.push_back(m);
      continue;
    }
    bool pq = prequantized_linear(r, *ck, s);
    if (!pq) check_tensor(*ck, p.config, s.weight, s.shape);
    if (!s.bias.empty()) check_tensor(*ck, p.config, s.bias, {out});
    if (s.role == Spec::Lin && is_quantized(r.precision) && (!r.pre.on || pq)) {
      m.precision = precision_name(r.precision);
      m.bytes = r.precision == Precision::INT8 ? numel + out * 4 : q4_bytes(numel, opts.blocksize, opts.double_quant);
      if (!s.bias.empty()) m.bytes += out * act_size;
    } else {
      m.precision = dtype_name(r.act);
      m.bytes = numel * act_size + (s.bias.empty() ? 0 : out * act_size);
    }
    p.total_bytes += m.bytes;
    p.modules.push_back(m);
  }
  return p;
}

struct Loader {
  static std::shared_ptr<Model> load(const std::string& dir, const LoadOptions& opts, const ProgressFn& progress,
                                     const CancelToken* cancel) {
    auto m = std::make_shared<Model>();
    m->cfg_ = load_config(dir);
    const ModelConfig& c = m->cfg_;
    auto ck = open_checkpoint(dir, c);
    auto specs = make_specs(c, *ck);
    Resolved r = resolve(c, *ck, specs, opts);
    m->path_ = dir;
    m->opts_ = opts;
    m->precision_ = r.precision;
    m->act_ = r.act;
    m->device_ = r.device;
    m->prequantized_ = r.pre.on;
    // Device map: layer l on devices[l * n / L]; embeddings with the first device, the head with the last.
    std::vector<at::Device> devs;
    for (const auto& d : opts.devices) devs.push_back(parse_device(d));
    if (devs.empty()) devs.push_back(r.device);
    QSAE_CHECK_RANGE(int64_t(devs.size()) <= std::max<int64_t>(c.num_layers, 1), "devices: ", devs.size(),
                     " devices for ", c.num_layers, " layers");
    m->layer_device_.clear();
    for (int64_t l = 0; l < c.num_layers; ++l) m->layer_device_.push_back(devs[size_t(l * int64_t(devs.size()) / c.num_layers)]);
    m->out_device_ = devs.back();
    // Validate every name and shape before reading anything (one clear error, nothing half-loaded).
    for (const auto& s : specs) {
      if (s.role == Spec::LmHead && s.tied) continue;
      if (!prequantized_linear(r, *ck, s)) check_tensor(*ck, c, s.weight, s.shape);
      if (!s.bias.empty()) check_tensor(*ck, c, s.bias, {s.conv1d ? s.shape[1] : s.shape[0]});
    }
    m->blocks_.resize(c.num_layers);
    for (int64_t l = 0; l < c.num_layers; ++l) {
      m->blocks_[l].window = c.sliding_window[l];
      m->blocks_[l].moe = c.is_moe_layer(l);
      if (m->blocks_[l].moe) m->blocks_[l].experts.resize(c.num_experts);
    }
    if (c.rope) {
      auto [inv, scale] = rope_frequencies(c);
      m->inv_freq_ = inv.to(r.device);
      m->attn_scaling_ = scale;
    }
    Reader rd(ck);
    const at::ScalarType keep = r.act;  // dtype of everything not quantized
    auto dev_of = [&](const Spec& s) {
      if (s.role == Spec::Embed || s.role == Spec::Pos) return m->device_;
      if (s.role == Spec::LmHead || s.layer < 0) return m->out_device_;
      return m->layer_device_[s.layer];
    };
    const Spec* current = nullptr;
    auto to_dev = [&](at::Tensor t) { return t.to(dev_of(*current), keep); };
    const double total = double(specs.size());
    double done = 0;
    for (const auto& s : specs) {
      check_cancel(cancel);
      current = &s;
      if (s.role == Spec::LmHead) {
        m->tied_ = s.tied;
        // Tied: the embedding itself, or a copy on the last device of a device map.
        m->lm_head_ = s.tied ? (m->embed_.device() == m->out_device_ ? m->embed_ : m->embed_.to(m->out_device_))
                             : to_dev(rd.read(s.weight));
      } else if (s.role == Spec::Embed) {
        m->embed_ = to_dev(rd.read(s.weight));
      } else if (s.role == Spec::Pos) {
        m->wpe_ = to_dev(rd.read(s.weight));
      } else if (s.role == Spec::NormM) {
        Norm n{to_dev(rd.read(s.weight)), s.bias.empty() ? at::Tensor() : to_dev(rd.read(s.bias))};
        if (s.layer < 0)
          m->final_norm_ = n;
        else
          (s.field == "ln1" ? m->blocks_[s.layer].ln1 : m->blocks_[s.layer].ln2) = n;
      } else if (s.role == Spec::QkNorm) {
        (s.field == "q_norm" ? m->blocks_[s.layer].q_norm : m->blocks_[s.layer].k_norm) = to_dev(rd.read(s.weight));
      } else if (s.role == Spec::Router) {
        m->blocks_[s.layer].router = to_dev(rd.read(s.weight));
      } else {
        Linear& lin = slot(*m, s);
        Resolved rs = r;
        rs.device = dev_of(s);
        load_linear(lin, s, rs, *ck, rd, opts);
      }
      done += 1;
      if (progress) progress(Progress{"load", done, total, "tensors", s.module});
    }
    return m;
  }

  static Linear& slot(Model& m, const Spec& s) {
    Block& b = m.blocks_[s.layer];
    const std::string& f = s.field;
    if (f == "q") return b.q;
    if (f == "k") return b.k;
    if (f == "v") return b.v;
    if (f == "o") return b.o;
    if (f == "qkv") return b.qkv;
    Mlp* mlp = &b.mlp;
    std::string g = f;
    if (f[0] == 'e') {
      auto dot = f.find('.');
      mlp = &b.experts[std::stoll(f.substr(1, dot - 1))];
      g = f.substr(dot + 1);
    }
    if (g == "gate") return mlp->gate;
    if (g == "up") return mlp->up;
    if (g == "down") return mlp->down;
    if (g == "fc") return mlp->fc;
    if (g == "proj") return mlp->proj;
    fail("internal: unknown module field ", f);
  }

  static void load_linear(Linear& lin, const Spec& s, const Resolved& r, const Checkpoint& ck, Reader& rd,
                          const LoadOptions& opts) {
    const int64_t out = s.conv1d ? s.shape[1] : s.shape[0], in = s.conv1d ? s.shape[0] : s.shape[1];
    lin.in_features = in;
    lin.out_features = out;
    lin.int8_threshold = r.int8_threshold;
    if (!s.bias.empty()) lin.b = rd.read(s.bias).to(r.device, r.act);
    if (prequantized_linear(r, ck, s)) {
      if (r.pre.precision == Precision::INT8) {
        at::Tensor w = rd.read(s.weight), scb = rd.read(s.module + ".SCB");
        QSAE_CHECK(w.scalar_type() == at::kChar && w.sizes().vec() == (std::vector<int64_t>{out, in}), s.weight,
                   ": expected an int8 tensor ", shape_str({out, in}), " (pre-quantized int8 checkpoint)");
        lin.kind = Linear::Kind::Int8;
        lin.i8 = i8_to(quant::load_int8(s.module, w, scb.to(at::kFloat)), r.device);
      } else {
        lin.kind = Linear::Kind::Q4;
        quant::Quant4 q = quant::load_4bit(s.weight, [&](const std::string& n) { return rd.read_or_undefined(n); });
        int64_t numel = 1;
        for (auto d : q.shape) numel *= d;
        QSAE_CHECK(q.shape == (std::vector<int64_t>{out, in}), s.weight, ": quantized shape ", shape_str(q.shape),
                   " disagrees with ", basename_of(ck.path()), " config (expected ", shape_str({out, in}), ")");
        lin.q4 = q4_to(q, r.device);
      }
      return;
    }
    at::Tensor w = rd.read(s.weight);
    if (s.conv1d) w = w.t().contiguous();
    if (is_quantized(r.precision)) {
      at::Tensor wf = w.to(at::kFloat);
      w = at::Tensor();
      if (r.precision == Precision::INT8) {
        lin.kind = Linear::Kind::Int8;
        lin.i8 = i8_to(quant::quantize_int8(wf), r.device);
      } else {
        lin.kind = Linear::Kind::Q4;
        lin.q4 = quant::quantize_4bit(wf, r.precision == Precision::NF4 ? quant::Format::NF4 : quant::Format::FP4,
                                      opts.blocksize, opts.double_quant);
        lin.q4 = q4_to(lin.q4, r.device);
      }
    } else {
      lin.kind = Linear::Kind::Dense;
      lin.w = w.to(r.device, dense_dtype(r.precision));
    }
  }
};

std::shared_ptr<Model> Model::load(const std::string& dir, const LoadOptions& opts, const ProgressFn& progress,
                                   const CancelToken* cancel) {
  if (!file_exists(dir)) fail(dir, ": no such model folder");
  if (!is_directory(dir)) fail(dir, ": expected a model folder (config.json + safetensors)");
  return Loader::load(dir, opts, progress, cancel);
}

std::vector<ModuleInfo> Model::modules() const {
  std::vector<ModuleInfo> out;
  auto tensor_info = [&](const std::string& name, const at::Tensor& w, const at::Tensor& b = {}) {
    int64_t bytes = w.numel() * w.element_size() + (b.defined() ? b.numel() * b.element_size() : 0);
    out.push_back(ModuleInfo{name, dtype_name(w.scalar_type()), bytes});
  };
  auto lin = [&](const std::string& name, const Linear& l) {
    if (l.defined()) out.push_back(ModuleInfo{name, l.precision(), l.bytes()});
  };
  const bool gpt2 = cfg_.family == Family::Gpt2;
  tensor_info(gpt2 ? "transformer.wte" : "model.embed_tokens", embed_);
  if (wpe_.defined()) tensor_info("transformer.wpe", wpe_);
  for (size_t l = 0; l < blocks_.size(); ++l) {
    const Block& b = blocks_[l];
    std::string p = gpt2 ? "transformer.h." + std::to_string(l) + "." : "model.layers." + std::to_string(l) + ".";
    tensor_info(p + (gpt2 ? "ln_1" : "input_layernorm"), b.ln1.w, b.ln1.b);
    lin(p + "attn.c_attn", b.qkv);
    lin(p + "self_attn.q_proj", b.q);
    lin(p + "self_attn.k_proj", b.k);
    lin(p + "self_attn.v_proj", b.v);
    lin(p + (gpt2 ? "attn.c_proj" : "self_attn.o_proj"), b.o);
    if (b.q_norm.defined()) tensor_info(p + "self_attn.q_norm", b.q_norm);
    if (b.k_norm.defined()) tensor_info(p + "self_attn.k_norm", b.k_norm);
    tensor_info(p + (gpt2 ? "ln_2" : "post_attention_layernorm"), b.ln2.w, b.ln2.b);
    if (b.moe) {
      tensor_info(p + "mlp.gate", b.router);
      for (size_t e = 0; e < b.experts.size(); ++e) {
        std::string x = p + "mlp.experts." + std::to_string(e) + ".";
        lin(x + "gate_proj", b.experts[e].gate);
        lin(x + "up_proj", b.experts[e].up);
        lin(x + "down_proj", b.experts[e].down);
      }
    } else {
      lin(p + "mlp.gate_proj", b.mlp.gate);
      lin(p + "mlp.up_proj", b.mlp.up);
      lin(p + "mlp.down_proj", b.mlp.down);
      lin(p + "mlp.c_fc", b.mlp.fc);
      lin(p + "mlp.c_proj", b.mlp.proj);
    }
  }
  tensor_info(gpt2 ? "transformer.ln_f" : "model.norm", final_norm_.w, final_norm_.b);
  if (tied_)
    out.push_back(ModuleInfo{std::string("lm_head (tied to ") + (gpt2 ? "transformer.wte" : "model.embed_tokens") + ")",
                             dtype_name(lm_head_.scalar_type()), 0});
  else
    tensor_info("lm_head", lm_head_);
  return out;
}

QuantSettings Model::quantization() const {
  QuantSettings q;
  if (!is_quantized(precision_)) return q;
  q.type = precision_name(precision_);
  q.prequantized = prequantized_;
  // Every quantized projection shares the settings: read them off the first one.
  for (const Block& b : blocks_)
    for (const Linear* l : {&b.q, &b.qkv, &b.mlp.gate, &b.mlp.fc, b.experts.empty() ? &b.q : &b.experts[0].gate}) {
      if (l->kind == Linear::Kind::Q4) {
        q.blocksize = l->q4.blocksize;
        q.double_quant = l->q4.double_quant;
        return q;
      }
      if (l->kind == Linear::Kind::Int8) {
        q.int8_threshold = l->int8_threshold;
        return q;
      }
    }
  return q;
}

std::vector<at::Device> Model::devices() const {
  std::vector<at::Device> out{device_};
  for (const auto& d : layer_device_)
    if (d != out.back()) out.push_back(d);
  if (out_device_ != out.back()) out.push_back(out_device_);
  return out;
}

int64_t Model::bytes() const {
  int64_t n = 0;
  for (auto& m : modules()) n += m.bytes;
  return n;
}

}  // namespace qsae::model
