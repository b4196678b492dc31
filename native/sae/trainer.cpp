// The SAE trainer (see trainer.h).
#include "sae/trainer.h"

#include <ATen/core/grad_mode.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/tensor_util.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "sae/activation_source.h"
#include "sae/fused_cpu.h"
#include "sae/sae_cuda.h"

namespace qsae::sae {

namespace {
using Clock = std::chrono::steady_clock;
constexpr int64_t kBlock = 256;

std::string fmt_num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

at::Generator gen_for(uint64_t seed, uint64_t a, uint64_t b = 0) {
  uint64_t h = seed * 0x9E3779B97F4A7C15ull ^ (a + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull ^
               (b + 0x2545F4914F6CDD1Dull) * 0x94D049BB133111EBull;
  return at::make_generator<at::CPUGeneratorImpl>(h & 0x7fffffffffffffffull);
}

// The shuffled row stream (see trainer.h).
class RowStream {
 public:
  RowStream(std::shared_ptr<ActivationSource> src, uint64_t seed, int64_t window_rows, float scale, at::Device dev)
      : src_(std::move(src)), seed_(seed), scale_(scale), dev_(dev) {
    n_ = src_->n_rows();
    nb_ = (n_ + kBlock - 1) / kBlock;
    bpw_ = std::max<int64_t>(1, window_rows / kBlock);
    if (bpw_ >= nb_) bpw_ = nb_;
    nw_ = (nb_ + bpw_ - 1) / bpw_;
  }
  int64_t n_rows() const { return n_; }
  // rows [g, g+count) of the infinite stream, fp32 normalized, on the device.
  at::Tensor rows(int64_t g, int64_t count) {
    std::vector<at::Tensor> parts;
    while (count > 0) {
      int64_t e = g / n_, p = g % n_;
      // find the window holding position p of epoch e
      load_epoch(e);
      int64_t w = std::upper_bound(win_start_.begin(), win_start_.end(), p) - win_start_.begin() - 1;
      load_window(e, w);
      int64_t off = p - win_start_[w];
      int64_t take = std::min(count, win_rows_.size(0) - off);
      parts.push_back(win_rows_.narrow(0, off, take));
      g += take;
      count -= take;
    }
    return parts.size() == 1 ? parts[0] : at::cat(parts, 0);
  }

 private:
  void load_epoch(int64_t e) {
    if (e == epoch_) return;
    epoch_ = e;
    win_ = -1;
    block_order_ = nb_ > 1 ? at::randperm(nb_, gen_for(seed_, 1, e), at::kLong) : at::zeros({1}, at::kLong);
    win_start_.clear();
    int64_t pos = 0;
    auto bo = block_order_.accessor<int64_t, 1>();
    for (int64_t w = 0; w < nw_; ++w) {
      win_start_.push_back(pos);
      for (int64_t b = w * bpw_; b < std::min(nb_, (w + 1) * bpw_); ++b)
        pos += std::min(kBlock, n_ - bo[b] * kBlock);
    }
  }
  void load_window(int64_t e, int64_t w) {
    if (w == win_) return;
    win_ = w;
    auto bo = block_order_.accessor<int64_t, 1>();
    // global row indices of this window, in block order, then permuted
    std::vector<int64_t> idx;
    for (int64_t b = w * bpw_; b < std::min(nb_, (w + 1) * bpw_); ++b) {
      int64_t r0 = bo[b] * kBlock, r1 = std::min(n_, r0 + kBlock);
      for (int64_t r = r0; r < r1; ++r) idx.push_back(r);
    }
    auto gidx = at::tensor(idx, at::kLong);
    auto perm = at::randperm(int64_t(idx.size()), gen_for(seed_, 2 + uint64_t(e), uint64_t(w)), at::kLong);
    gidx = gidx.index_select(0, perm);
    if (nw_ == 1) {
      // the whole set fits: load once, re-index each epoch
      if (!all_.defined()) all_ = load_rows(0, n_);
      win_rows_ = all_.index_select(0, gidx.to(all_.device()));
    } else {
      // read the window's blocks (sorted for sequential reads), then gather in permuted order
      auto sorted = std::get<0>(gidx.sort());
      std::vector<at::Tensor> parts;
      auto sa = sorted.accessor<int64_t, 1>();
      int64_t i = 0, m = sorted.size(0);
      while (i < m) {
        int64_t j = i;
        while (j + 1 < m && sa[j + 1] == sa[j] + 1) ++j;
        parts.push_back(load_rows(sa[i], sa[j] + 1));
        i = j + 1;
      }
      auto data = at::cat(parts, 0);
      // position of each permuted global index within `sorted`
      auto pos = at::searchsorted(sorted, gidx);
      win_rows_ = data.index_select(0, pos.to(data.device()));
    }
  }
  at::Tensor load_rows(int64_t a, int64_t b) {
    auto c = src_->read(a, b, /*check_finite=*/true);
    auto t = c.acts.to(at::kFloat);
    if (scale_ != 1.f) t = t * scale_;
    return t.to(dev_).contiguous();
  }
  std::shared_ptr<ActivationSource> src_;
  uint64_t seed_;
  float scale_;
  at::Device dev_;
  int64_t n_, nb_, bpw_, nw_;
  int64_t epoch_ = -1, win_ = -1;
  at::Tensor block_order_, win_rows_, all_;
  std::vector<int64_t> win_start_;
};

struct Member {
  std::string name, folder;
  double l1 = 0;
  Sae sae;  // fp32 parameters on the training device (normalized space)
  at::Tensor m[5], v[5];  // Adam moments for W_enc, b_enc, W_dec, b_dec, threshold
  at::Tensor since_fired;  // [d_sae] int64 tokens since last fired
  at::Tensor fired_tail;   // [d_sae] int64 firing count over the tail window (density)
  int64_t tail_tokens = 0;
  double thr_est = 0;      // batchtopk running threshold
  double ema_loss = 0, ema_mse = 0, ema_l0 = 0;
  at::Tensor* params(int i) {
    switch (i) {
      case 0: return &sae.W_enc;
      case 1: return &sae.b_enc;
      case 2: return &sae.W_dec;
      case 3: return &sae.b_dec;
      default: return &sae.threshold;
    }
  }
};

double lr_at(const TrainConfig& c, int64_t t, int64_t T) {
  double warm = std::floor(c.lr_warmup * T), decay = std::floor(c.lr_decay * T);
  double f = 1.0;
  if (warm > 0 && t < warm) f = (t + 1) / warm;
  if (decay > 0 && t >= T - decay) f = std::min(f, (T - t) / decay);
  return c.lr * f;
}

std::string strip_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// The absolute path without symlinks, "." or ".." (realpath); for a path that does not exist (yet), that of its
// deepest existing ancestor followed by the rest.
std::string canonical_path(const std::string& p_in) {
  std::string p = strip_slashes(p_in.empty() ? "." : p_in);
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf)) return buf;
  auto slash = p.find_last_of('/');
  std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : p.substr(0, slash));
  std::string base = slash == std::string::npos ? p : p.substr(slash + 1);
  std::string cp = canonical_path(parent);
  if (base == "." || base.empty()) return cp;
  if (base == "..") {
    std::string up = parent_dir(cp);
    return up.empty() ? "/" : up;
  }
  return cp == "/" ? "/" + base : cp + "/" + base;
}

