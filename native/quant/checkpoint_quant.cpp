// `qsae quantize` in C++: streams tensors of a checkpoint through the quantizers into the HF + bitsandbytes
// safetensors layout, writing to a temp path that is renamed into place only when everything succeeded.
#include "quant/checkpoint_quant.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <set>

#include "common/error.h"
#include "common/tensor_util.h"
#include "io/checkpoint.h"
#include "io/fs.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "quant/quant.h"

namespace qsae::quant {

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

bool is_float_dtype(const std::string& st) { return st == "F32" || st == "F16" || st == "BF16" || st == "F64"; }

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) fail(dir, ": cannot list the folder");
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

void copy_file(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) fail(from, ": cannot read");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_file_atomic(to, bytes);
}

void remove_tree(const std::string& p) {
  struct stat st;
  if (::lstat(p.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    for (const auto& n : list_dir(p)) remove_tree(join_path(p, n));
    ::rmdir(p.c_str());
  } else {
    ::unlink(p.c_str());
  }
}

// Removes a temp folder unless released (an error or a cancel leaves nothing behind).
struct TempDir {
  std::string path;
  bool keep = false;
  ~TempDir() {
    if (!keep && !path.empty()) remove_tree(path);
  }
};

std::string torch_dtype_name(const std::string& st) {
  if (st == "BF16") return "bfloat16";
  if (st == "F16") return "float16";
  return "float32";
}

}  // namespace

bool is_block_projection(const std::string& name) {
  static const std::regex re(
      R"(^(model\.layers|transformer\.h|model\.decoder\.layers|gpt_neox\.layers)\.\d+\.(.+\.)?)"
      R"(([A-Za-z0-9_]*proj|c_fc|c_proj|c_attn|fc1|fc2|query_key_value|dense(_h_to_4h|_4h_to_h)?)\.weight$)");
  if (name.find(".mlp.gate.weight") != std::string::npos) return false;  // MoE router
  if (name.find("norm") != std::string::npos) return false;
  return std::regex_match(name, re) || (name.find(".experts.") != std::string::npos && ends_with(name, ".weight") &&
                                        name.find("layers.") != std::string::npos);
}

