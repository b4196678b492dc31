// Sparse autoencoders: the parameters, encode/decode, a reference forward with named losses, and the
// SAELens-compatible folder format (cfg.json + sae_weights.safetensors + sparsity.safetensors).
//
// Conventions (the same as SAELens):
//   pre  = (x - b_dec * apply_b_dec_to_input) @ W_enc + b_enc          W_enc [d_in, d_sae]
//   relu:      f = relu(pre)
//   topk:      f = relu(pre) kept at the k largest entries of each row, 0 elsewhere
//   batchtopk: training keeps the k*N largest of relu(pre) over the batch; inference uses `threshold`
//              (a running estimate of the smallest kept activation) like jumprelu, or per-row top-k if absent
//   jumprelu:  f = pre * (pre > threshold)
//   x_hat = f @ W_dec + b_dec                                           W_dec [d_sae, d_in]
// Run-time input normalization (SAELens's normalize_activations, applied per token around the SAE):
//   layer_norm:            x' = (x - mean(x)) / (std(x) + 1e-5) (std unbiased, as torch's); x_hat = x_hat' * std + mean
//   constant_norm_rescale: x' = x * c with c = sqrt(d_in) / ||x||;                      x_hat = x_hat' / c
//   none:                  identity (qsae's own SAEs: the training scale is folded into the weights)
// encode/pre_acts see x', decode returns the de-normalized reconstruction (it needs x for the per-token statistics).
// Losses: mse = mean over elements of (x_hat - x)^2; l1 = mean over rows of sum_j |f_j| (times ||W_dec_j||
// when the L1 is norm-weighted; jumprelu: the mean count of pre > threshold, its sparsity penalty);
// l0 = mean number of non-zero latents per row.
#pragma once
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace qsae::sae {

using json = nlohmann::json;

// "relu" | "topk" | "batchtopk" | "jumprelu". SAELens's "standard" maps to "relu"; throws TypeError otherwise.
std::string canonical_architecture(const std::string& name);
bool is_topk_family(const std::string& arch);  // topk, batchtopk

// jumprelu's straight-through bandwidth ε: the threshold's pseudo-derivatives use the rectangle kernel
// K(u) = [|u| < 1/2] at u = (pre - threshold) / ε, i.e. d f/dθ = -θ K / ε and d H(pre - θ)/dθ = -K / ε.
constexpr double kJumpReluBandwidth = 1e-3;

// Everything a forward pass produces. Tensors that do not apply are undefined.
struct ForwardResult {
  at::Tensor x_hat;     // [N, d_in] reconstruction
  at::Tensor latents;   // [N, d_sae] dense latent activations
  at::Tensor values;    // [N, k] kept activations (topk only)
  at::Tensor indices;   // [N, k] int64 latent indices (topk only)
  at::Tensor mse;       // scalar: mean over elements of (x_hat - x)^2
  at::Tensor l1;        // scalar: mean over rows of sum |f| (norm-weighted when asked)
  at::Tensor l0;        // scalar: mean count of non-zero latents per row
  at::Tensor aux;       // scalar: aux-k loss (topk family with dead latents), else 0
};

// The per-token statistics of a run-time normalization (undefined tensors when there is none).
struct InputNorm {
  at::Tensor mean, std;  // layer_norm: [N, 1]
  at::Tensor coeff;      // constant_norm_rescale: [N, 1]
};

struct Sae {
  std::string architecture = "relu";
  int64_t d_in = 0, d_sae = 0, k = 0;
  bool apply_b_dec_to_input = false;
  std::string normalize_activations = "none";  // none | layer_norm | constant_norm_rescale
  at::Tensor W_enc /*[d_in,d_sae]*/, b_enc /*[d_sae]*/, W_dec /*[d_sae,d_in]*/, b_dec /*[d_in]*/,
      threshold /*[d_sae], jumprelu and batchtopk*/;
  json cfg;  // cfg.json as loaded or as it will be saved (metadata etc.)

  // True when the SAE normalizes each token at run time (layer_norm, constant_norm_rescale).
  bool normalizes_per_token() const { return normalize_activations != "none"; }
  // x [N, d_in] (compute dtype, on the SAE's device) -> the normalized input; `stats` receives the per-token
  // statistics decode needs to undo it. Identity for "none".
  at::Tensor normalize_input(const at::Tensor& x, InputNorm* stats = nullptr) const;
  // Undoes normalize_input on a reconstruction [N, d_in] with the statistics of its input.
  at::Tensor denormalize_output(const at::Tensor& y, const InputNorm& stats) const;
  // Pre-activations [N, d_sae] in the compute dtype (fp32 on CPU), after the run-time normalization.
  at::Tensor pre_acts(const at::Tensor& x) const;
  // Dense latent activations [N, d_sae] (any leading shape is flattened to rows). Computes in fp32 on CPU.
  at::Tensor encode(const at::Tensor& x) const;
  // [N, d_sae] -> [N, d_in]. `x` is the input the latents were encoded from: required when the SAE
  // normalizes per token (its statistics scale the output back), ignored otherwise.
  at::Tensor decode(const at::Tensor& f, const at::Tensor& x = {}) const;
  // Reference forward with losses (plain ATen ops: differentiable when the parameters require grad).
  // `dead_mask` [d_sae] bool and `aux_k` enable the aux-k loss for the topk family.
  ForwardResult forward(const at::Tensor& x, bool l1_norm_weighted = false, const at::Tensor& dead_mask = {},
                        int64_t aux_k = 0) const;

  // Scales decoder rows to unit norm and compensates in W_enc columns and b_enc (f scales inversely),
  // so encode(decode(...)) is unchanged for relu/topk. The explicit normalization step of training.
  void normalize_decoder();
  // Copy on another device / dtype.
  Sae to(const at::Device& device, at::ScalarType dtype) const;
  std::vector<std::pair<std::string, at::Tensor>> named_tensors() const;
  at::ScalarType dtype() const { return W_enc.scalar_type(); }
  at::Device device() const { return W_enc.device(); }
  void validate(const std::string& where) const;  // shapes and architecture; throws naming `where`
  // Throws naming `where` (the weights file), the tensor and the first position holding NaN or Inf.
  void check_finite(const std::string& where) const;
};

// A freshly initialized SAE (W_dec = W_enc^T with unit-norm rows, zero biases, threshold for jumprelu).
Sae init_sae(const std::string& architecture, int64_t d_in, int64_t d_sae, int64_t k, at::Generator gen,
             double init_scale = 1.0);

// Loads qsae's own and SAELens folders (cfg.json + sae_weights.safetensors). Weights stay in their stored
// dtype on CPU; encode/decode compute in fp32 there. cfg.json's "architecture" is SAELens's name (standard,
// topk, jumprelu; relu/batchtopk also accepted); metadata.qsae_architecture, when present, restores qsae's own
// type (a batchtopk SAE is saved as a SAELens jumprelu). normalize_activations: none, layer_norm and
// constant_norm_rescale apply at run time; expected_average_only_in folds the factor of a SAELens
// activation_scaler.json beside the weights when there is one (a SAELens training checkpoint), else it is the
// identity (SAELens folds the factor into the weights when a run ends and then writes "none"; its loader applies
// nothing at run time for this value either); a bool is SAELens's old spelling (true = expected_average_only_in).
// Any other value, and NaN/Inf in the weights, is an error naming the file.
Sae load_sae(const std::string& folder);
// Writes cfg.json, sae_weights.safetensors and (when given) sparsity.safetensors ("sparsity": log10 feature
// density [d_sae]) into a temp folder, then renames it onto `folder`, replacing a previous qsae output there
// (see replace_output_folder).
void save_sae(const std::string& folder, const Sae& s, const at::Tensor& log10_density = {});

// SAELens-compatible cfg.json for an SAE (merging s.cfg's metadata): architecture "standard" for relu, "jumprelu"
// for batchtopk with a threshold (that is what it is at inference); metadata.qsae_architecture keeps qsae's type.
json make_cfg(const Sae& s);
// The SAELens architecture name cfg.json records for the SAE.
std::string saelens_architecture(const Sae& s);

// Output folders: qsae may replace nothing, an empty folder, or a previous qsae output (an SAE folder with
// cfg.json, a grid folder with grid.json). Anything else (a plain file, another folder) throws naming the path.
void check_replaceable_output(const std::string& path);
// Renames the finished folder `tmp` onto `dest` after check_replaceable_output(dest); a previous output there is
// replaced whole (moved aside, then removed), so no stale files remain.
void replace_output_folder(const std::string& tmp, const std::string& dest);

}  // namespace qsae::sae
