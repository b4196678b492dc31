// Activation stores and plain .safetensors files as a stream of rows (see activation_source.h).
#include "sae/activation_source.h"

#include <algorithm>

#include "common/error.h"
#include "common/tensor_util.h"
#include "io/fs.h"
#include "io/json.h"
#include "io/safetensors.h"

namespace qsae::sae {

struct ActivationSource::Impl {
  std::vector<std::shared_ptr<SafetensorsFile>> files;
};

namespace {
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
std::string dirname_of(const std::string& p) {
  auto i = p.find_last_of('/');
  return i == std::string::npos ? "." : p.substr(0, i);
}
// The store dtype names of manifest.json (as src/model/activation-store.ts writes them).
at::ScalarType store_dtype(const std::string& mpath, const std::string& name) {
  if (name == "fp32") return at::kFloat;
  if (name == "bf16") return at::kBFloat16;
  if (name == "fp16") return at::kHalf;
  fail(mpath, ": dtype: expected fp32, bf16 or fp16, got '", name, "'");
}
std::string store_dtype_name(at::ScalarType t) {
  return t == at::kFloat ? "fp32" : t == at::kBFloat16 ? "bf16" : t == at::kHalf ? "fp16" : std::string(dtype_name(t));
}
}  // namespace

std::shared_ptr<ActivationSource> ActivationSource::open(const std::string& path_in, const std::string& hook,
                                                         int64_t layer) {
  auto src = std::shared_ptr<ActivationSource>(new ActivationSource());
  src->impl_ = std::make_shared<Impl>();
  src->path_ = path_in;
  std::string folder, mpath;
  int64_t man_d = -1, man_n = -1;  // the manifest's d_model and n_tokens (a store only)
  std::string man_dtype;
  if (is_directory(path_in)) {
    folder = path_in;
  } else if (ends_with(path_in, "manifest.json")) {
    folder = dirname_of(path_in);
  }
  if (!folder.empty()) {
    mpath = join_path(folder, "manifest.json");
    if (!file_exists(mpath)) fail(path_in, ": not an activation store (no manifest.json)");
    src->manifest_ = read_json_file(mpath);
    const auto& m = src->manifest_;
    if (!m.is_object()) fail(mpath, ": expected a JSON object");
    if (!m.contains("shards") || !m["shards"].is_array()) fail(mpath, ": missing \"shards\" array");
    if (m["shards"].empty()) fail(path_in, ": the activation store is empty (no shards)");
    // The fields the reader checks the shards against (the TypeScript reader requires them too).
    auto need = [&](const char* key, bool ok, const char* what) {
      if (!m.contains(key)) fail(mpath, ": ", key, ": missing (", what, ")");
      if (!ok) fail(mpath, ": ", key, ": expected ", what, ", got ", m[key].dump());
    };
    auto str_array = [&](const json& v) {
      return v.is_array() && std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_string(); });
    };
    auto int_array = [&](const json& v) {
      return v.is_array() &&
             std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_number_integer() && e.get<int64_t>() >= 0; });
    };
    need("hooks", m.contains("hooks") && str_array(m["hooks"]), "an array of hook names");
    need("layers", m.contains("layers") && int_array(m["layers"]), "an array of layer indices");
    need("d_model", m.contains("d_model") && m["d_model"].is_number_integer() && m["d_model"].get<int64_t>() > 0,
         "a positive integer");
    need("dtype", m.contains("dtype") && m["dtype"].is_string(), "fp32, bf16 or fp16");
    need("n_tokens", m.contains("n_tokens") && m["n_tokens"].is_number_integer() && m["n_tokens"].get<int64_t>() >= 0,
         "a non-negative integer");
    if (m["hooks"].empty() || m["layers"].empty())
      fail(mpath, ": the manifest lists no ", m["hooks"].empty() ? "hooks" : "layers");
    man_d = m["d_model"].get<int64_t>();
    man_n = m["n_tokens"].get<int64_t>();
    man_dtype = m["dtype"].get<std::string>();
    store_dtype(mpath, man_dtype);  // a known name
    std::vector<std::string> hooks;
    std::vector<int64_t> layers;
    for (const auto& h : m["hooks"]) hooks.push_back(h.get<std::string>());
    for (const auto& l : m["layers"]) layers.push_back(l.get<int64_t>());
    std::string h = hook;
    int64_t L = layer;
    auto listing = [&] {
      std::string s;
      for (const auto& hh : hooks)
        for (auto ll : layers) s += (s.empty() ? "" : ", ") + std::string("acts.") + hh + "." + std::to_string(ll);
      return s;
    };
    if (h.empty()) {
      if (hooks.size() != 1) fail(path_in, ": the store holds several hooks; choose one with --hook (", listing(), ")");
      h = hooks[0];
    }
    if (L < 0) {
      if (layers.size() != 1) fail(path_in, ": the store holds several layers; choose one with --layer (", listing(), ")");
      L = layers[0];
    }
    if (!hooks.empty() && std::find(hooks.begin(), hooks.end(), h) == hooks.end())
      fail(path_in, ": hook '", h, "' is not in the store (", listing(), ")");
    if (!layers.empty() && std::find(layers.begin(), layers.end(), L) == layers.end())
      fail(path_in, ": layer ", L, " is not in the store (", listing(), ")");
    src->hook_ = h;
    src->layer_ = L;
    src->name_ = "acts." + h + "." + std::to_string(L);
    int64_t row = 0;
    for (const auto& sj : m["shards"]) {
      if (!sj.is_object() || !sj.contains("file") || !sj["file"].is_string())
        fail(mpath, ": each shard needs a \"file\" name, got ", sj.dump());
      const std::string file = sj["file"].get<std::string>();
      // shards live in the store folder: no folders, "..", or absolute paths
      if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos)
        fail(mpath, ": shard name \"", file, "\" must be a plain file name");
      Shard s;
      s.path = join_path(folder, file);
      if (!file_exists(s.path)) fail(s.path, ": missing (listed in manifest.json)");
      if (sj.contains("rows") && !(sj["rows"].is_number_integer() && sj["rows"].get<int64_t>() >= 0))
        fail(mpath, ": shard ", file, ": rows: expected a non-negative integer, got ", sj["rows"].dump());
      s.rows = sj.value("rows", int64_t(-1));
      s.first_row = row;
      src->shards_.push_back(s);
      src->impl_->files.push_back(nullptr);
      row += std::max<int64_t>(s.rows, 0);
    }
  } else {
    if (!file_exists(path_in)) fail(path_in, ": no such file or folder");
    src->name_ = "acts";
    Shard s;
    s.path = path_in;
    s.rows = -1;
    src->shards_.push_back(s);
    src->impl_->files.push_back(nullptr);
  }
  // Open every shard's header (mapping is cheap) to check names, shapes and dtypes.
  int64_t row = 0;
  for (size_t i = 0; i < src->shards_.size(); ++i) {
    auto& s = src->shards_[i];
    auto f = SafetensorsFile::open(s.path);
    src->impl_->files[i] = f;
    const TensorInfo* t = f->find(src->name_);
    if (!t) {
      std::string have;
      for (const auto& ti : f->tensors()) have += (have.empty() ? "" : ", ") + ti.name;
      fail(s.path, ": no tensor '", src->name_, "' (has: ", have, ")");
    }
    if (t->shape.size() != 2) fail(s.path, ": tensor '", src->name_, "' must be 2-D [N, D], got ", shape_str(t->shape));
    auto dt = dtype_from_safetensors(t->dtype);
    if (!at::isFloatingType(dt)) fail(s.path, ": tensor '", src->name_, "' must be floating point, got ", t->dtype);
    if (i == 0) {
      src->d_ = t->shape[1];
      src->dtype_ = dt;
      src->has_tokens_ = f->contains("tokens");
      src->has_doc_ = f->contains("doc");
    } else {
      if (t->shape[1] != src->d_) fail(s.path, ": '", src->name_, "' has D=", t->shape[1], " but the first shard has ", src->d_);
      if (dt != src->dtype_) fail(s.path, ": '", src->name_, "' dtype ", t->dtype, " differs from the first shard's");
      src->has_tokens_ = src->has_tokens_ && f->contains("tokens");
      src->has_doc_ = src->has_doc_ && f->contains("doc");
    }
    if (s.rows >= 0 && s.rows != t->shape[0])
      fail(s.path, ": manifest says ", s.rows, " rows but '", src->name_, "' has ", t->shape[0]);
    if (!mpath.empty()) {
      if (t->shape[1] != man_d)
        fail(mpath, ": d_model is ", man_d, " but ", s.path, " holds '", src->name_, "' with D=", t->shape[1]);
      if (store_dtype_name(dt) != man_dtype)
        fail(mpath, ": dtype is ", man_dtype, " but ", s.path, " holds '", src->name_, "' as ", store_dtype_name(dt));
    }
    s.rows = t->shape[0];
    s.first_row = row;
    row += s.rows;
  }
  src->n_rows_ = row;
  if (!mpath.empty() && row != man_n) fail(mpath, ": shards hold ", row, " rows but n_tokens is ", man_n);
  if (row == 0) fail(path_in, ": the activations are empty (0 rows)");
  if (src->d_ <= 0) fail(path_in, ": the activations have D=0");
  return src;
}

