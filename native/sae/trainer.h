// Native SAE trainer: Adam with lr warm-up/decay, L1 warm-up, activation normalization folded in at save,
// dead-latent tracking, aux-k (topk family), optional resampling (relu), a shuffle buffer over store shards,
// a grid of SAEs sharing each batch, and checkpoint/resume with the full state (incl. the data cursor).
//
// Data order: the run is a stream of rows; step t uses rows [t*B, (t+1)*B) of it. Each epoch permutes
// 256-row blocks of the set, groups them into windows of `buffer_rows` rows (the shuffle buffer, the only
// rows held in memory) and permutes the rows of each window, all seeded by (seed, epoch, window). The
// batch of a step is thus a pure function of (seed, step): resuming needs only the step. The budget is exact:
// the last step takes only the rows left (tokens, or epochs x rows, rounded up to a whole row).
//
// The output path is checked before any data is read: --out may not be, lie inside or contain --acts, and may only
// replace nothing, an empty folder or a previous qsae output (sae.h: check_replaceable_output), which is then
// replaced whole (a grid is written into a temp folder and renamed, as save_sae does for one SAE).
#pragma once
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/cancel.h"
#include "sae/sae.h"

namespace qsae::sae {

struct TrainConfig {
  std::string acts;                 // activation store folder or .safetensors
  std::string hook;                 // optional, see ActivationSource::open
  int64_t layer = -1;
  std::string architecture = "relu";
  std::vector<double> expansions = {0.5};  // grid: d_sae = round(expansion * d_in)
  std::vector<double> l1s = {5e-4};        // grid: L1 coefficients (relu, and the L0 weight of jumprelu); the
                                           // top-k family has no L1 term: a list of several values is refused
  int64_t k = 0;                           // topk / batchtopk (0: 32); must stay 0 for relu / jumprelu
  bool l1_norm_weighted = false;  // false: decoder rows renormalized to unit norm after every step
  bool apply_b_dec_to_input = false;
  double epochs = 0;              // either epochs over the set ...
  int64_t tokens = 0;             // ... or a token budget
  int64_t batch_size = 4096;
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8;
  double lr_warmup = 0.01;  // fraction of the steps with linear warm-up
  double lr_decay = 0.2;    // fraction of the steps (at the end) with linear decay to 0
  double l1_warmup = 0.05;  // fraction of the steps over which the L1 coefficient ramps from 0
  uint64_t seed = 0;
  bool normalize = true;        // scale so that E||x||^2 = d_in, folded into the weights at save
  int64_t dead_after = 0;       // tokens without firing to count as dead; 0: min(10M, max(N, total/10))
  double aux_coef = 1.0 / 32;   // aux-k weight (topk family)
  int64_t aux_k = 0;            // 0: d_in / 2
  int64_t resample_every = 0;   // relu: resample dead latents every N steps (0: never)
  int64_t buffer_rows = 0;      // shuffle buffer rows; 0: whole set up to 256 MiB of fp32
  bool fused = true;            // fused kernels; false: the plain autograd reference path
  std::string device = "cpu";
  bool bf16_matmul = true;      // CUDA: GEMMs on bf16 tensor cores (fp32 master weights and Adam); false: fp32
  std::string out;              // one SAE: the SAE folder; a grid: one sub-folder per SAE
  bool resume = false;          // continue from <out>.checkpoint.safetensors when present
  int64_t checkpoint_every = 0; // steps between checkpoints (0: every 60 s)
  int64_t stop_after = 0;       // testing: stop (like a kill) after this many steps, keeping the checkpoint
  nlohmann::json metadata;      // merged into cfg.json's metadata (model, hook_name, layer, precision, ...);
                                // model, precision, quantization, hook_name and layer are always written (null
                                // when neither this, the store's manifest nor --hook/--layer say)
};

struct TrainedSae {
  std::string folder, name;
  int64_t d_sae = 0;
  double l1_coef = 0;
  // Averages over the last steps. mse is in the activations' own (raw) scale, as evaluate_sae reports it; loss
  // (mse + the sparsity terms) is in the training scale (activations times TrainResult::scale).
  double loss = 0, mse = 0, l0 = 0, dead_fraction = 0;
};

struct TrainResult {
  std::vector<TrainedSae> saes;
  int64_t steps = 0, tokens = 0;  // totals over the whole run (resumed sessions included)
  int64_t session_tokens = 0;     // tokens trained by this call (after resumed_from)
  int64_t d_in = 0, resumed_from = 0;
  double seconds = 0, tokens_per_second = 0;  // this call
  double scale = 1;
  bool stopped = false;  // stop_after reached (checkpoint kept)
};

// Paths used for `cfg`: the checkpoint file, and each grid member's folder.
std::string checkpoint_path(const TrainConfig& cfg);

TrainResult train_saes(const TrainConfig& cfg, const CancelToken* cancel = nullptr, const ProgressFn& progress = {});

// ---- evaluation ----
struct EvalResult {
  double mse = 0, explained_variance = 0, l0 = 0, l1 = 0, dead_fraction = 0;
  int64_t n_tokens = 0, d_in = 0, d_sae = 0;
  std::vector<double> density_edges;     // log10 density bin edges (histogram over latents)
  std::vector<int64_t> density_counts;   // latents that fired, per bin
  int64_t density_dead = 0;              // latents that never fired: sum(density_counts) + density_dead = d_sae
  at::Tensor log10_density;              // [d_sae], -10 where never fired
};
EvalResult evaluate_sae(const Sae& sae, const std::string& acts, const std::string& hook = "", int64_t layer = -1,
                        int64_t batch_size = 4096, const CancelToken* cancel = nullptr, const ProgressFn& progress = {});

}  // namespace qsae::sae
