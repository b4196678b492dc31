// SAE parameters, reference forward, and the SAELens-compatible folder format.
#include "sae/sae.h"

#include <unistd.h>

#include <cmath>
#include <sstream>

#include "common/error.h"
#include "common/tensor_util.h"
#include "io/fs.h"
#include "io/json.h"
#include "io/safetensors.h"

namespace qsae::sae {

std::string canonical_architecture(const std::string& name) {
  if (name == "relu" || name == "standard") return "relu";
  if (name == "topk" || name == "batchtopk" || name == "jumprelu") return name;
  fail_type("unknown SAE architecture '", name, "' (expected relu, topk, batchtopk or jumprelu)");
}

bool is_topk_family(const std::string& arch) { return arch == "topk" || arch == "batchtopk"; }

namespace {
at::ScalarType compute_dtype_for(const at::Tensor& w) {
  return w.is_cuda() ? w.scalar_type() : cpu_compute_dtype(w.scalar_type());
}
at::Tensor as_compute(const at::Tensor& t, at::ScalarType ct) { return t.scalar_type() == ct ? t : t.to(ct); }

std::string torch_dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kDouble: return "float64";
    default: fail("unsupported SAE dtype ", dtype_name(t));
  }
}

bool known_normalization(const std::string& n) {
  return n == "none" || n == "layer_norm" || n == "constant_norm_rescale";
}

// x [N, d_in] -> [N, d_in] in the compute dtype, on the SAE's device.
at::Tensor input_rows(const Sae& s, const at::Tensor& x_in) {
  QSAE_CHECK_RANGE(x_in.dim() >= 1 && x_in.size(-1) == s.d_in, "SAE expects inputs with d_in=", s.d_in,
                   ", got shape ", shape_str(x_in.sizes()));
  auto x = as_compute(x_in.reshape({-1, s.d_in}), compute_dtype_for(s.W_enc));
  if (x.device() != s.W_enc.device()) x = x.to(s.W_enc.device());
  return x;
}

// Pre-activations from the (already normalized) input rows.
at::Tensor pre_from_normalized(const Sae& s, const at::Tensor& xn) {
  auto ct = xn.scalar_type();
  auto x = s.apply_b_dec_to_input ? xn - as_compute(s.b_dec, ct) : xn;
  return at::addmm(as_compute(s.b_enc, ct), x, as_compute(s.W_enc, ct));
}

// Inference activation (see sae.h).
at::Tensor activate(const Sae& s, const at::Tensor& pre) {
  if (s.architecture == "relu") return at::relu(pre);
  if (s.architecture == "jumprelu" || (s.architecture == "batchtopk" && s.threshold.defined())) {
    auto thr = as_compute(s.threshold, pre.scalar_type());
    return pre * (pre > thr).to(pre.scalar_type()) * (pre > 0).to(pre.scalar_type());
  }
  // topk (and batchtopk without a threshold): k largest per row.
  auto [vals, idx] = at::topk(pre, std::min(s.k, s.d_sae), 1);
  return at::zeros_like(pre).scatter_(1, idx, at::relu(vals));
}

std::string position_str(const at::Tensor& t, int64_t flat) {
  std::vector<int64_t> idx(t.dim());
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    idx[d] = flat % t.size(d);
    flat /= t.size(d);
  }
  return shape_str(idx);
}
}  // namespace

at::Tensor Sae::normalize_input(const at::Tensor& x, InputNorm* stats) const {
  if (normalize_activations == "none") return x;
  if (normalize_activations == "layer_norm") {
    // SAELens: mu = mean, std = torch.std (unbiased) of x - mu, x' = (x - mu) / (std + 1e-5)
    auto mu = x.mean({1}, true);
    auto xc = x - mu;
    auto sd = (xc.pow(2).sum({1}, true) / double(x.size(1) - 1)).sqrt();
    if (stats) stats->mean = mu, stats->std = sd;
    return xc / (sd + 1e-5);
  }
  QSAE_CHECK(normalize_activations == "constant_norm_rescale", "SAE: unknown normalize_activations '",
             normalize_activations, "'");
  auto c = std::sqrt(double(x.size(1))) / x.norm(2, {1}, true);
  if (stats) stats->coeff = c;
  return x * c;
}