std::pair<std::string, int64_t> ActivationSource::locate(int64_t row) const {
  QSAE_CHECK_RANGE(row >= 0 && row < n_rows_, path_, ": row ", row, " out of range [0, ", n_rows_, ")");
  auto it = std::upper_bound(shards_.begin(), shards_.end(), row,
                             [](int64_t r, const Shard& s) { return r < s.first_row; });
  --it;
  return {it->path, row - it->first_row};
}

ActivationChunk ActivationSource::read(int64_t begin, int64_t end, bool check_finite) const {
  QSAE_CHECK_RANGE(begin >= 0 && begin <= end && end <= n_rows_, path_, ": rows [", begin, ", ", end,
                   ") out of range [0, ", n_rows_, ")");
  std::vector<at::Tensor> a, t, d;
  for (size_t i = 0; i < shards_.size() && begin < end; ++i) {
    const auto& s = shards_[i];
    int64_t s_end = s.first_row + s.rows;
    if (s_end <= begin || s.first_row >= end) continue;
    int64_t lo = std::max(begin, s.first_row) - s.first_row;
    int64_t hi = std::min(end, s_end) - s.first_row;
    const auto& f = impl_->files[i];
    a.push_back(f->get(name_).narrow(0, lo, hi - lo));
    if (has_tokens_) t.push_back(f->get("tokens").narrow(0, lo, hi - lo).to(at::kLong));
    if (has_doc_) d.push_back(f->get("doc").narrow(0, lo, hi - lo).to(at::kInt));
  }
  ActivationChunk c;
  c.row0 = begin;
  if (a.empty()) {
    c.acts = at::empty({0, d_}, at::TensorOptions().dtype(dtype_));
  } else {
    c.acts = a.size() == 1 ? a[0] : at::cat(a, 0);
    if (has_tokens_) c.tokens = t.size() == 1 ? t[0] : at::cat(t, 0);
    if (has_doc_) c.doc = d.size() == 1 ? d[0] : at::cat(d, 0);
  }
  if (check_finite) check_finite_rows(*this, c.acts, begin);
  return c;
}

