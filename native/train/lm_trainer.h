// Training small decoder LMs with libtorch autograd: next-token cross-entropy, AdamW, warm-up + cosine
// schedule, gradient clipping, held-out evaluation. Used to build qsae's bundled default model; works on
// any fp32 CPU (or CUDA) model loaded by the model runtime.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "common/cancel.h"
#include "model/model.h"

namespace qsae::train {

struct LmTrainOptions {
  int64_t seq_len = 256;
  int64_t batch_size = 16;
  int64_t steps = 1000;
  int64_t warmup_steps = 100;
  double lr = 3e-3;
  double min_lr_ratio = 0.1;  // cosine decays to lr * min_lr_ratio
  double weight_decay = 0.1;  // applied to matrices only (not norms)
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double grad_clip = 1.0;
  uint64_t seed = 0;
  int64_t eval_every = 250;     // steps between held-out evaluations (0: only at the end)
  int64_t eval_windows = 64;    // held-out windows per evaluation (fixed, evenly spaced)
  double max_seconds = 0;       // time limit (0: none): the schedule is shortened to fit it, then a hard stop
};

struct LmTrainResult {
  int64_t steps = 0;
  int64_t scheduled_steps = 0;  // the schedule's length: LmTrainOptions::steps, or fewer to fit max_seconds
  int64_t tokens = 0;
  double seconds = 0;
  double final_train_loss = 0;  // mean over the last 50 steps
  double heldout_loss = 0;      // nats per token
  std::vector<std::pair<int64_t, double>> heldout_curve;  // (step, loss)
};

// Named trainable tensors of a dense fp32 model (checkpoint names; tied weights once).
std::vector<std::pair<std::string, at::Tensor>> trainable_parameters(const model::Model& m);

// Mean next-token loss (nats) over `windows` evenly spaced windows of seq_len+1 tokens of `tokens` (int64 1-D).
double lm_eval_loss(const model::Model& m, const at::Tensor& tokens, int64_t seq_len, int64_t windows);

// Trains in place. `train_tokens`/`heldout_tokens`: int64 1-D token streams (documents joined by EOS).
LmTrainResult train_lm(model::Model& m, const at::Tensor& train_tokens, const at::Tensor& heldout_tokens,
                       const LmTrainOptions& opts, const ProgressFn& progress = {}, const CancelToken* cancel = nullptr);

}  // namespace qsae::train