at::Tensor Sae::denormalize_output(const at::Tensor& y, const InputNorm& st) const {
  if (normalize_activations == "none") return y;
  if (normalize_activations == "layer_norm") {
    QSAE_CHECK(st.mean.defined() && st.std.defined(), "SAE: layer_norm statistics missing");
    return y * st.std + st.mean;
  }
  QSAE_CHECK(st.coeff.defined(), "SAE: constant_norm_rescale statistics missing");
  return y / st.coeff;
}

at::Tensor Sae::pre_acts(const at::Tensor& x_in) const {
  return pre_from_normalized(*this, normalize_input(input_rows(*this, x_in)));
}

at::Tensor Sae::encode(const at::Tensor& x) const { return activate(*this, pre_acts(x)); }

at::Tensor Sae::decode(const at::Tensor& f, const at::Tensor& x_in) const {
  QSAE_CHECK_RANGE(f.dim() >= 1 && f.size(-1) == d_sae, "SAE decode expects d_sae=", d_sae, ", got shape ",
                   shape_str(f.sizes()));
  auto ct = compute_dtype_for(W_dec);
  auto y = at::addmm(as_compute(b_dec, ct), as_compute(f.reshape({-1, d_sae}), ct), as_compute(W_dec, ct));
  if (!normalizes_per_token()) return y;
  QSAE_CHECK_TYPE(x_in.defined(), "this SAE normalizes its input per token (normalize_activations=",
                  normalize_activations, "): decode needs the input the latents were encoded from");
  auto x = input_rows(*this, x_in);
  QSAE_CHECK_RANGE(x.size(0) == y.size(0), "SAE decode: ", y.size(0), " rows of latents but ", x.size(0),
                   " input rows");
  InputNorm st;
  normalize_input(x, &st);
  return denormalize_output(y, st);
}

