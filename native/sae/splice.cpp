#include "sae/splice.h"

#include "common/error.h"

namespace qsae::sae {

SpliceSums splice_eval(const model::Model& m, const Sae& sae, const std::string& hook, int64_t layer,
                       const at::Tensor& input_ids, const at::Tensor& attention_mask) {
  return splice_eval(m, std::vector<const Sae*>{&sae}, hook, layer, input_ids, attention_mask).front();
}

std::vector<SpliceSums> splice_eval(const model::Model& m, const std::vector<const Sae*>& saes, const std::string& hook,
                                    int64_t layer, const at::Tensor& input_ids, const at::Tensor& attention_mask) {
  QSAE_CHECK_TYPE(input_ids.dim() == 2, "input_ids: expected [B, T]");
  QSAE_CHECK_RANGE(input_ids.size(1) >= 2, "input_ids: need at least 2 tokens per row to score next tokens");
  QSAE_CHECK_RANGE(!saes.empty(), "splice_eval: no SAEs given");
  for (const Sae* s : saes)
    QSAE_CHECK_RANGE(s->d_in == m.config().hidden_size, "SAE d_in ", s->d_in, " does not match the model's ",
                     "hidden size ", m.config().hidden_size);
  c10::NoGradGuard ng;
  // BOS positions keep their activations (SAEs are trained without them, as qsae extract skips BOS).
  const int64_t bos = m.config().bos_token_id;
  at::Tensor keep = bos >= 0 ? (input_ids.to(m.device()) == bos).unsqueeze(-1) : at::Tensor();
  auto except_bos = [&](const at::Tensor& h, const at::Tensor& edited) {
    return keep.defined() ? at::where(keep.to(h.device()), h, edited) : edited;
  };
  auto run = [&](std::function<at::Tensor(const at::Tensor&)> fn) {
    model::ForwardOptions o;
    o.attention_mask = attention_mask;
    if (fn) o.edits.push_back({hook, layer, std::move(fn)});
    return at::log_softmax(m.forward(input_ids, o).logits.narrow(1, 0, input_ids.size(1) - 1), -1);  // [B,T-1,V]
  };
  const at::Tensor lp_orig = run({});
  const int64_t T = input_ids.size(1);
  const at::Tensor ids = input_ids.to(lp_orig.device());
  const at::Tensor target = ids.narrow(1, 1, T - 1).unsqueeze(-1);
  at::Tensor valid = at::ones({ids.size(0), T - 1}, lp_orig.options().dtype(at::kBool));
  if (attention_mask.defined()) {
    at::Tensor am = attention_mask.to(lp_orig.device()) != 0;
    valid = am.narrow(1, 0, T - 1).logical_and(am.narrow(1, 1, T - 1));
  }
  const at::Tensor w = valid.to(at::kDouble);
  auto nll = [&](const at::Tensor& lp) {
    return -(lp.gather(-1, target).squeeze(-1).to(at::kDouble) * w).sum().item<double>();
  };
  const at::Tensor p_orig = lp_orig.exp();
  auto kl = [&](const at::Tensor& lp) {
    return ((p_orig * (lp_orig - lp)).sum(-1).to(at::kDouble) * w).sum().item<double>();
  };
  const double nll_orig = nll(lp_orig);
  const int64_t tokens = valid.sum().item<int64_t>();
  double nll_zero = 0, kl_zero = 0;
  {
    at::Tensor lp_zero = run([&](const at::Tensor& h) { return except_bos(h, at::zeros_like(h)); });
    nll_zero = nll(lp_zero);
    kl_zero = kl(lp_zero);
  }
  std::vector<SpliceSums> out;
  out.reserve(saes.size());
  for (const Sae* sae_in : saes) {
    const Sae sae = sae_in->to(m.device(), at::kFloat);
    at::Tensor lp_sae = run([&](const at::Tensor& h) {
      return except_bos(h, sae.forward(h.reshape({-1, sae.d_in}).to(at::kFloat)).x_hat.reshape(h.sizes()).to(h.scalar_type()));
    });
    SpliceSums s;
    s.nll_orig = nll_orig;
    s.nll_sae = nll(lp_sae);
    s.nll_zero = nll_zero;
    s.kl_sae = kl(lp_sae);
    s.kl_zero = kl_zero;
    s.tokens = tokens;
    out.push_back(s);
  }
  return out;
}

}  // namespace qsae::sae
