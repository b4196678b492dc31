// SAE splicing into a model's forward pass (native/sae/splice.h): an exact-reconstruction SAE recovers all
// the loss, a zero decoder equals the zero ablation; on CPU, and on CUDA when a GPU is present.
#include "testing.h"

#include "io/fs.h"
#include "model/model.h"
#include "sae/splice.h"

using namespace qsae;

namespace {
// relu SAE with W_enc = [I, -I], W_dec = [I; -I] (identity) or 0: x_hat = relu(x) - relu(-x) = x, or 0.
sae::Sae exact_sae(int64_t D, bool zero_decoder) {
  sae::Sae s;
  s.architecture = "relu";
  s.d_in = D;
  s.d_sae = 2 * D;
  at::Tensor I = at::eye(D);
  s.W_enc = at::cat({I, -I}, 1);
  s.W_dec = zero_decoder ? at::zeros({2 * D, D}) : at::cat({I, -I}, 0);
  s.b_enc = at::zeros({2 * D});
  s.b_dec = at::zeros({D});
  return s;
}
// A ../shared fixture model at fp32 on the CPU, or null (with a message) when ../shared is absent.
std::shared_ptr<model::Model> fp32_shared_model(const std::string& name) {
  const std::string dir = testing::shared_model(name);
  if (!is_directory(dir)) {
    MESSAGE("../shared not found: skipped");
    return nullptr;
  }
  model::LoadOptions o;
  o.precision = model::parse_precision("fp32");
  return model::Model::load(dir, o);
}
}  // namespace

TEST_CASE("splice_eval: exact SAE recovers all the loss, zero decoder equals the zero ablation") {
  const std::string dir = testing::shared_model("tiny-qwen3");
  if (!is_directory(dir)) {
    MESSAGE("../shared not found: skipped");
    return;
  }
  std::vector<std::string> devices = {"cpu"};
  if (at::hasCUDA()) devices.push_back("cuda");
  at::Tensor ids = at::randint(0, 256, {3, 10}, at::kLong);
  at::Tensor mask = at::ones({3, 10}, at::kLong);
  mask.narrow(1, 0, 4).select(0, 1).zero_();  // row 1 left-padded by 4
  for (const auto& dev : devices) {
    CAPTURE(dev);
    model::LoadOptions o;
    o.precision = model::parse_precision("fp32");
    o.device = dev;
    auto m = model::Model::load(dir, o);
    const int64_t D = m->config().hidden_size;
    auto r = sae::splice_eval(*m, exact_sae(D, false), "resid_post", 0, ids, mask);
    CHECK(r.tokens == 3 * 9 - 4);
    CHECK(std::abs(r.nll_zero - r.nll_orig) > 1e-6 * r.nll_orig);  // zeroing changes the output (random weights: not necessarily for the worse)
    CHECK(std::abs(r.nll_sae - r.nll_orig) <= 1e-6 * r.nll_orig);
    CHECK(r.kl_sae <= 1e-6 * r.tokens);
    CHECK(r.kl_zero > 0);
    auto z = sae::splice_eval(*m, exact_sae(D, true), "mlp_out", 1, ids, mask);
    CHECK(std::abs(z.nll_sae - z.nll_zero) <= 1e-9 * z.nll_zero);
    CHECK(z.nll_orig == doctest::Approx(r.nll_orig).epsilon(1e-9));
    CHECK_THROWS_WITH(sae::splice_eval(*m, exact_sae(D / 2, false), "resid_post", 0, ids, mask),
                      doctest::Contains("does not match the model's hidden size"));
  }
}

TEST_CASE("splice_eval: several SAEs in one call equal one call each") {
  auto m = fp32_shared_model("tiny-qwen3");
  if (!m) return;
  const int64_t D = m->config().hidden_size;
  at::Tensor ids = at::randint(0, 256, {2, 8}, at::kLong);
  const sae::Sae exact = exact_sae(D, false), zero = exact_sae(D, true);
  sae::Sae noisy = exact_sae(D, false);
  noisy.W_dec = noisy.W_dec + 0.05 * at::randn_like(noisy.W_dec);
  auto many = sae::splice_eval(*m, std::vector<const sae::Sae*>{&exact, &zero, &noisy}, "resid_post", 1, ids);
  REQUIRE(many.size() == 3);
  const sae::Sae* each[] = {&exact, &zero, &noisy};
  for (int i = 0; i < 3; ++i) {
    CAPTURE(i);
    auto one = sae::splice_eval(*m, *each[i], "resid_post", 1, ids);
    CHECK(many[i].tokens == one.tokens);
    CHECK(many[i].nll_orig == doctest::Approx(one.nll_orig).epsilon(1e-12));
    CHECK(many[i].nll_sae == doctest::Approx(one.nll_sae).epsilon(1e-12));
    CHECK(many[i].nll_zero == doctest::Approx(one.nll_zero).epsilon(1e-12));
    CHECK(many[i].kl_sae == doctest::Approx(one.kl_sae).epsilon(1e-9));
    CHECK(many[i].kl_zero == doctest::Approx(one.kl_zero).epsilon(1e-9));
  }
  CHECK(many[2].nll_sae != doctest::Approx(many[0].nll_sae).epsilon(1e-9));  // the three really differ
  CHECK_THROWS_WITH(sae::splice_eval(*m, std::vector<const sae::Sae*>{}, "resid_post", 1, ids), doctest::Contains("no SAEs"));
}

TEST_CASE("splice_eval: BOS positions keep their activations") {
  auto m = fp32_shared_model("tiny-gpt2");  // bos_token_id 50256
  if (!m) return;
  const int64_t D = m->config().hidden_size, bos = m->config().bos_token_id;
  REQUIRE(bos >= 0);
  // Only BOS tokens: nothing is edited, so even a zero decoder changes nothing.
  at::Tensor all_bos = at::full({2, 6}, bos, at::kLong);
  auto r = sae::splice_eval(*m, exact_sae(D, true), "resid_post", 0, all_bos);
  CHECK(r.nll_sae == doctest::Approx(r.nll_orig).epsilon(1e-12));
  CHECK(r.nll_zero == doctest::Approx(r.nll_orig).epsilon(1e-12));
  CHECK(r.kl_sae == doctest::Approx(0.0));
  // With other tokens after BOS the zero decoder does change the loss.
  at::Tensor mixed = at::randint(0, 1000, {2, 6}, at::kLong);
  mixed.select(1, 0).fill_(bos);
  auto z = sae::splice_eval(*m, exact_sae(D, true), "resid_post", 0, mixed);
  CHECK(z.kl_sae > 0);
}
