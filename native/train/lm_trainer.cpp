// AdamW training loop for small LMs on top of Model::forward_train (autograd through plain ATen ops).
#include "train/lm_trainer.h"

#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <cmath>
#include <random>
#include <sstream>
#include <unordered_set>

#include "common/error.h"

namespace qsae::train {

std::vector<std::pair<std::string, at::Tensor>> trainable_parameters(const model::Model& m) {
  QSAE_CHECK(m.precision() == model::Precision::FP32, m.path(), ": training needs an fp32 model (load with precision fp32)");
  std::vector<std::pair<std::string, at::Tensor>> out;
  std::unordered_set<const void*> seen;
  for (auto& [name, t] : m.named_parameters()) {
    if (!t.defined() || !seen.insert(t.unsafeGetTensorImpl()).second) continue;
    out.emplace_back(name, t);
  }
  return out;
}

namespace {
// Batch of `rows` windows of seq_len+1 tokens starting at the given offsets.
at::Tensor gather_windows(const at::Tensor& tokens, const std::vector<int64_t>& starts, int64_t seq_len) {
  std::vector<at::Tensor> rows;
  rows.reserve(starts.size());
  for (int64_t s : starts) rows.push_back(tokens.slice(0, s, s + seq_len + 1));
  return at::stack(rows);
}

// Lets cuBLAS use TF32 tensor cores for fp32 matmuls for a scope (restores the previous setting).
class Tf32Scope {
 public:
  explicit Tf32Scope(bool on) : previous_(at::globalContext().allowTF32CuBLAS()), on_(on) {
    if (on_) at::globalContext().setAllowTF32CuBLAS(true);
  }
  ~Tf32Scope() {
    if (on_) at::globalContext().setAllowTF32CuBLAS(previous_);
  }
  Tf32Scope(const Tf32Scope&) = delete;
  Tf32Scope& operator=(const Tf32Scope&) = delete;

 private:
  bool previous_, on_;
};

at::Tensor next_token_loss(const model::Model& m, const at::Tensor& batch) {
  at::Tensor input = batch.slice(1, 0, batch.size(1) - 1).to(m.device());
  at::Tensor target = batch.slice(1, 1).to(m.device());
  at::Tensor logits = m.forward_train(input);
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), target.reshape({-1}));
}
}  // namespace

double lm_eval_loss(const model::Model& m, const at::Tensor& tokens, int64_t seq_len, int64_t windows) {
  QSAE_CHECK(tokens.dim() == 1 && tokens.scalar_type() == at::kLong, "held-out tokens must be int64 1-D");
  const int64_t span = tokens.size(0) - seq_len - 1;
  QSAE_CHECK(span > 0, "held-out set has ", tokens.size(0), " tokens, fewer than one window of ", seq_len + 1);
  windows = std::max<int64_t>(1, std::min(windows, span));
  c10::NoGradGuard no_grad;
  double total = 0;
  const int64_t chunk = 8;
  for (int64_t w0 = 0; w0 < windows; w0 += chunk) {
    std::vector<int64_t> starts;
    for (int64_t w = w0; w < std::min(windows, w0 + chunk); ++w) starts.push_back(w * span / windows);
    total += next_token_loss(m, gather_windows(tokens, starts, seq_len)).item<double>() * starts.size();
  }
  return total / windows;
}