bool within(const std::string& path, const std::string& folder) {
  return path.size() > folder.size() && path.compare(0, folder.size(), folder) == 0 &&
         (folder == "/" || path[folder.size()] == '/');
}

// The output path must not overlap the activations and may only replace a previous qsae output (trainer.h).
void check_output_path(const std::string& out, const std::string& acts) {
  const std::string o = canonical_path(out), a = canonical_path(acts);
  if (o == a) fail_range(out, ": --out is the --acts path itself; refusing to overwrite the activations");
  if (within(o, a)) fail_range(out, ": --out lies inside --acts ", acts, "; refusing to write into the activations");
  if (within(a, o))
    fail_range(out, ": --out contains the --acts path ", acts, "; replacing it would delete the activations");
  check_replaceable_output(out);
}

// FNV-1a over the bytes of the first and last rows: a cheap check that resumed data is the data of the checkpoint.
std::string rows_hash(const ActivationSource& src) {
  const int64_t n = src.n_rows(), m = std::min<int64_t>(n, 16);
  uint64_t h = 0xcbf29ce484222325ull;
  for (auto [a, b] : {std::pair<int64_t, int64_t>{0, m}, std::pair<int64_t, int64_t>{n - m, n}}) {
    auto t = src.read(a, b).acts.contiguous();
    const auto* p = static_cast<const unsigned char*>(t.data_ptr());
    for (size_t i = 0, e = size_t(t.numel()) * t.element_size(); i < e; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// Everything a checkpoint must agree on to be resumed (the settings as the run uses them, and the data; not the
// device: a checkpoint may move between CPU and GPU).
nlohmann::json fingerprint(const TrainConfig& c, const std::string& arch, int64_t k, const std::string& acts,
                           const ActivationSource& src, int64_t total_tokens, const std::string& data_hash) {
  return {{"acts", acts}, {"hook", src.hook()}, {"layer", src.layer()}, {"architecture", arch},
          {"expansions", c.expansions}, {"l1s", c.l1s}, {"k", k}, {"l1_norm_weighted", c.l1_norm_weighted},
          {"apply_b_dec_to_input", c.apply_b_dec_to_input}, {"batch_size", c.batch_size}, {"lr", c.lr},
          {"lr_warmup", c.lr_warmup}, {"lr_decay", c.lr_decay}, {"l1_warmup", c.l1_warmup},
          {"seed", c.seed}, {"normalize", c.normalize}, {"tokens", total_tokens}, {"n_rows", src.n_rows()},
          {"d_in", src.d()}, {"data_hash", data_hash}, {"fused", c.fused}, {"buffer_rows", c.buffer_rows},
          {"resample_every", c.resample_every}, {"dead_after", c.dead_after}, {"aux_coef", c.aux_coef},
          {"aux_k", c.aux_k}};
}

// "--lr was 0.001, now 0.002; ..." for the entries that differ.
std::string fingerprint_diff(const nlohmann::json& saved, const nlohmann::json& now) {
  static const std::map<std::string, std::string> label = {
      {"acts", "--acts"}, {"hook", "--hook"}, {"layer", "--layer"}, {"architecture", "--type"},
      {"expansions", "--expansion"}, {"l1s", "--l1"}, {"k", "--k"}, {"l1_norm_weighted", "--l1-norm-weighted"},
      {"apply_b_dec_to_input", "--apply-b-dec"}, {"batch_size", "--batch-size"}, {"lr", "--lr"},
      {"lr_warmup", "lrWarmup"}, {"lr_decay", "lrDecay"}, {"l1_warmup", "l1Warmup"}, {"seed", "--seed"},
      {"normalize", "normalize"}, {"tokens", "the token budget (--tokens, or --epochs x rows)"},
      {"n_rows", "the activations' row count"}, {"d_in", "the activations' width"},
      {"data_hash", "the activations' content (hash of the first and last 16 rows)"}, {"fused", "fused"},
      {"buffer_rows", "--buffer-rows"}, {"resample_every", "--resample-every"}, {"dead_after", "deadAfter"},
      {"aux_coef", "auxCoef"}, {"aux_k", "auxK"}};
  auto show = [](const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
  auto name = [&](const std::string& k) {
    auto it = label.find(k);
    return it == label.end() ? k : it->second;
  };
  std::string out;
  auto add = [&](const std::string& s) { out += (out.empty() ? "" : "; ") + s; };
  for (auto it = now.begin(); it != now.end(); ++it) {
    if (!saved.is_object() || !saved.contains(it.key()))
      add(name(it.key()) + " was not recorded, now " + show(it.value()));
    else if (saved[it.key()] != it.value())
      add(name(it.key()) + " was " + show(saved[it.key()]) + ", now " + show(it.value()));
  }
  if (saved.is_object())
    for (auto it = saved.begin(); it != saved.end(); ++it)
      if (!now.contains(it.key())) add(name(it.key()) + " was " + show(it.value()) + ", now not used");
  return out;
}

}  // namespace

std::string checkpoint_path(const TrainConfig& cfg) { return strip_slashes(cfg.out) + ".checkpoint.safetensors"; }

TrainResult train_saes(const TrainConfig& c, const CancelToken* cancel, const ProgressFn& progress) {
  c10::NoGradGuard ng;
  const std::string arch = canonical_architecture(c.architecture);
  QSAE_CHECK_TYPE(!c.out.empty(), "train: --out is required");
  QSAE_CHECK_RANGE(c.batch_size > 0, "train: --batch-size must be positive (got ", c.batch_size, ")");
  QSAE_CHECK_RANGE((c.epochs > 0) != (c.tokens > 0), "train: give exactly one of --epochs or --tokens (positive)");
  QSAE_CHECK_RANGE(!c.expansions.empty() && !c.l1s.empty(), "train: empty --expansion or --l1 list");
  QSAE_CHECK_RANGE(c.lr > 0, "train: --lr must be positive");
  for (double e : c.expansions) QSAE_CHECK_RANGE(e > 0, "train: --expansion values must be positive (got ", e, ")");
  for (double l : c.l1s) QSAE_CHECK_RANGE(l >= 0, "train: --l1 values must be >= 0 (got ", l, ")");
  QSAE_CHECK_RANGE(std::set<double>(c.expansions.begin(), c.expansions.end()).size() == c.expansions.size(),
                   "train: --expansion lists a value twice");
  QSAE_CHECK_RANGE(std::set<double>(c.l1s.begin(), c.l1s.end()).size() == c.l1s.size(),
                   "train: --l1 lists a value twice");
  const bool topk_family = is_topk_family(arch);
  QSAE_CHECK_RANGE(c.k >= 0, "train: --k must be positive (got ", c.k, ")");
  QSAE_CHECK_RANGE(topk_family || c.k == 0, "train: --k applies to topk and batchtopk SAEs only (got --k ", c.k,
                   " with --type ", arch, ")");
  QSAE_CHECK_RANGE(!topk_family || c.l1s.size() == 1, "train: --l1 applies to relu and jumprelu SAEs only; ", arch,
                   " has no L1 term, so a list of L1 values would train the same SAE several times");
  const int64_t k = topk_family ? (c.k > 0 ? c.k : 32) : 0;
  at::Device dev = parse_device(c.device);
  // The output path, before any data is read (trainer.h).
  const std::string out = strip_slashes(c.out);
  check_output_path(out, c.acts);
  const std::string acts_path = canonical_path(c.acts);

  auto src = ActivationSource::open(c.acts, c.hook, c.layer);
  const int64_t N = src->n_rows(), D = src->d(), B = c.batch_size;
  const int64_t total_tokens = c.tokens > 0 ? c.tokens : int64_t(std::ceil(c.epochs * double(N)));
  QSAE_CHECK_RANGE(total_tokens > 0, "train: nothing to train (", total_tokens, " tokens)");
  const int64_t T = (total_tokens + B - 1) / B;
  auto batch_at = [&](int64_t t) { return std::min(B, total_tokens - t * B); };  // the last batch is partial
  auto tokens_through = [&](int64_t steps) { return std::min(steps * B, total_tokens); };
  const int64_t dead_after = c.dead_after > 0 ? c.dead_after : std::min<int64_t>(10'000'000, std::max(N, total_tokens / 10));
  const int64_t aux_k = c.aux_k > 0 ? c.aux_k : std::max<int64_t>(1, D / 2);
  const int64_t tail_from = T - std::max<int64_t>(1, std::min<int64_t>(T, (std::max(N, total_tokens / 10) + B - 1) / B));
  const std::string ckpt = checkpoint_path(c);
  // --hook/--layer label a plain .safetensors file (a store resolves them itself)
  const std::string hook_name = !src->hook().empty() ? src->hook() : c.hook;
  const int64_t hook_layer = src->layer() >= 0 ? src->layer() : c.layer;
  const auto fp = fingerprint(c, arch, k, acts_path, *src, total_tokens, rows_hash(*src));

  // ---- members ----
  std::vector<Member> ms;
  bool grid = c.expansions.size() * c.l1s.size() > 1;
  int mi = 0;
  for (double e : c.expansions)
    for (double l : c.l1s) {
      Member m;
      m.l1 = (arch == "relu" || arch == "jumprelu") ? l : 0.0;
      int64_t S = std::max<int64_t>(1, std::llround(e * D));
      m.name = "x" + fmt_num(e) + (c.l1s.size() > 1 ? "-l1_" + fmt_num(l) : "");
      m.folder = grid ? join_path(out, m.name) : out;
      m.sae = init_sae(arch, D, S, k, gen_for(c.seed, 100, mi++));
      m.sae.apply_b_dec_to_input = c.apply_b_dec_to_input;
      ms.push_back(std::move(m));
    }

  // ---- normalization scale and b_dec init from the first rows (in order) ----
  double scale = 1.0;
  at::Tensor head = src->read(0, std::min<int64_t>(N, 65536), true).acts.to(at::kFloat);
  if (c.normalize) {
    double ms2 = head.pow(2).sum(1).mean().item<double>();
    QSAE_CHECK(ms2 > 0, c.acts, ": the activations are all zero");
    scale = std::sqrt(double(D) / ms2);
  }
  at::Tensor mean = (head * float(scale)).mean(0);

  int64_t t0 = 0;
  if (c.resume && file_exists(ckpt)) {
    auto f = SafetensorsFile::open(ckpt);
    auto md = f->metadata();
    nlohmann::json saved;
    try {
      saved = nlohmann::json::parse(md.at("fingerprint"));
    } catch (const std::exception&) {
      fail(ckpt, ": not a qsae SAE training checkpoint (no readable fingerprint); remove it or drop --resume");
    }
    if (saved != fp)
      fail(ckpt, ": the checkpoint was made with different settings or data (", fingerprint_diff(saved, fp),
           "); remove it or drop --resume");
    t0 = std::stoll(md.at("step"));
    scale = std::stod(md.at("scale"));
    for (size_t i = 0; i < ms.size(); ++i) {
      auto& m = ms[i];
      auto p = "m" + std::to_string(i) + ".";
      for (int j = 0; j < 5; ++j) {
        const char* nm[] = {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"};
        if (!f->contains(p + nm[j])) continue;
        *m.params(j) = f->get(p + nm[j]).clone();
        m.m[j] = f->get(p + "adam_m." + nm[j]).clone();
        m.v[j] = f->get(p + "adam_v." + nm[j]).clone();
      }
      m.since_fired = f->get(p + "since_fired").clone();
      m.fired_tail = f->get(p + "fired_tail").clone();
      auto st = nlohmann::json::parse(md.at(p + "state"));
      m.tail_tokens = st["tail_tokens"];
      m.thr_est = st["thr_est"];
      m.ema_loss = st["ema_loss"];
      m.ema_mse = st["ema_mse"];
      m.ema_l0 = st["ema_l0"];
    }
  } else {
    for (auto& m : ms) {
      m.sae.b_dec.copy_(mean);
      m.since_fired = at::zeros({m.sae.d_sae}, at::kLong);
      m.fired_tail = at::zeros({m.sae.d_sae}, at::kLong);
      for (int j = 0; j < 5; ++j)
        if (m.params(j)->defined()) {
          m.m[j] = at::zeros_like(*m.params(j));
          m.v[j] = at::zeros_like(*m.params(j));
        }
    }
  }
  for (auto& m : ms) {
    m.sae = m.sae.to(dev, at::kFloat);
    for (int j = 0; j < 5; ++j)
      if (m.m[j].defined()) m.m[j] = m.m[j].to(dev).contiguous(), m.v[j] = m.v[j].to(dev).contiguous();
  }
  int64_t window = c.buffer_rows > 0 ? c.buffer_rows : std::max<int64_t>(B, (int64_t(256) << 20) / (4 * D));
  RowStream stream(src, c.seed, window, float(scale), dev);

  auto save_checkpoint = [&](int64_t step) {
    std::vector<std::pair<std::string, at::Tensor>> ts;
    std::map<std::string, std::string> md;
    md["fingerprint"] = fp.dump();
    md["step"] = std::to_string(step);
    std::ostringstream ss;
    ss.precision(17);
    ss << scale;
    md["scale"] = ss.str();
    for (size_t i = 0; i < ms.size(); ++i) {
      auto& m = ms[i];
      auto p = "m" + std::to_string(i) + ".";
      const char* nm[] = {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"};
      for (int j = 0; j < 5; ++j) {
        if (!m.params(j)->defined()) continue;
        ts.emplace_back(p + nm[j], m.params(j)->cpu());
        ts.emplace_back(p + "adam_m." + nm[j], m.m[j].cpu());
        ts.emplace_back(p + "adam_v." + nm[j], m.v[j].cpu());
      }
      ts.emplace_back(p + "since_fired", m.since_fired.cpu());
      ts.emplace_back(p + "fired_tail", m.fired_tail.cpu());
      nlohmann::json st = {{"tail_tokens", m.tail_tokens}, {"thr_est", m.thr_est}, {"ema_loss", m.ema_loss},
                           {"ema_mse", m.ema_mse}, {"ema_l0", m.ema_l0}};
      md[p + "state"] = st.dump();
    }
    make_dirs(parent_dir(ckpt));
    save_safetensors(ckpt, ts, md);
  };

  // The fused CPU step keeps its buffers per thread between steps; they go when the run ends, however it ends.
  const bool fused_cpu = !dev.is_cuda() && c.fused;
  struct ReleaseWorkspace {
    bool on;
    ~ReleaseWorkspace() {
      if (on) release_fused_cpu_workspace();
    }
  } release_workspace{fused_cpu};
  TrainResult res;
  res.d_in = D;
  res.resumed_from = t0;
  res.scale = scale;
  auto start = Clock::now();
  auto last_ckpt = start;
  int64_t tokens_done = 0;
  for (int64_t t = t0; t < T; ++t) {
    if (cancel && cancel->cancelled()) {
      save_checkpoint(t);
      cancel->check();
    }
    const int64_t bt = batch_at(t);
    at::Tensor x = stream.rows(t * B, bt);
    const double lr = lr_at(c, t, T);
    const double l1w = c.l1_warmup > 0 ? std::min(1.0, double(t + 1) / std::max(1.0, std::floor(c.l1_warmup * T))) : 1.0;
    for (auto& m : ms) {
      LossOptions o;
      o.l1_coef = m.l1 * l1w;
      o.l1_norm_weighted = c.l1_norm_weighted;
      if (is_topk_family(arch)) {
        o.aux_coef = c.aux_coef;
        o.aux_k = aux_k;
        o.dead_mask = (m.since_fired >= dead_after).to(dev);
      }
      StepResult r;
      if (dev.is_cuda()) {
        r = cuda_forward_backward(m.sae, x, o, c.bf16_matmul);
      } else if (c.fused) {
        r = fused_forward_backward_cpu(m.sae, x, o);
      } else {
        r = autograd_forward_backward(m.sae, x, o);
      }
      // jumprelu's threshold gradient comes with the others (its straight-through pseudo-derivatives, sae.h)
      QSAE_CHECK(arch != "jumprelu" || r.gthreshold.defined(), "train: jumprelu step returned no threshold gradient");
      at::Tensor grads[5] = {r.gW_enc, r.gb_enc, r.gW_dec, r.gb_dec, r.gthreshold};
      for (int j = 0; j < 5; ++j) {
        if (!grads[j].defined()) continue;
        at::Tensor& p = *m.params(j);
        if (dev.is_cuda())
          adam_step_cuda(p, grads[j], m.m[j], m.v[j], t + 1, lr, c.beta1, c.beta2, c.adam_eps);
        else if (c.fused)
          adam_step_fused_cpu(p, grads[j], m.m[j], m.v[j], t + 1, lr, c.beta1, c.beta2, c.adam_eps);
        else
          adam_step_reference(p, grads[j], m.m[j], m.v[j], t + 1, lr, c.beta1, c.beta2, c.adam_eps);
      }
      if (arch == "jumprelu") m.sae.threshold.clamp_min_(1e-6);
      if (!c.l1_norm_weighted) {
        if (fused_cpu && m.sae.W_dec.is_contiguous()) {
          normalize_decoder_rows_cpu(m.sae.W_dec);
        } else {
          auto n = m.sae.W_dec.norm(2, {1}, true).clamp_min(1e-12);
          m.sae.W_dec.div_(n);
        }
      }
      auto fired = r.fired.cpu();
      m.since_fired.add_(bt).masked_fill_(fired > 0, 0);
      if (t >= tail_from) {
        m.fired_tail.add_(fired);
        m.tail_tokens += bt;
      }
      if (arch == "batchtopk") m.thr_est = t == 0 ? r.batch_threshold : 0.99 * m.thr_est + 0.01 * r.batch_threshold;
      const double a = t == t0 ? 1.0 : 0.05;
      m.ema_loss = (1 - a) * m.ema_loss + a * r.loss;
      m.ema_mse = (1 - a) * m.ema_mse + a * r.mse;
      m.ema_l0 = (1 - a) * m.ema_l0 + a * r.l0;
      // resampling of dead latents (relu): decoder rows from the worst-reconstructed inputs of this batch
      if (arch == "relu" && c.resample_every > 0 && (t + 1) % c.resample_every == 0 && t + 1 < T) {
        auto dead = (m.since_fired >= dead_after).nonzero().select(1, 0);
        int64_t nd = dead.size(0);
        if (nd > 0) {
          auto err = (m.sae.decode(m.sae.encode(x)) - x).pow(2).sum(1);
          auto pick = std::get<1>(err.topk(std::min<int64_t>(nd, bt))).cpu();
          auto alive = (m.since_fired < dead_after).to(dev);
          double enc_norm = alive.any().item<bool>() ? m.sae.W_enc.norm(2, {0}).masked_select(alive).mean().item<double>() : 1.0;
          for (int64_t q = 0; q < nd; ++q) {
            int64_t j = dead[q].item<int64_t>();
            auto xr = x[pick[q % pick.size(0)].item<int64_t>()] - m.sae.b_dec;
            auto dir = xr / xr.norm().clamp_min(1e-12);
            m.sae.W_dec[j].copy_(dir);
            m.sae.W_enc.select(1, j).copy_(dir * float(0.2 * enc_norm));
            m.sae.b_enc[j] = 0;
            for (int jj = 0; jj < 4; ++jj) {
              if (jj == 0) m.m[0].select(1, j).zero_(), m.v[0].select(1, j).zero_();
              if (jj == 1) m.m[1][j].zero_(), m.v[1][j].zero_();
              if (jj == 2) m.m[2][j].zero_(), m.v[2][j].zero_();
            }
            m.since_fired[j] = 0;
          }
        }
      }
    }
    tokens_done += bt;
    res.steps = t + 1;
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    if (progress) {
      double loss = 0, l0 = 0, dead = 0;
      for (auto& m : ms) {
        loss += m.ema_loss;
        l0 += m.ema_l0;
        dead += (m.since_fired >= dead_after).sum().item<double>() / m.sae.d_sae;
      }
      nlohmann::json msg = {{"loss", loss / ms.size()}, {"l0", l0 / ms.size()}, {"dead", dead / ms.size()},
                            {"tokens_per_s", secs > 0 ? tokens_done / secs : 0.0}, {"step", t + 1}, {"steps", T}};
      progress(Progress{"train", double(tokens_through(t + 1)), double(total_tokens), "tokens", msg.dump()});
    }
    bool stop = c.stop_after > 0 && t + 1 - t0 >= c.stop_after && t + 1 < T;
    bool periodic = c.checkpoint_every > 0 ? (t + 1) % c.checkpoint_every == 0
                                           : std::chrono::duration<double>(Clock::now() - last_ckpt).count() > 60;
    if ((periodic || stop) && t + 1 < T) {
      save_checkpoint(t + 1);
      last_ckpt = Clock::now();
    }
    if (stop) {
      res.stopped = true;
      break;
    }
  }
  res.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (res.steps < t0) res.steps = t0;
  res.tokens = tokens_through(res.steps);
  res.session_tokens = tokens_done;
  res.tokens_per_second = res.seconds > 0 ? tokens_done / res.seconds : 0;
  if (res.stopped) return res;

  // ---- save: fold the normalization into the weights; a grid goes into a temp folder renamed onto --out ----
  const std::string tmp_root = grid ? out + ".tmp-" + std::to_string(::getpid()) : std::string();
  if (grid) {
    remove_tree(tmp_root);
    make_dirs(tmp_root);
  }
  try {
  for (auto& m : ms) {
    Sae s = m.sae.to(at::kCPU, at::kFloat);
    const float sc = float(scale);
    s.W_enc = s.W_enc * sc;
    s.W_dec = s.W_dec / sc;
    s.b_dec = s.b_dec / sc;
    if (arch == "batchtopk") s.threshold = at::full({s.d_sae}, float(m.thr_est));
    nlohmann::json md = c.metadata.is_object() ? c.metadata : nlohmann::json::object();
    const auto& man = src->manifest();
    if (man.is_object() && !man.empty()) {
      if (man.contains("model") && man["model"].is_object() && !md.contains("model")) {
        std::string mp = man["model"].value("path", std::string());
        md["model"] = mp.empty() ? nlohmann::json() : nlohmann::json(mp);
      }
      if (man.contains("model") && !md.contains("model_info")) md["model_info"] = man["model"];
      if (man.contains("precision") && !md.contains("precision")) md["precision"] = man["precision"];
      if (man.contains("compute_dtype") && !md.contains("compute_dtype")) md["compute_dtype"] = man["compute_dtype"];
      if (man.contains("quantization") && !md.contains("quantization")) md["quantization"] = man["quantization"];
    }
    if (!hook_name.empty() && !md.contains("hook_name")) md["hook_name"] = hook_name;
    if (hook_layer >= 0 && !md.contains("layer")) md["layer"] = hook_layer;
    // the documented fields are always there: null when unknown
    for (const char* key : {"model", "precision", "quantization", "hook_name", "layer"})
      if (!md.contains(key)) md[key] = nullptr;
    md["activations"] = acts_path;
    md["activation_scale_folded"] = scale;
    // mse in the activations' scale (the training scale is folded into the saved weights); loss in the training's
    const double mse_raw = m.ema_mse / (scale * scale);
    md["training"] = {{"architecture", arch}, {"l1_coefficient", m.l1}, {"k", topk_family ? nlohmann::json(k) : nlohmann::json()},
                      {"lr", c.lr}, {"batch_size", B}, {"steps", T}, {"tokens", total_tokens}, {"seed", c.seed},
                      {"l1_norm_weighted", c.l1_norm_weighted}, {"final_loss", m.ema_loss}, {"final_mse", mse_raw},
                      {"final_l0", m.ema_l0}};
    s.cfg = nlohmann::json::object();
    s.cfg["metadata"] = md;
    auto dens = m.fired_tail.to(at::kDouble) / double(std::max<int64_t>(1, m.tail_tokens));
    auto log10d = at::log10(dens + 1e-10).to(at::kFloat);
    save_sae(grid ? join_path(tmp_root, m.name) : m.folder, s, log10d);
    TrainedSae ts;
    ts.folder = m.folder;
    ts.name = m.name;
    ts.d_sae = s.d_sae;
    ts.l1_coef = m.l1;
    ts.loss = m.ema_loss;
    ts.mse = mse_raw;
    ts.l0 = m.ema_l0;
    ts.dead_fraction = (m.since_fired >= dead_after).to(at::kDouble).mean().item<double>();
    res.saes.push_back(ts);
  }
  if (grid) {
    nlohmann::json g = nlohmann::json::array();
    for (auto& s : res.saes) g.push_back({{"name", s.name}, {"folder", s.name}, {"d_sae", s.d_sae}, {"l1", s.l1_coef}});
    write_file_atomic(join_path(tmp_root, "grid.json"), g.dump(2) + "\n");
    replace_output_folder(tmp_root, out);
  }
  } catch (...) {
    if (grid) remove_tree(tmp_root);
    throw;
  }
  remove_file(ckpt);
  return res;
}

EvalResult evaluate_sae(const Sae& sae_in, const std::string& acts, const std::string& hook, int64_t layer,
                        int64_t batch_size, const CancelToken* cancel, const ProgressFn& progress) {
  c10::NoGradGuard ng;
  auto src = ActivationSource::open(acts, hook, layer);
  if (src->d() != sae_in.d_in)
    fail_range(acts, ": activations have d=", src->d(), " but the SAE expects d_in=", sae_in.d_in);
  QSAE_CHECK_RANGE(batch_size > 0, "eval: batch size must be positive");
  const Sae& sae = sae_in;
  const int64_t N = src->n_rows(), S = sae.d_sae, D = sae.d_in;
  double se = 0, sx2 = 0, l0 = 0, l1 = 0;
  at::Tensor sum_x = at::zeros({D}, at::kDouble), fired = at::zeros({S}, at::kLong);
  ActivationChunk ch;
  src->seek(0);
  while (src->next(ch, batch_size)) {
    check_cancel(cancel);
    check_finite_rows(*src, ch.acts, ch.row0);
    auto x = ch.acts.to(at::kFloat).to(sae.device());
    auto f = sae.encode(x);
    auto xh = sae.decode(f, x);  // x: the per-token statistics of a run-time normalization
    se += (xh - x).to(at::kDouble).pow(2).sum().item<double>();
    auto xd = x.to(at::kDouble);
    sx2 += xd.pow(2).sum().item<double>();
    sum_x += xd.sum(0).cpu();
    auto on = f > 0;
    l0 += on.sum().item<double>();
    l1 += f.abs().to(at::kDouble).sum().item<double>();
    fired += on.sum(0).cpu().to(at::kLong);
    if (progress) progress(Progress{"eval", double(ch.row0 + ch.rows()), double(N), "tokens", ""});
  }
  EvalResult r;
  r.n_tokens = N;
  r.d_in = D;
  r.d_sae = S;
  r.mse = se / (double(N) * D);
  double total_var = sx2 - sum_x.pow(2).sum().item<double>() / N;
  r.explained_variance = total_var > 0 ? 1.0 - se / total_var : 0.0;
  r.l0 = l0 / N;
  r.l1 = l1 / N;
  r.dead_fraction = (fired == 0).to(at::kDouble).mean().item<double>();
  auto dens = fired.to(at::kDouble) / double(N);
  r.log10_density = at::where(fired > 0, at::log10(dens), at::full({}, -10.0, at::kDouble)).to(at::kFloat);
  // histogram of log10 density over the latents that fired: bins of 0.5 from -10 to 0
  for (int i = 0; i <= 20; ++i) r.density_edges.push_back(-10.0 + 0.5 * i);
  r.density_counts.assign(20, 0);
  r.density_dead = (fired == 0).sum().item<int64_t>();
  auto ld = r.log10_density.to(at::kDouble);
  auto fa = fired.accessor<int64_t, 1>();
  auto la = ld.accessor<double, 1>();
  for (int64_t j = 0; j < S; ++j) {
    if (fa[j] == 0) continue;
    int b = std::min(19, std::max(0, int((la[j] + 10.0) / 0.5)));
    r.density_counts[b]++;
  }
  return r;
}

}  // namespace qsae::sae
