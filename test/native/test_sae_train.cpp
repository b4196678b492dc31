// Trainer: recovery of a known sparse dictionary, grid, determinism, checkpoint/resume (stop and cancel),
// normalization folding, evaluation metrics, bad input.
#include "testing.h"
#include <unistd.h>


#include "common/error.h"
#include "io/fs.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "sae/sae.h"
#include "sae/trainer.h"

using namespace qsae;
using namespace qsae::sae;

namespace {
std::string tmpdir(const std::string& name) { return qsae::testing::temp_dir("sae-train", name, true); }
using testing::error_of;
// x = sum of `active` random true features (unit norm, n_feat > d) with magnitudes in [1, 2), times `scale`.
at::Tensor synthetic(int64_t n, int64_t d, int64_t n_feat, int64_t active, uint64_t seed, at::Tensor* dict,
                     double scale = 1.0) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto F = at::randn({n_feat, d}, g);
  F = F / F.norm(2, {1}, true);
  auto idx = std::get<1>(at::rand({n, n_feat}, g).topk(active, 1));
  auto mag = at::rand({n, active}, g) + 1.0;
  auto coef = at::zeros({n, n_feat}).scatter_(1, idx, mag);
  if (dict) *dict = F;
  return (coef.mm(F) * scale).contiguous();
}
double mean_best_cos(const at::Tensor& W_dec, const at::Tensor& F) {
  auto Wn = W_dec / W_dec.norm(2, {1}, true);
  return std::get<0>(F.mm(Wn.t()).max(1)).mean().item<double>();
}
TrainConfig base_cfg(const std::string& acts, const std::string& out) {
  TrainConfig c;
  c.acts = acts;
  c.out = out;
  c.batch_size = 256;
  c.tokens = 256 * 40;
  c.seed = 7;
  return c;
}
std::vector<at::Tensor> weights(const std::string& folder) {
  auto f = SafetensorsFile::open(join_path(folder, "sae_weights.safetensors"));
  return {f->get("W_enc").clone(), f->get("b_enc").clone(), f->get("W_dec").clone(), f->get("b_dec").clone()};
}
}  // namespace

TEST_CASE("relu and topk SAEs recover a known sparse dictionary (mean best cosine >= 0.9)") {
  at::Tensor F;
  auto dir = tmpdir("quality");
  auto acts = join_path(dir, "acts.safetensors");
  save_safetensors(acts, {{"acts", synthetic(16384, 32, 64, 3, 11, &F, 5.0)}});
  for (std::string arch : {"relu", "topk"}) {
    auto c = base_cfg(acts, join_path(dir, arch));
    c.architecture = arch;
    c.expansions = {4};
    c.l1s = {arch == "relu" ? 0.05 : 0.0};
    c.k = 3;
    c.batch_size = 512;
    c.tokens = 0;
    c.epochs = arch == "relu" ? 40 : 25;
    c.lr = 4e-3;
    auto r = train_saes(c);
    auto s = load_sae(c.out);
    double cos = mean_best_cos(s.W_dec, F);
    MESSAGE(arch << ": mean best cosine " << cos << ", l0 " << r.saes[0].l0 << ", mse " << r.saes[0].mse);
    CHECK(cos >= 0.9);
    if (at::hasCUDA()) {
      // The same run on the GPU (bf16 tensor-core GEMMs, fp32 master weights) learns the dictionary too.
      c.device = "cuda";
      c.out = join_path(dir, arch + "-cuda");
      auto rc = train_saes(c);
      double cc = mean_best_cos(load_sae(c.out).W_dec, F);
      MESSAGE(arch << " on CUDA: mean best cosine " << cc << ", l0 " << rc.saes[0].l0 << ", mse " << rc.saes[0].mse);
      CHECK(cc >= 0.9);
    }
  }
  remove_tree(dir);
}