LmTrainResult train_lm(model::Model& m, const at::Tensor& train_tokens, const at::Tensor& heldout_tokens,
                       const LmTrainOptions& o, const ProgressFn& progress, const CancelToken* cancel) {
  QSAE_CHECK(train_tokens.dim() == 1 && train_tokens.scalar_type() == at::kLong, "training tokens must be int64 1-D");
  QSAE_CHECK_RANGE(o.steps > 0 && o.batch_size > 0 && o.seq_len > 1, "steps, batch size and sequence length must be positive");
  const int64_t span = train_tokens.size(0) - o.seq_len - 1;
  QSAE_CHECK(span > 0, "training set has ", train_tokens.size(0), " tokens, fewer than one window of ", o.seq_len + 1);

  auto params = trainable_parameters(m);
  std::vector<at::Tensor> exp_avg, exp_avg_sq;
  for (auto& [name, p] : params) {
    p.requires_grad_(true);
    exp_avg.push_back(at::zeros_like(p));
    exp_avg_sq.push_back(at::zeros_like(p));
  }
  // On CUDA, fp32 matmuls may use TF32 tensor cores while training.
  Tf32Scope tf32(m.device().is_cuda());
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int64_t> pick(0, span);
  LmTrainResult r;
  std::vector<double> recent;
  auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };

  // With a time limit, the schedule is fitted to it: after a few timed steps the run is shortened (never
  // lengthened) to the steps that fit, so the cosine decay still ends at its floor.
  int64_t total = o.steps;
  constexpr int64_t kTimedFrom = 5, kTimedTo = 25;
  double timed_start = 0;
  for (int64_t step = 0; step < total; ++step) {
    check_cancel(cancel);
    if (o.max_seconds > 0 && elapsed() > o.max_seconds) break;
    if (o.max_seconds > 0 && step == kTimedFrom) timed_start = elapsed();
    if (o.max_seconds > 0 && step == kTimedTo && total > kTimedTo) {
      const double per_step = (elapsed() - timed_start) / double(kTimedTo - kTimedFrom);
      const double evals = o.eval_every > 0 ? double(total) / double(o.eval_every) + 1 : 1;
      const double left = o.max_seconds * 0.95 - elapsed() - evals * per_step;  // an evaluation costs about a step
      total = std::min(total, step + std::max<int64_t>(1, int64_t(left / per_step)));
    }
    // Warm-up then cosine decay to lr * min_lr_ratio.
    double lr = o.lr;
    if (step < o.warmup_steps) {
      lr = o.lr * double(step + 1) / double(o.warmup_steps);
    } else {
      double progress_frac = double(step - o.warmup_steps) / double(std::max<int64_t>(1, total - o.warmup_steps));
      lr = o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * progress_frac)));
    }
    std::vector<int64_t> starts(o.batch_size);
    for (auto& s : starts) s = pick(rng);
    at::Tensor loss = next_token_loss(m, gather_windows(train_tokens, starts, o.seq_len));
    for (auto& [name, p] : params) p.mutable_grad() = at::Tensor();
    loss.backward();
    const double loss_v = loss.item<double>();
    QSAE_CHECK(std::isfinite(loss_v), "training diverged at step ", step, " (loss ", loss_v, ")");
    {
      c10::NoGradGuard no_grad;
      // The global gradient norm with one device sync (per-tensor sums of squares, added in fp64).
      std::vector<at::Tensor> sums;
      for (auto& [name, p] : params)
        if (p.grad().defined()) sums.push_back(p.grad().pow(2).sum());
      const double norm = sums.empty() ? 0.0 : std::sqrt(at::stack(sums).to(at::kDouble).sum().item<double>());
      const double clip = (o.grad_clip > 0 && norm > o.grad_clip) ? o.grad_clip / (norm + 1e-6) : 1.0;
      const double bc1 = 1 - std::pow(o.beta1, double(step + 1));
      const double bc2 = 1 - std::pow(o.beta2, double(step + 1));
      for (size_t i = 0; i < params.size(); ++i) {
        at::Tensor& p = params[i].second;
        if (!p.grad().defined()) continue;
        at::Tensor g = p.grad() * clip;
        exp_avg[i].mul_(o.beta1).add_(g, 1 - o.beta1);
        exp_avg_sq[i].mul_(o.beta2).addcmul_(g, g, 1 - o.beta2);
        if (p.dim() >= 2 && o.weight_decay > 0) p.mul_(1 - lr * o.weight_decay);
        at::Tensor denom = (exp_avg_sq[i] / bc2).sqrt_().add_(o.eps);
        p.addcdiv_(exp_avg[i], denom, -lr / bc1);
      }
    }
    recent.push_back(loss_v);
    if (recent.size() > 50) recent.erase(recent.begin());
    r.steps = step + 1;
    r.tokens += o.batch_size * o.seq_len;
    const bool last = step + 1 == total;
    if (heldout_tokens.defined() && ((o.eval_every > 0 && (step + 1) % o.eval_every == 0) || last)) {
      r.heldout_curve.emplace_back(step + 1, lm_eval_loss(m, heldout_tokens, o.seq_len, o.eval_windows));
    }
    if (progress) {
      std::ostringstream msg;
      msg << "loss " << loss_v << " lr " << lr;
      if (!r.heldout_curve.empty()) msg << " held-out " << r.heldout_curve.back().second;
      progress({"train", double(step + 1), double(total), "steps", msg.str()});
    }
  }
  for (auto& [name, p] : params) {
    p.mutable_grad() = at::Tensor();
    p.requires_grad_(false);
  }
  r.seconds = elapsed();
  r.scheduled_steps = total;
  double s = 0;
  for (double v : recent) s += v;
  r.final_train_loss = recent.empty() ? 0 : s / recent.size();
  if (heldout_tokens.defined()) {
    if (r.heldout_curve.empty() || r.heldout_curve.back().first != r.steps)
      r.heldout_curve.emplace_back(r.steps, lm_eval_loss(m, heldout_tokens, o.seq_len, o.eval_windows));
    r.heldout_loss = r.heldout_curve.back().second;
  }
  return r;
}

}  // namespace qsae::train