QuantizeReport quantize_checkpoint(const std::string& in, const std::string& out, const QuantizeOptions& opts,
                                   const ProgressFn& progress, const CancelToken* cancel) {
  const bool int8 = opts.format == "int8";
  Format f4 = Format::NF4;
  if (!int8) f4 = parse_format(opts.format, "--format");
  if (!int8) check_blocksize(opts.blocksize, "--blocksize");
  QSAE_CHECK(file_exists(in) || is_directory(in), in, ": no such file or folder");
  const bool folder = is_directory(in);
  auto ck = Checkpoint::open(in);
  QuantizeReport rep;
  rep.out = out;
  rep.model_folder = folder;

  std::string model_type;
  json config;
  if (folder) {
    const std::string cfg = join_path(in, "config.json");
    QSAE_CHECK(file_exists(cfg), in, ": config.json is missing (a model folder needs one)");
    config = read_json_file(cfg);
    model_type = config.value("model_type", std::string());
    QSAE_CHECK(!config.contains("quantization_config"), cfg, ": the model is already quantized (",
               "quantization_config present)");
  }
  const bool conv1d = model_type == "gpt2";  // GPT-2's Conv1D stores [in, out]; transformers quantizes W^T

  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::set<std::string> skip_modules;
  const auto names = ck->names();
  std::string dtype_seen;
  int64_t done = 0;
  for (const auto& name : names) {
    check_cancel(cancel);
    const TensorInfo& ti = ck->info(name);
    rep.bytes_in += int64_t(ti.end - ti.begin);
    bool q = is_float_dtype(ti.dtype) && ti.shape.size() >= 2 && ends_with(name, ".weight");
    if (folder) q = q && is_block_projection(name);
    if (folder && !q && ti.shape.size() == 2 && ends_with(name, ".weight") &&
        (name == "lm_head.weight" || name.find(".mlp.gate.weight") != std::string::npos))
      skip_modules.insert(name.substr(0, name.size() - 7));
    at::Tensor t = ck->get(name);
    if (!q) {
      tensors.emplace_back(name, t);
      rep.kept.push_back(name);
    } else {
      if (dtype_seen.empty()) dtype_seen = ti.dtype;
      if (conv1d && t.dim() == 2) t = t.t().contiguous();
      try {
        if (int8) {
          QSAE_CHECK_RANGE(t.dim() == 2, "int8 needs a 2-D weight, got shape ", shape_str(t.sizes()));
          append_int8_tensors(name.substr(0, name.size() - 7), quantize_int8(t), tensors);
        } else {
          append_4bit_tensors(name, quantize_4bit(t, f4, opts.blocksize, opts.double_quant), tensors);
        }
      } catch (const Error& e) {
        throw Error(e.kind(), name + ": " + e.what());
      }
      rep.quantized.push_back(name);
    }
    ++done;
    if (progress) progress({"quantize", double(done), double(names.size()), "tensors", name});
  }
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [n, t] : tensors) rep.bytes_out += t.nbytes();
  check_cancel(cancel);

  std::map<std::string, std::string> meta = {{"format", "pt"}, {"quantized_by", "qsae"},
                                             {"quant_type", opts.format}};
  if (!int8) meta["blocksize"] = std::to_string(opts.blocksize);
  if (!folder) {
    save_safetensors(out, tensors, meta);  // atomic
    return rep;
  }

  // Model folder: build OUT.tmp-PID, then rename it into place.
  TempDir tmp{out + ".tmp-" + std::to_string(::getpid())};
  remove_tree(tmp.path);
  QSAE_CHECK(::mkdir(tmp.path.c_str(), 0755) == 0, tmp.path, ": cannot create the output folder");
  save_safetensors(join_path(tmp.path, "model.safetensors"), tensors, meta);
  json qc = {{"_load_in_4bit", !int8},
             {"_load_in_8bit", int8},
             {"bnb_4bit_compute_dtype", torch_dtype_name(dtype_seen)},
             {"bnb_4bit_quant_storage", "uint8"},
             {"bnb_4bit_quant_type", int8 ? "fp4" : opts.format},
             {"bnb_4bit_use_double_quant", !int8 && opts.double_quant},
             {"llm_int8_enable_fp32_cpu_offload", false},
             {"llm_int8_has_fp16_weight", false},
             {"llm_int8_skip_modules", nullptr},
             {"llm_int8_threshold", opts.threshold},
             {"load_in_4bit", !int8},
             {"load_in_8bit", int8},
             {"quant_method", "bitsandbytes"}};
  if (!skip_modules.empty()) qc["llm_int8_skip_modules"] = std::vector<std::string>(skip_modules.begin(), skip_modules.end());
  config["quantization_config"] = qc;
  write_json_file(join_path(tmp.path, "config.json"), config);
  for (const auto& n : list_dir(in)) {
    if (n == "config.json" || ends_with(n, ".safetensors") || n == "model.safetensors.index.json") continue;
    const std::string p = join_path(in, n);
    if (is_directory(p)) continue;
    copy_file(p, join_path(tmp.path, n));
  }
  check_cancel(cancel);
  if (file_exists(out) || is_directory(out)) {
    const std::string old = out + ".old-" + std::to_string(::getpid());
    QSAE_CHECK(::rename(out.c_str(), old.c_str()) == 0, out, ": cannot replace the existing output");
    if (::rename(tmp.path.c_str(), out.c_str()) != 0) {
      ::rename(old.c_str(), out.c_str());
      fail(out, ": cannot move the output into place");
    }
    remove_tree(old);
  } else {
    QSAE_CHECK(::rename(tmp.path.c_str(), out.c_str()) == 0, out, ": cannot move the output into place");
  }
  tmp.keep = true;
  return rep;
}

}  // namespace qsae::quant
