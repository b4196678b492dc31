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

struct Sae {
  std::string architecture = "relu";
  int64_t d_in = 0, d_sae = 0, k = 0;
  bool apply_b_dec_to_input = false;
  at::Tensor W_enc /*[d_in,d_sae]*/, b_enc /*[d_sae]*/, W_dec /*[d_sae,d_in]*/, b_dec /*[d_in]*/,
      threshold /*[d_sae], jumprelu and batchtopk*/;
  json cfg;  // cfg.json as loaded or as it will be saved (metadata etc.)

  // Pre-activations [N, d_sae] in the compute dtype (fp32 on CPU).
  at::Tensor pre_acts(const at::Tensor& x) const;
  // Dense latent activations [N, d_sae] (any leading shape is flattened to rows). Computes in fp32 on CPU.
  at::Tensor encode(const at::Tensor& x) const;
  // [N, d_sae] -> [N, d_in].
  at::Tensor decode(const at::Tensor& f) const;
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
};

// A freshly initialized SAE (W_dec = W_enc^T with unit-norm rows, zero biases, threshold for jumprelu).
Sae init_sae(const std::string& architecture, int64_t d_in, int64_t d_sae, int64_t k, at::Generator gen,
             double init_scale = 1.0);

// Loads qsae's own and SAELens folders (cfg.json + sae_weights.safetensors). Weights stay in their stored
// dtype on CPU; encode/decode compute in fp32 there.
Sae load_sae(const std::string& folder);
// Writes cfg.json, sae_weights.safetensors and (when given) sparsity.safetensors ("sparsity": log10 feature
// density [d_sae]) into a temp folder, then renames it onto `folder` (replacing an existing SAE folder).
void save_sae(const std::string& folder, const Sae& s, const at::Tensor& log10_density = {});

// SAELens-style cfg.json for an SAE (merging s.cfg's metadata).
json make_cfg(const Sae& s);

}  // namespace qsae::sae