TEST_CASE("a grid trains in one pass; folders, cfg metadata, sparsity and normalization folding") {
  auto dir = tmpdir("grid");
  auto acts = join_path(dir, "acts.safetensors");
  auto X = synthetic(3000, 16, 40, 3, 3, nullptr, 30.0);
  save_safetensors(acts, {{"acts", X}});
  auto c = base_cfg(acts, join_path(dir, "out"));
  c.expansions = {0.5, 2};
  c.l1s = {1e-3, 1e-2};
  c.metadata = {{"model", "tiny"}, {"precision", "nf4"}};
  auto r = train_saes(c);
  REQUIRE(r.saes.size() == 4);
  CHECK(r.scale == doctest::Approx(std::sqrt(16.0 / X.pow(2).sum(1).narrow(0, 0, 3000).mean().item<double>())).epsilon(1e-4));
  auto grid = read_json_file(join_path(c.out, "grid.json"));
  CHECK(grid.size() == 4);
  for (auto& t : r.saes) {
    auto s = load_sae(t.folder);
    CHECK(s.d_sae == (t.name.rfind("x0.5", 0) == 0 ? 8 : 32));
    CHECK(s.cfg["metadata"]["precision"] == "nf4");
    CHECK(s.cfg["normalize_activations"] == "none");
    CHECK(file_exists(join_path(t.folder, "sparsity.safetensors")));
    // folded weights on raw data reproduce the training-space reconstruction, scaled back
    auto xs = X.narrow(0, 0, 64);
    auto f_raw = s.encode(xs);
    Sae n = s;  // unfold by hand: W_enc / scale, W_dec * scale, b_dec * scale on x * scale
    n.W_enc = s.W_enc / r.scale;
    n.W_dec = s.W_dec * r.scale;
    n.b_dec = s.b_dec * r.scale;
    CHECK(at::allclose(n.encode(xs * r.scale), f_raw, 1e-3, 1e-4));
    CHECK(at::allclose(n.decode(f_raw) / r.scale, s.decode(f_raw), 1e-3, 1e-3));
    // evaluation: metrics against a direct computation over the whole set
    auto e = evaluate_sae(s, acts, "", -1, 500);
    auto xh = s.decode(s.encode(X));
    double se = (xh - X).pow(2).sum().item<double>();
    double tv = (X - X.mean(0)).pow(2).sum().item<double>();
    CHECK(e.mse == doctest::Approx(se / X.numel()).epsilon(1e-4));
    CHECK(e.explained_variance == doctest::Approx(1 - se / tv).epsilon(1e-4));
    CHECK(e.l0 == doctest::Approx((s.encode(X) > 0).sum(1).to(at::kDouble).mean().item<double>()).epsilon(1e-6));
    CHECK(e.dead_fraction == doctest::Approx(((s.encode(X) > 0).sum(0) == 0).to(at::kDouble).mean().item<double>()));
  }
  remove_tree(dir);
}

TEST_CASE("training is deterministic, and a stopped or cancelled run resumes to the same weights") {
  auto dir = tmpdir("resume");
  auto acts = join_path(dir, "acts.safetensors");
  save_safetensors(acts, {{"acts", synthetic(2000, 16, 40, 3, 5, nullptr)}});
  for (std::string arch : {"relu", "topk"}) {
    INFO(arch);
    auto c = base_cfg(acts, join_path(dir, "a-" + arch));
    c.architecture = arch;
    c.k = 4;
    c.expansions = {1, 2};
    c.buffer_rows = 512;  // several windows: exercises the shuffle buffer's cursor
    c.resample_every = arch == "relu" ? 10 : 0;
    c.dead_after = 1000;
    train_saes(c);
    auto c2 = c;
    c2.out = join_path(dir, "b-" + arch);
    train_saes(c2);
    for (auto n : {"x1", "x2"}) {
      auto a = weights(join_path(c.out, n)), b = weights(join_path(c2.out, n));
      for (int i = 0; i < 4; ++i) CHECK(at::equal(a[i], b[i]));
    }
    // stop after 13 steps (the checkpoint stays, nothing is saved), then resume
    auto c3 = c;
    c3.out = join_path(dir, "c-" + arch);
    c3.stop_after = 13;
    auto r3 = train_saes(c3);
    CHECK(r3.stopped);
    CHECK(file_exists(checkpoint_path(c3)));
    CHECK(!file_exists(c3.out + "/x1"));
    c3.stop_after = 0;
    c3.resume = true;
    auto r4 = train_saes(c3);
    CHECK(r4.resumed_from == 13);
    CHECK(!file_exists(checkpoint_path(c3)));
    // cancellation mid-run keeps a checkpoint too
    auto c4 = c;
    c4.out = join_path(dir, "d-" + arch);
    CancelToken tok;
    auto e = error_of([&] {
      train_saes(c4, &tok, [&](const Progress& p) {
        if (p.done >= 256 * 21) tok.cancel();
      });
    });
    CHECK(e.find("aborted") != std::string::npos);
    CHECK(file_exists(checkpoint_path(c4)));
    c4.resume = true;
    CHECK(train_saes(c4).resumed_from == 21);
    for (auto n : {"x1", "x2"}) {
      auto a = weights(join_path(c.out, n)), b = weights(join_path(c3.out, n)), d = weights(join_path(c4.out, n));
      for (int i = 0; i < 4; ++i) {
        CHECK(at::equal(a[i], b[i]));
        CHECK(at::equal(a[i], d[i]));
      }
    }
  }
  // a checkpoint from other settings is refused
  auto c = base_cfg(acts, join_path(dir, "e"));
  c.stop_after = 3;
  train_saes(c);
  c.stop_after = 0;
  c.resume = true;
  c.lr = 2e-3;
  CHECK(error_of([&] { train_saes(c); }).find("different settings") != std::string::npos);
  remove_tree(dir);
}

