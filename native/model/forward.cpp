// Forward pass of every supported architecture. Activations flow in the activation dtype `act_`; on CPU
// each op upcasts half types to fp32, computes, and rounds back (Debian's CPU torch has no fp16 matmul).
#include <algorithm>
#include <cmath>
#include <limits>

#include "common/error.h"
#include "common/tensor_util.h"
#include "model/model.h"

namespace qsae::model {

namespace {

at::Tensor to_dtype(const at::Tensor& t, at::ScalarType s) { return t.scalar_type() == s ? t : t.to(s); }

at::Tensor rotate_half(const at::Tensor& x) {
  int64_t h = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}

bool wants(const ForwardOptions& o, const char* hook, int64_t layer) {
  bool h = false, l = false;
  for (auto& s : o.hooks) h |= s == hook;
  for (auto x : o.hook_layers) l |= x == layer;
  return h && l;
}

}  // namespace

std::pair<at::Tensor, double> rope_frequencies(const ModelConfig& c) {
  const int64_t dim = c.head_dim;
  const double base = c.rope_theta;
  auto inv = at::empty({dim / 2}, at::kDouble);
  auto* p = inv.data_ptr<double>();
  for (int64_t i = 0; i < dim / 2; ++i) p[i] = 1.0 / std::pow(base, double(2 * i) / double(dim));
  const RopeScaling& s = c.rope_scaling;
  double scaling = 1.0;
  if (s.type == "linear") {
    inv = inv / s.factor;
  } else if (s.type == "llama3") {
    const double old = double(s.original_max_positions);
    const double low_wl = old / s.low_freq_factor, high_wl = old / s.high_freq_factor;
    for (int64_t i = 0; i < dim / 2; ++i) {
      double f = p[i], wl = 2 * M_PI / f;
      if (wl < high_wl) continue;
      if (wl > low_wl) {
        p[i] = f / s.factor;
      } else {
        double smooth = (old / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        p[i] = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
  } else if (s.type == "yarn") {
    auto mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
    scaling = s.attention_factor > 0 ? s.attention_factor
              : (s.mscale > 0 && s.mscale_all_dim > 0) ? mscale(s.factor, s.mscale) / mscale(s.factor, s.mscale_all_dim)
                                                       : mscale(s.factor, 1.0);
    const double maxpos = double(s.original_max_positions > 0 ? s.original_max_positions : c.max_positions);
    auto corr = [&](double rot) { return (dim * std::log(maxpos / (rot * 2 * M_PI))) / (2 * std::log(base)); };
    double low = corr(s.beta_fast), high = corr(s.beta_slow);
    if (s.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, double(dim - 1));
    if (low == high) high += 0.001;
    for (int64_t i = 0; i < dim / 2; ++i) {
      double extrap = p[i], interp = p[i] / s.factor;
      double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
      double ef = 1 - ramp;  // extrapolation factor
      p[i] = interp * (1 - ef) + extrap * ef;
    }
  }
  return {inv.to(at::kFloat), scaling};
}

at::Tensor Model::norm(const at::Tensor& x, const Norm& n) const {
  const at::ScalarType op = op_dtype(act_, x.device());
  at::Tensor xf = to_dtype(x, at::kFloat);  // norms compute in fp32 (as transformers does)
  at::Tensor y;
  if (cfg_.layer_norm) {
    y = at::layer_norm(xf, {xf.size(-1)}, to_dtype(n.w, at::kFloat), n.b.defined() ? to_dtype(n.b, at::kFloat) : at::Tensor(),
                       cfg_.norm_eps);
  } else {
    y = xf * at::rsqrt(xf.pow(2).mean(-1, true) + cfg_.norm_eps);
    y = to_dtype(to_dtype(y, act_), op) * to_dtype(n.w, op);
  }
  return to_dtype(y, act_);
}

at::Tensor Model::mlp(const at::Tensor& x, const Mlp& m) const {
  const at::ScalarType op = op_dtype(act_, x.device());
  if (m.gate.defined()) {
    at::Tensor g = to_dtype(m.gate.forward(x, act_), op), u = to_dtype(m.up.forward(x, act_), op);
    return m.down.forward(to_dtype(at::silu(g) * u, act_), act_);
  }
  at::Tensor h = to_dtype(m.fc.forward(x, act_), op);
  h = cfg_.act == "gelu_tanh" ? at::gelu(h, "tanh") : at::gelu(h);
  return m.proj.forward(to_dtype(h, act_), act_);
}

at::Tensor Model::moe(const at::Tensor& x, const Block& b) const {
  const auto shape = x.sizes().vec();
  const int64_t D = x.size(-1);
  at::Tensor xs = x.reshape({-1, D});
  const at::ScalarType op = op_dtype(act_, x.device());
  at::Tensor logits = dense_linear(xs, b.router, {}, op);
  at::Tensor probs = at::softmax(to_dtype(logits, at::kFloat), -1);
  auto [topw, topi] = probs.topk(cfg_.experts_per_tok, -1);
  if (cfg_.norm_topk_prob) topw = topw / topw.sum(-1, true);
  topw = to_dtype(to_dtype(topw, act_), op);
  at::Tensor out = at::zeros({xs.size(0), D}, xs.options().dtype(op));
  // Tokens per expert: one pass over the routing table on the host.
  at::Tensor topi_cpu = topi.to(at::kCPU).contiguous();
  const int64_t N = topi_cpu.size(0), K = topi_cpu.size(1);
  const auto* ti = topi_cpu.data_ptr<int64_t>();
  std::vector<std::vector<int64_t>> rows(cfg_.num_experts), slots(cfg_.num_experts);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      rows[ti[n * K + k]].push_back(n);
      slots[ti[n * K + k]].push_back(n * K + k);
    }
  at::Tensor topw_flat = topw.reshape({-1});
  for (int64_t e = 0; e < cfg_.num_experts; ++e) {
    if (rows[e].empty()) continue;
    at::Tensor idx = at::tensor(rows[e], at::kLong).to(x.device());
    at::Tensor sl = at::tensor(slots[e], at::kLong).to(x.device());
    at::Tensor y = to_dtype(mlp(xs.index_select(0, idx), b.experts[e]), op);
    y = to_dtype(to_dtype(y * topw_flat.index_select(0, sl).unsqueeze(1), act_), op);
    out = out.index_add(0, idx, y);
  }
  return to_dtype(out, act_).reshape(shape);
}

at::Tensor Model::attention(const at::Tensor& x, const Block& b, int64_t layer, const at::Tensor& cos,
                            const at::Tensor& sin, const at::Tensor& allowed, KvCache* cache, int64_t past) const {
  const int64_t B = x.size(0), T = x.size(1), H = cfg_.num_heads, Hkv = cfg_.num_kv_heads, hd = cfg_.head_dim;
  const at::ScalarType op = op_dtype(act_, x.device());
  at::Tensor q, k, v;
  if (b.qkv.defined()) {
    at::Tensor qkv = b.qkv.forward(x, act_);
    auto parts = qkv.split(H * hd, -1);
    q = parts[0], k = parts[1], v = parts[2];
  } else {
    q = b.q.forward(x, act_);
    k = b.k.forward(x, act_);
    v = b.v.forward(x, act_);
  }
  q = q.view({B, T, H, hd});
  k = k.view({B, T, Hkv, hd});
  v = v.view({B, T, Hkv, hd});
  if (b.q_norm.defined()) {
    q = norm(q, Norm{b.q_norm, {}});
    k = norm(k, Norm{b.k_norm, {}});
  }
  if (cfg_.rope) {
    at::Tensor c = cos.unsqueeze(2), s = sin.unsqueeze(2);  // [B,T,1,hd]
    at::Tensor qf = to_dtype(q, op), kf = to_dtype(k, op);
    q = to_dtype(qf * c + rotate_half(qf) * s, act_);
    k = to_dtype(kf * c + rotate_half(kf) * s, act_);
  }
  q = q.transpose(1, 2);  // [B,H,T,hd]
  k = k.transpose(1, 2);  // [B,Hkv,T,hd]
  v = v.transpose(1, 2);
  at::Tensor K = k, V = v;
  if (cache) {
    at::Tensor& kb = cache->k[layer];
    at::Tensor& vb = cache->v[layer];
    kb.narrow(2, past, T).copy_(k);
    vb.narrow(2, past, T).copy_(v);
    K = kb.narrow(2, 0, past + T);
    V = vb.narrow(2, 0, past + T);
  }
  const int64_t S = K.size(2), G = H / Hkv;
  at::Tensor qg = to_dtype(q, op).reshape({B, Hkv, G * T, hd});
  at::Tensor scores = at::matmul(qg, to_dtype(K, op).transpose(-1, -2)) * (1.0 / std::sqrt(double(hd)));
  scores = to_dtype(scores, at::kFloat).view({B, Hkv, G, T, S});
  scores = scores.masked_fill(allowed.logical_not(), std::numeric_limits<float>::lowest());
  at::Tensor probs = to_dtype(to_dtype(at::softmax(scores, -1), act_), op).view({B, Hkv, G * T, S});
  at::Tensor out = at::matmul(probs, to_dtype(V, op));  // [B,Hkv,G*T,hd]
  out = to_dtype(out, act_).view({B, H, T, hd}).transpose(1, 2).reshape({B, T, H * hd});
  return b.o.forward(out, act_);
}

ForwardResult Model::forward(const at::Tensor& input_ids, const ForwardOptions& o) const {
  QSAE_CHECK_TYPE(input_ids.defined() && input_ids.dim() == 2, "input_ids: expected an int64 tensor [B, T]");
  QSAE_CHECK_TYPE(input_ids.scalar_type() == at::kLong, "input_ids: expected int64, got ",
                  c10::toString(input_ids.scalar_type()));
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  QSAE_CHECK_RANGE(B > 0 && T > 0, "input_ids: empty batch [", B, ", ", T, "]");
  for (auto& h : o.hooks)
    QSAE_CHECK_TYPE(h == "resid_pre" || h == "resid_post" || h == "attn_out" || h == "mlp_out", "capture: unknown hook '",
                    h, "' (resid_pre, resid_post, attn_out, mlp_out)");
  for (auto l : o.hook_layers)
    QSAE_CHECK_RANGE(l >= 0 && l < cfg_.num_layers, "capture: layer ", l, " out of range (the model has ",
                     cfg_.num_layers, " layers)");
  for (auto& e : o.edits) {
    QSAE_CHECK_TYPE(e.hook == "resid_pre" || e.hook == "resid_post" || e.hook == "attn_out" || e.hook == "mlp_out",
                    "edit: unknown hook '", e.hook, "' (resid_pre, resid_post, attn_out, mlp_out)");
    QSAE_CHECK_RANGE(e.layer >= 0 && e.layer < cfg_.num_layers, "edit: layer ", e.layer,
                     " out of range (the model has ", cfg_.num_layers, " layers)");
    QSAE_CHECK_TYPE(bool(e.fn), "edit: no function given for ", e.hook, ".", e.layer);
  }
  KvCache* cache = o.cache;
  const int64_t past = cache ? cache->length : 0;
  const int64_t S = past + T;
  at::Tensor ids = input_ids.to(device_);
  {
    auto mn = ids.min().item<int64_t>(), mx = ids.max().item<int64_t>();
    QSAE_CHECK_RANGE(mn >= 0 && mx < cfg_.vocab_size, "input_ids: token id ", mn < 0 ? mn : mx,
                     " out of range (vocab_size ", cfg_.vocab_size, ")");
  }
  // Attention mask over past + new tokens.
  at::Tensor mask;
  if (o.attention_mask.defined()) {
    QSAE_CHECK_TYPE(o.attention_mask.dim() == 2, "attentionMask: expected [B, T_total]");
    mask = o.attention_mask.to(device_, at::kLong);
    if (cache && mask.size(1) == T && past > 0) {
      QSAE_CHECK_RANGE(cache->mask.defined() && cache->mask.size(0) == B, "attentionMask: batch size ", B,
                       " differs from the cache's ", cache->batch);
      mask = at::cat({cache->mask, mask}, 1);
    }
    QSAE_CHECK_RANGE(mask.size(0) == B && mask.size(1) == S, "attentionMask: shape ", shape_str(mask.sizes()),
                     " does not match [", B, ", ", S, "] (batch, cached + new tokens)");
  } else if (cache && past > 0) {
    QSAE_CHECK_RANGE(cache->batch == B, "input_ids: batch size ", B, " differs from the cache's ", cache->batch);
    mask = at::cat({cache->mask, at::ones({B, T}, at::TensorOptions().device(device_).dtype(at::kLong))}, 1);
  } else {
    mask = at::ones({B, S}, at::TensorOptions().device(device_).dtype(at::kLong));
  }
  // Cache capacity.
  if (cache) {
    if (past == 0) {
      cache->clear();
      cache->batch = B;
    }
    QSAE_CHECK_RANGE(cache->batch == B, "cache: batch size ", B, " differs from the cache's ", cache->batch);
    if (S > cache->capacity) {
      int64_t cap = std::max<int64_t>(S, std::max<int64_t>(2 * cache->capacity, 64));
      cache->k.resize(cfg_.num_layers);
      cache->v.resize(cfg_.num_layers);
      for (int64_t l = 0; l < cfg_.num_layers; ++l) {
        auto opts = at::TensorOptions().device(layer_device_[l]).dtype(act_);
        at::Tensor nk = at::empty({B, cfg_.num_kv_heads, cap, cfg_.head_dim}, opts);
        at::Tensor nv = at::empty({B, cfg_.num_kv_heads, cap, cfg_.head_dim}, opts);
        if (past > 0) {
          nk.narrow(2, 0, past).copy_(cache->k[l].narrow(2, 0, past));
          nv.narrow(2, 0, past).copy_(cache->v[l].narrow(2, 0, past));
        }
        cache->k[l] = nk;
        cache->v[l] = nv;
      }
      cache->capacity = cap;
    }
  }
  // Positions from the mask (left padding exact), as transformers: cumsum(mask) - 1.
  at::Tensor pos = (mask.cumsum(1) - 1).clamp_min(0).narrow(1, past, T);  // [B,T]
  // Which keys each query may see: causal by slot, sliding window, padding.
  at::Tensor qi = at::arange(past, S, at::TensorOptions().device(device_).dtype(at::kLong)).unsqueeze(1);  // [T,1]
  at::Tensor kj = at::arange(0, S, at::TensorOptions().device(device_).dtype(at::kLong)).unsqueeze(0);    // [1,S]
  at::Tensor causal = kj <= qi;
  at::Tensor keymask = (mask != 0).view({B, 1, 1, 1, S});
  // Layers that need a window get their own mask; cache them by window size.
  std::vector<std::pair<int64_t, at::Tensor>> masks;
  auto allowed_for = [&](int64_t w) -> at::Tensor {
    for (auto& [ww, m] : masks)
      if (ww == w) return m;
    at::Tensor a = w > 0 ? causal.logical_and(kj > qi - w) : causal;
    at::Tensor m = a.view({1, 1, 1, T, S}).logical_and(keymask);
    masks.emplace_back(w, m);
    return m;
  };

  at::Tensor cos, sin;
  if (cfg_.rope) {
    at::Tensor freqs = pos.to(at::kFloat).unsqueeze(-1) * inv_freq_.to(device_).view({1, 1, -1});
    at::Tensor emb = at::cat({freqs, freqs}, -1);
    const at::ScalarType op = op_dtype(act_, device_);
    cos = to_dtype(to_dtype(emb.cos() * attn_scaling_, act_), op);
    sin = to_dtype(to_dtype(emb.sin() * attn_scaling_, act_), op);
  }

  ForwardResult r;
  at::Tensor h = to_dtype(at::embedding(embed_, ids), act_);
  if (wpe_.defined()) {
    const at::ScalarType op = op_dtype(act_, device_);
    h = to_dtype(to_dtype(h, op) + to_dtype(at::embedding(wpe_, pos), op), act_);
  }
  int64_t last_layer = cfg_.num_layers - 1;
  if (!o.logits && !o.hidden) {
    last_layer = -1;
    for (auto l : o.hook_layers) last_layer = std::max(last_layer, l);
  }
  const at::ScalarType op = op_dtype(act_, device_);
  // With a device map, per-device copies of the position tables and masks; outputs go back to device_.
  const bool multi = devices().size() > 1;
  std::vector<std::tuple<at::Device, at::Tensor, at::Tensor>> rope_on;
  auto rope_for = [&](const at::Device& d) -> std::pair<at::Tensor, at::Tensor> {
    if (!cos.defined() || d == device_) return {cos, sin};
    for (auto& [dd, c, sn] : rope_on)
      if (dd == d) return {c, sn};
    rope_on.emplace_back(d, cos.to(d), sin.to(d));
    return {std::get<1>(rope_on.back()), std::get<2>(rope_on.back())};
  };
  auto home = [&](const at::Tensor& t) { return multi && t.device() != device_ ? t.to(device_) : t; };
  // Capture (before any edit), then apply the edits registered for this hook point.
  auto capture = [&](const char* hook, int64_t l, at::Tensor& t) {
    if (wants(o, hook, l)) r.captures.emplace_back(std::string(hook) + "." + std::to_string(l), home(to_dtype(t, at::kFloat)));
    for (const auto& e : o.edits) {
      if (e.layer != l || e.hook != hook) continue;
      at::Tensor v = e.fn(t);
      QSAE_CHECK_RANGE(v.sizes() == t.sizes(), "edit ", hook, ".", l, ": returned shape ", shape_str(v.sizes()),
                       " instead of ", shape_str(t.sizes()));
      t = to_dtype(v.to(t.device()), t.scalar_type());
    }
  };
  for (int64_t l = 0; l <= last_layer; ++l) {
    const Block& b = blocks_[l];
    const at::Device& dev = layer_device_[l];
    if (h.device() != dev) h = h.to(dev);
    capture("resid_pre", l, h);
    auto [cos_l, sin_l] = rope_for(dev);
    at::Tensor allowed = allowed_for(b.window);
    if (allowed.device() != dev) allowed = allowed.to(dev);
    at::Tensor a = attention(norm(h, b.ln1), b, l, cos_l, sin_l, allowed, cache, past);
    capture("attn_out", l, a);
    h = to_dtype(to_dtype(h, op) + to_dtype(a, op), act_);
    at::Tensor n2 = norm(h, b.ln2);
    at::Tensor m = b.moe ? moe(n2, b) : mlp(n2, b.mlp);
    capture("mlp_out", l, m);
    h = to_dtype(to_dtype(h, op) + to_dtype(m, op), act_);
    capture("resid_post", l, h);
    if (o.hidden) r.hidden.push_back(home(to_dtype(h, at::kFloat)));
  }
  if (cache) {
    cache->mask = mask;
    cache->length = S;
  }
  if (o.logits) {
    at::Tensor x = o.last_only ? h.narrow(1, T - 1, 1) : h;
    if (x.device() != out_device_) x = x.to(out_device_);
    x = norm(x, final_norm_);
    r.logits = home(to_dtype(to_dtype(dense_linear(x, lm_head_, {}, op), act_), at::kFloat));
  }
  return r;
}

at::Tensor Model::forward_train(const at::Tensor& input_ids, const at::Tensor& attention_mask) const {
  ForwardOptions o;
  o.attention_mask = attention_mask;
  return forward(input_ids, o).logits;
}

int64_t KvCache::bytes() const {
  int64_t n = 0;
  for (auto& t : k) n += t.defined() ? t.numel() * t.element_size() : 0;
  for (auto& t : v) n += t.defined() ? t.numel() * t.element_size() : 0;
  return n;
}

void KvCache::clear() {
  k.clear();
  v.clear();
  mask = at::Tensor();
  length = capacity = batch = 0;
}

}  // namespace qsae::model