bool ActivationSource::next(ActivationChunk& out, int64_t max_rows) {
  QSAE_CHECK_RANGE(max_rows > 0, "chunk size must be positive");
  if (cursor_ >= n_rows_) return false;
  int64_t end = std::min(n_rows_, cursor_ + max_rows);
  out = read(cursor_, end);
  cursor_ = end;
  return true;
}

void ActivationSource::seek(int64_t row) {
  QSAE_CHECK_RANGE(row >= 0 && row <= n_rows_, path_, ": seek to row ", row, " beyond ", n_rows_);
  cursor_ = row;
}

void check_finite_rows(const ActivationSource& src, const at::Tensor& acts, int64_t row0) {
  auto bad = at::logical_not(at::isfinite(acts.to(at::kFloat))).any(1);
  if (!bad.any().item<bool>()) return;
  int64_t r = bad.nonzero().select(1, 0)[0].item<int64_t>();
  auto row_vals = acts[r].to(at::kFloat);
  bool has_nan = at::isnan(row_vals).any().item<bool>();
  auto [file, local] = src.locate(row0 + r);
  fail(file, ": '", src.tensor_name(), "' row ", local, " (global row ", row0 + r, ") contains ",
       has_nan ? "NaN" : "Inf", " values");
}

}  // namespace qsae::sae