ForwardResult Sae::forward(const at::Tensor& x_in, bool l1_norm_weighted, const at::Tensor& dead_mask,
                           int64_t aux_k) const {
  ForwardResult r;
  auto ct = compute_dtype_for(W_enc);
  auto x = input_rows(*this, x_in);
  InputNorm st;
  auto xn = normalize_input(x, &st);  // x itself without a run-time normalization
  auto pre = pre_from_normalized(*this, xn);
  const int64_t n = x.size(0);
  if (architecture == "relu") {
    r.latents = at::relu(pre);
  } else if (architecture == "topk") {
    auto tk = at::topk(pre, std::min(k, d_sae), 1);
    r.values = at::relu(std::get<0>(tk));
    r.indices = std::get<1>(tk);
    r.latents = at::zeros_like(pre).scatter(1, r.indices, r.values);
  } else if (architecture == "batchtopk") {
    auto a = at::relu(pre);
    int64_t kk = std::min<int64_t>(k * n, a.numel());
    auto flat_idx = std::get<1>(at::topk(a.reshape({-1}), kk, 0, true, false));
    auto mask = at::zeros({a.numel()}, a.options().dtype(at::kBool)).index_fill_(0, flat_idx, true).reshape(a.sizes());
    r.latents = a * mask.to(a.scalar_type());
  } else {  // jumprelu, with straight-through pseudo-derivatives for the threshold (rectangle kernel)
    const double eps = kJumpReluBandwidth;
    auto thr = as_compute(threshold, ct);
    auto z = pre;
    auto on = (z > thr).to(ct);
    auto kern = ((z.detach() - thr.detach()).abs() < eps / 2).to(ct) / eps;  // K((z-θ)/ε)/ε
    auto c = (-(thr.detach()) * kern).detach();                                // d f / d θ
    r.latents = z * on.detach() + (c * thr - (c * thr).detach());
    // L0 with the pseudo-derivative d H(z-θ)/dθ = -K/ε
    auto c0 = (-kern).detach();
    auto step = on.detach() + (c0 * thr - (c0 * thr).detach());
    r.l1 = step.sum(1).mean();
  }
  auto x_hat_n = at::addmm(as_compute(b_dec, ct), r.latents, as_compute(W_dec, ct));
  r.x_hat = denormalize_output(x_hat_n, st);
  r.mse = (r.x_hat - x).pow(2).mean();
  if (!r.l1.defined()) {
    if (l1_norm_weighted)
      r.l1 = (r.latents.abs() * as_compute(W_dec, ct).norm(2, {1})).sum(1).mean();
    else
      r.l1 = r.latents.abs().sum(1).mean();
  }
  r.l0 = (r.latents.detach() != 0).to(at::kFloat).sum(1).mean();
  // aux-k: reconstruct the residual from the top aux_k pre-activations of dead latents.
  r.aux = at::zeros({}, x.options());
  if (is_topk_family(architecture) && dead_mask.defined() && aux_k > 0) {
    int64_t n_dead = dead_mask.sum().item<int64_t>();
    if (n_dead > 0) {
      int64_t ka = std::min(aux_k, n_dead);
      auto masked = at::where(dead_mask.to(pre.device()).unsqueeze(0), pre, at::full({}, -INFINITY, pre.options()));
      auto tk = at::topk(masked, ka, 1);
      auto av = at::relu(std::get<0>(tk));
      auto ai = std::get<1>(tk);
      auto rec = at::zeros_like(pre).scatter(1, ai, av).mm(as_compute(W_dec, ct));
      auto resid = (xn - x_hat_n).detach();
      auto denom = (resid - resid.mean(0, true)).pow(2).sum(1).mean();
      r.aux = at::nan_to_num((rec - resid).pow(2).sum(1).mean() / denom, 0.0);
    }
  }
  return r;
}

void Sae::normalize_decoder() {
  c10::NoGradGuard ng;
  auto norms = W_dec.to(at::kFloat).norm(2, {1}).clamp_min(1e-12);  // [d_sae]
  W_dec.copy_(W_dec / norms.unsqueeze(1).to(W_dec.scalar_type()));
  if (architecture == "relu" || architecture == "jumprelu") {
    // f_j scales by ||W_dec_j||, so the reconstruction is unchanged.
    W_enc.copy_(W_enc * norms.unsqueeze(0).to(W_enc.scalar_type()));
    b_enc.copy_(b_enc * norms.to(b_enc.scalar_type()));
    if (threshold.defined()) threshold.copy_(threshold * norms.to(threshold.scalar_type()));
  }
}

Sae Sae::to(const at::Device& device, at::ScalarType dt) const {
  Sae s = *this;
  auto cv = [&](const at::Tensor& t) { return t.defined() ? t.to(device, dt) : t; };
  s.W_enc = cv(W_enc);
  s.b_enc = cv(b_enc);
  s.W_dec = cv(W_dec);
  s.b_dec = cv(b_dec);
  s.threshold = cv(threshold);
  return s;
}

std::vector<std::pair<std::string, at::Tensor>> Sae::named_tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> v = {{"W_enc", W_enc}, {"b_enc", b_enc}, {"W_dec", W_dec}, {"b_dec", b_dec}};
  if (threshold.defined()) v.emplace_back("threshold", threshold);
  return v;
}

