// An SAE judged by the model it was trained on: its reconstruction spliced into the forward pass at its hook
// point, against the clean forward and a zero ablation of the same activations.
//   ce_score (loss recovered) = (CE_zero - CE_sae) / (CE_zero - CE_orig)
//   KL = mean over tokens of KL(p_orig || p_edited) over the vocabulary
// Sums are returned per call so callers can stream batches and add them up.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "model/model.h"
#include "sae/sae.h"

namespace qsae::sae {

struct SpliceSums {
  double nll_orig = 0, nll_sae = 0, nll_zero = 0;  // summed next-token negative log-likelihood (nats)
  double kl_sae = 0, kl_zero = 0;                  // summed KL(orig || edited) (nats)
  int64_t tokens = 0;                              // predicted positions counted
};

// input_ids [B, T] int64; attention_mask [B, T] (1 = token, 0 = left padding) or undefined. Counts position t
// (predicting token t+1) when both t and t+1 are real tokens. The SAE runs in fp32 on the model's device.
// Positions holding the model's BOS token are left as they are (SAEs are trained without BOS rows).
SpliceSums splice_eval(const model::Model& m, const Sae& sae, const std::string& hook, int64_t layer,
                       const at::Tensor& input_ids, const at::Tensor& attention_mask = {});

// Several SAEs of one site on the same batch: the clean and zero-ablated forwards run once, then one forward
// per SAE (2 + n forwards instead of 3n). Results in the order of `saes`.
std::vector<SpliceSums> splice_eval(const model::Model& m, const std::vector<const Sae*>& saes, const std::string& hook,
                                    int64_t layer, const at::Tensor& input_ids, const at::Tensor& attention_mask = {});

}  // namespace qsae::sae