TEST_CASE("batchtopk and jumprelu train and save loadable SAEs") {
  auto dir = tmpdir("types");
  auto acts = join_path(dir, "acts.safetensors");
  auto X = synthetic(2000, 16, 40, 3, 9, nullptr);
  save_safetensors(acts, {{"acts", X}});
  for (std::string arch : {"batchtopk", "jumprelu"}) {
    auto c = base_cfg(acts, join_path(dir, arch));
    c.architecture = arch;
    c.k = 4;
    c.expansions = {2};
    c.l1s = {1e-3};
    auto r = train_saes(c);
    auto s = load_sae(c.out);
    CHECK(s.architecture == arch);
    CHECK(s.threshold.defined());
    auto e = evaluate_sae(s, acts);
    MESSAGE(arch << ": ev " << e.explained_variance << " l0 " << e.l0);
    CHECK(e.explained_variance > 0.0);
    CHECK(std::isfinite(e.mse));
  }
  remove_tree(dir);
}

TEST_CASE("bad input: NaN rows, d_in mismatch, empty store, conflicting options; no partial folder") {
  auto dir = tmpdir("bad");
  auto acts = join_path(dir, "acts.safetensors");
  auto X = at::randn({600, 8});
  X[437][3] = INFINITY;
  save_safetensors(acts, {{"acts", X}});
  auto c = base_cfg(acts, join_path(dir, "out"));
  c.buffer_rows = 256;
  auto e = error_of([&] { train_saes(c); });
  CHECK(e.find("acts.safetensors") != std::string::npos);
  CHECK(e.find("row 437") != std::string::npos);
  CHECK(e.find("Inf") != std::string::npos);
  CHECK(!file_exists(c.out));
  // eval with a d_in mismatch
  auto s = init_sae("relu", 12, 6, 0, at::make_generator<at::CPUGeneratorImpl>(1));
  e = error_of([&] { evaluate_sae(s, acts); });
  CHECK(e.find("d_in=12") != std::string::npos);
  // empty
  save_safetensors(acts, {{"acts", at::empty({0, 8})}});
  CHECK(error_of([&] { train_saes(c); }).find("empty") != std::string::npos);
  CHECK(!file_exists(c.out));
  save_safetensors(acts, {{"acts", at::randn({100, 8})}});
  c.epochs = 1;
  CHECK(error_of([&] { train_saes(c); }).find("exactly one of --epochs or --tokens") != std::string::npos);
  c.epochs = 0;
  c.architecture = "gated";
  CHECK(error_of([&] { train_saes(c); }).find("unknown SAE architecture") != std::string::npos);
  c.architecture = "topk";
  c.k = 100;
  CHECK(error_of([&] { train_saes(c); }).find("--k") != std::string::npos);
  CHECK(!file_exists(c.out));
  remove_tree(dir);
}