void Sae::validate(const std::string& where) const {
  canonical_architecture(architecture);
  if (!known_normalization(normalize_activations))
    fail(where, ": unsupported normalize_activations '", normalize_activations, "'");
  auto chk = [&](const at::Tensor& t, const char* name, std::vector<int64_t> shape) {
    if (!t.defined()) fail(where, ": missing tensor '", name, "'");
    if (t.sizes().vec() != shape)
      fail_range(where, ": tensor '", name, "' has shape ", shape_str(t.sizes()), ", expected ", shape_str(shape));
  };
  if (d_in <= 0 || d_sae <= 0) fail_range(where, ": d_in and d_sae must be positive (got ", d_in, ", ", d_sae, ")");
  chk(W_enc, "W_enc", {d_in, d_sae});
  chk(b_enc, "b_enc", {d_sae});
  chk(W_dec, "W_dec", {d_sae, d_in});
  chk(b_dec, "b_dec", {d_in});
  if (architecture == "jumprelu") chk(threshold, "threshold", {d_sae});
  if (architecture == "topk" && (k <= 0 || k > d_sae)) fail_range(where, ": topk needs 0 < k <= d_sae (k=", k, ")");
  if (architecture == "batchtopk" && !threshold.defined() && k <= 0) fail_range(where, ": batchtopk needs k or a threshold");
}

void Sae::check_finite(const std::string& where) const {
  for (const auto& [name, t] : named_tensors()) {
    auto bad = at::logical_not(at::isfinite(t)).reshape({-1});
    if (!bad.any().item<bool>()) continue;
    int64_t flat = bad.nonzero().select(1, 0)[0].item<int64_t>();
    double v = t.reshape({-1})[flat].item<double>();
    fail(where, ": tensor '", name, "' holds ", std::isnan(v) ? "NaN" : (v > 0 ? "Inf" : "-Inf"), " at ",
         position_str(t, flat), "; SAE weights must be finite");
  }
}

Sae init_sae(const std::string& architecture, int64_t d_in, int64_t d_sae, int64_t k, at::Generator gen,
             double init_scale) {
  Sae s;
  s.architecture = canonical_architecture(architecture);
  QSAE_CHECK_RANGE(d_in > 0 && d_sae > 0, "SAE sizes must be positive (d_in=", d_in, ", d_sae=", d_sae, ")");
  s.d_in = d_in;
  s.d_sae = d_sae;
  s.k = k;
  if (is_topk_family(s.architecture))
    QSAE_CHECK_RANGE(k > 0 && k <= d_sae, "--k must be in [1, d_sae=", d_sae, "] for ", s.architecture, " (got ", k, ")");
  auto opt = at::TensorOptions().dtype(at::kFloat);
  auto w = at::randn({d_sae, d_in}, gen, opt);
  w = w / w.norm(2, {1}, true) * init_scale;
  s.W_dec = w.contiguous();
  s.W_enc = w.t().contiguous();
  s.b_enc = at::zeros({d_sae}, opt);
  s.b_dec = at::zeros({d_in}, opt);
  if (s.architecture == "jumprelu") s.threshold = at::full({d_sae}, 1e-3, opt);
  return s;
}

// ---- folder format ----

std::string saelens_architecture(const Sae& s) {
  if (s.architecture == "relu") return "standard";
  // batchtopk runs as f = relu(pre) * (pre > threshold) at inference: SAELens's jumprelu (its own batchtopk
  // trainer saves it so); without a threshold qsae keeps its per-row top-k, i.e. topk
  if (s.architecture == "batchtopk") return s.threshold.defined() ? "jumprelu" : "topk";
  return s.architecture;
}

json make_cfg(const Sae& s) {
  json c;
  c["architecture"] = saelens_architecture(s);
  c["d_in"] = s.d_in;
  c["d_sae"] = s.d_sae;
  c["dtype"] = torch_dtype_name(s.W_enc.scalar_type());
  c["device"] = "cpu";
  c["apply_b_dec_to_input"] = s.apply_b_dec_to_input;
  c["normalize_activations"] = s.normalize_activations;
  if (is_topk_family(s.architecture)) c["k"] = s.k;
  json md = json::object();
  if (s.cfg.is_object()) {
    if (s.cfg.contains("metadata") && s.cfg["metadata"].is_object()) md = s.cfg["metadata"];
    for (auto it = s.cfg.begin(); it != s.cfg.end(); ++it)
      if (!c.contains(it.key()) && it.key() != "metadata") c[it.key()] = it.value();
  }
  md["sae_lens_compatible"] = true;
  md["qsae_version"] = QSAE_VERSION;
  md["qsae_architecture"] = s.architecture;
  c["metadata"] = md;
  // SAELens also reads these top-level names (written only when known: its loader expects a string hook_name).
  auto top = [&](const char* from, const char* to) {
    if (md.contains(from) && !md[from].is_null()) c[to] = md[from];
  };
  top("model", "model_name");
  top("hook_name", "hook_name");
  top("layer", "hook_layer");
  return c;
}

