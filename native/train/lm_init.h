// Fresh weights for a Llama/Qwen3-family config (what train-lm starts from), in checkpoint names.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "model/config.h"

namespace qsae::train {

// Normal(0, 0.02) matrices (output projections scaled by 1/sqrt(2 * layers)), unit norms, zero biases.
std::vector<std::pair<std::string, at::Tensor>> init_lm_weights(const model::ModelConfig& c, uint64_t seed);

}  // namespace qsae::train