Sae load_sae(const std::string& folder) {
  std::string cfg_path = join_path(folder, "cfg.json");
  if (!is_directory(folder)) fail(folder, ": not an SAE folder (expected cfg.json + sae_weights.safetensors)");
  json c = read_json_file(cfg_path);
  Sae s;
  s.cfg = c;
  auto get_i = [&](const char* key) -> int64_t {
    if (!c.contains(key) || !c[key].is_number_integer()) fail(cfg_path, ": missing integer \"", key, "\"");
    return c[key].get<int64_t>();
  };
  auto get_s = [&](const json& o, const char* key, const std::string& dflt) -> std::string {
    if (!o.contains(key) || o[key].is_null()) return dflt;
    if (!o[key].is_string()) fail(cfg_path, ": \"", key, "\" must be a string, got ", o[key].dump());
    return o[key].get<std::string>();
  };
  s.d_in = get_i("d_in");
  s.d_sae = get_i("d_sae");
  std::string arch = get_s(c, "architecture", "standard");
  std::string act_fn = get_s(c, "activation_fn_str", get_s(c, "activation_fn", ""));
  if ((arch == "standard" || arch == "relu") && act_fn == "topk") arch = "topk";
  try {
    s.architecture = canonical_architecture(arch);
  } catch (const Error&) {
    fail(cfg_path, ": unsupported architecture '", arch, "' (qsae loads standard/relu, topk, batchtopk, jumprelu)");
  }
  // qsae's own type (SAELens's name is lossy: batchtopk is saved as jumprelu)
  if (c.contains("metadata") && c["metadata"].is_object() && c["metadata"].contains("qsae_architecture")) {
    std::string own = get_s(c["metadata"], "qsae_architecture", "");
    try {
      s.architecture = canonical_architecture(own);
    } catch (const Error&) {
      fail(cfg_path, ": unsupported metadata.qsae_architecture '", own, "' (expected relu, topk, batchtopk or jumprelu)");
    }
  }
  // run-time input normalization (sae.h); SAELens's old bool spelling: true = expected_average_only_in
  std::string norm = "none";
  if (c.contains("normalize_activations") && c["normalize_activations"].is_boolean())
    norm = c["normalize_activations"].get<bool>() ? "expected_average_only_in" : "none";
  else
    norm = get_s(c, "normalize_activations", "none");
  if (norm != "expected_average_only_in" && !known_normalization(norm))
    fail(cfg_path, ": unsupported normalize_activations '", norm,
         "' (qsae applies none, layer_norm, constant_norm_rescale and expected_average_only_in)");
  s.apply_b_dec_to_input = c.value("apply_b_dec_to_input", false);
  if (c.contains("k") && c["k"].is_number_integer()) s.k = c["k"].get<int64_t>();
  if (s.k == 0 && c.contains("activation_fn_kwargs") && c["activation_fn_kwargs"].is_object())
    s.k = c["activation_fn_kwargs"].value("k", int64_t(0));
  std::string wpath = join_path(folder, "sae_weights.safetensors");
  if (!file_exists(wpath)) fail(folder, ": missing sae_weights.safetensors");
  auto f = SafetensorsFile::open(wpath);
  auto get = [&](const char* n, bool required) -> at::Tensor {
    if (!f->contains(n)) {
      if (required) fail(wpath, ": missing tensor '", n, "'");
      return {};
    }
    return f->get(n).clone();  // own the memory (the mapping may be replaced on re-save)
  };
  s.W_enc = get("W_enc", true);
  s.b_enc = get("b_enc", true);
  s.W_dec = get("W_dec", true);
  s.b_dec = get("b_dec", true);
  s.threshold = get("threshold", s.architecture == "jumprelu");
  if (!s.threshold.defined() && f->contains("log_threshold")) s.threshold = get("log_threshold", true).exp();
  s.validate(folder);
  s.check_finite(wpath);
  if (norm == "expected_average_only_in") {
    // A SAELens training checkpoint: the weights expect x * scaling_factor (activation_scaler.json beside them).
    // Fold it as SAELens does when a run ends (W_enc * s, W_dec / s, b_dec / s; the pre-activations and so a
    // threshold are unchanged). Without the file the factor is already folded (or unknown): identity, as in SAELens.
    std::string spath = join_path(folder, "activation_scaler.json");
    if (file_exists(spath)) {
      json sj = read_json_file(spath);
      if (!sj.is_object() || !sj.contains("scaling_factor") || !(sj["scaling_factor"].is_number() || sj["scaling_factor"].is_null()))
        fail(spath, ": expected {\"scaling_factor\": number or null}");
      if (sj["scaling_factor"].is_number()) {
        double sf = sj["scaling_factor"].get<double>();
        if (!(std::isfinite(sf) && sf > 0)) fail(spath, ": scaling_factor must be a positive number, got ", sf);
        auto scaled = [&](const at::Tensor& t, double m) { return (t.to(at::kDouble) * m).to(t.scalar_type()); };
        s.W_enc = scaled(s.W_enc, sf);
        s.W_dec = scaled(s.W_dec, 1.0 / sf);
        s.b_dec = scaled(s.b_dec, 1.0 / sf);
      }
    }
    norm = "none";
  }
  s.normalize_activations = norm;
  return s;
}

void check_replaceable_output(const std::string& path) {
  if (!file_exists(path)) return;
  if (!is_directory(path)) fail(path, ": exists and is a file; refusing to replace it with an SAE folder");
  if (is_empty_dir(path) || file_exists(join_path(path, "cfg.json")) || file_exists(join_path(path, "grid.json")))
    return;
  fail(path, ": exists and is not a qsae SAE or grid folder (no cfg.json or grid.json); refusing to replace it");
}

void replace_output_folder(const std::string& tmp, const std::string& dest) {
  check_replaceable_output(dest);
  if (!file_exists(dest)) {
    rename_path(tmp, dest);
    return;
  }
  std::string old = dest + ".old-" + std::to_string(::getpid());
  remove_tree(old);
  rename_path(dest, old);
  try {
    rename_path(tmp, dest);
  } catch (...) {
    rename_path(old, dest);
    throw;
  }
  remove_tree(old);
}

namespace {
std::string strip_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}
}  // namespace

void save_sae(const std::string& folder_in, const Sae& s, const at::Tensor& log10_density) {
  const std::string folder = strip_trailing_slashes(folder_in);
  s.validate(folder);
  check_replaceable_output(folder);
  make_dirs(parent_dir(folder));
  std::string tmp = folder + ".tmp-" + std::to_string(::getpid());
  remove_tree(tmp);
  make_dirs(tmp);
  try {
    std::vector<std::pair<std::string, at::Tensor>> ts;
    for (auto& [n, t] : s.named_tensors()) ts.emplace_back(n, t.detach().to(at::kCPU).contiguous());
    save_safetensors(join_path(tmp, "sae_weights.safetensors"), ts);
    if (log10_density.defined())
      save_safetensors(join_path(tmp, "sparsity.safetensors"), {{"sparsity", log10_density.detach().to(at::kCPU, at::kFloat).contiguous()}});
    write_json_file(join_path(tmp, "cfg.json"), make_cfg(s));
    replace_output_folder(tmp, folder);
  } catch (...) {
    remove_tree(tmp);
    throw;
  }
}

}  // namespace qsae::sae
