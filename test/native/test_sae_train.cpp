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
    c.k = arch == "topk" ? 3 : 0;
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
    c.k = arch == "topk" ? 4 : 0;
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
    c.k = arch == "batchtopk" ? 4 : 0;
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


namespace {
bool one_line(const std::string& e) { return !e.empty() && e.find('\n') == std::string::npos; }
bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("--out is checked before any data is read: never the activations, a file or a foreign folder") {
  auto dir = tmpdir("outpath");
  auto acts = join_path(dir, "acts.safetensors");
  auto X = synthetic(600, 8, 20, 2, 4, nullptr);
  save_safetensors(acts, {{"acts", X}});
  int steps = 0;
  auto refused = [&](const std::string& acts_path, const std::string& out) {
    auto c = base_cfg(acts_path, out);
    c.tokens = 256 * 2;
    auto e = error_of([&] { train_saes(c, nullptr, [&](const Progress&) { ++steps; }); });
    CHECK(one_line(e));
    return e;
  };
  // the --acts file itself, in another spelling
  auto e = refused(acts, dir + "/./acts.safetensors");
  CHECK(has(e, "--out is the --acts path itself"));
  // a plain file; a file inside an SAE folder
  write_file_atomic(join_path(dir, "notes.txt"), "keep me\n");
  CHECK(has(refused(acts, join_path(dir, "notes.txt")), "notes.txt: exists and is a file"));
  auto sae_dir = join_path(dir, "sae");
  train_saes(base_cfg(acts, sae_dir));
  CHECK(has(refused(acts, join_path(sae_dir, "cfg.json")), "cfg.json: exists and is a file"));
  // a folder that is not a qsae output (here an activation store: the check runs before its manifest is read)
  auto store = join_path(dir, "store");
  make_dirs(store);
  write_file_atomic(join_path(store, "manifest.json"), "{}\n");
  CHECK(has(refused(acts, store), "is not a qsae SAE or grid folder"));
  // the --acts store itself, a folder inside it, a folder holding it
  CHECK(has(refused(store, store + "/"), "--out is the --acts path itself"));
  CHECK(has(refused(store, join_path(store, "sae")), "--out lies inside --acts"));
  CHECK(has(refused(store, join_path(store, "../store/sae")), "--out lies inside --acts"));
  CHECK(has(refused(join_path(sae_dir, "acts.safetensors"), sae_dir), "--out contains the --acts path"));
  CHECK(steps == 0);  // refused before training
  // nothing was touched
  CHECK(at::equal(SafetensorsFile::open(acts)->get("acts"), X));
  CHECK(file_exists(join_path(dir, "notes.txt")));
  CHECK(file_exists(join_path(store, "manifest.json")));
  CHECK(file_exists(join_path(sae_dir, "cfg.json")));
  CHECK(!file_exists(join_path(store, "sae")));
  remove_tree(dir);
}

TEST_CASE("a previous SAE or grid output at --out is replaced whole") {
  auto dir = tmpdir("regrid");
  auto acts = join_path(dir, "acts.safetensors");
  save_safetensors(acts, {{"acts", synthetic(600, 8, 20, 2, 4, nullptr)}});
  auto c = base_cfg(acts, join_path(dir, "out"));
  c.tokens = 256 * 3;
  c.expansions = {1};
  c.l1s = {1e-3, 1e-2};
  train_saes(c);
  CHECK(list_dir(c.out) == std::vector<std::string>{"grid.json", "x1-l1_0.001", "x1-l1_0.01"});
  write_file_atomic(join_path(c.out, "stray.txt"), "x\n");
  // another grid: no stale members or stray files remain
  c.expansions = {1, 2};
  c.l1s = {1e-3};
  auto r = train_saes(c);
  CHECK(list_dir(c.out) == std::vector<std::string>{"grid.json", "x1", "x2"});
  CHECK(r.saes[1].folder == join_path(c.out, "x2"));
  CHECK(read_json_file(join_path(c.out, "grid.json")).size() == 2);
  // one SAE over the grid folder (with a trailing slash) replaces it too
  c.out += "/";
  c.expansions = {1};
  train_saes(c);
  CHECK(list_dir(join_path(dir, "out")) == std::vector<std::string>{"cfg.json", "sae_weights.safetensors", "sparsity.safetensors"});
  for (const auto& n : list_dir(dir)) {
    CHECK(!has(n, ".tmp-"));
    CHECK(!has(n, ".old-"));
  }
  remove_tree(dir);
}

TEST_CASE("budgets are exact: the last batch is partial; totals count the whole run, resumed or not") {
  auto dir = tmpdir("budget");
  auto acts = join_path(dir, "acts.safetensors");
  save_safetensors(acts, {{"acts", synthetic(2000, 16, 40, 3, 5, nullptr)}});
  for (std::string arch : {"relu", "topk", "batchtopk", "jumprelu"}) {
    INFO(arch);
    auto c = base_cfg(acts, join_path(dir, arch));
    c.architecture = arch;
    c.k = is_topk_family(arch) ? 4 : 0;
    c.tokens = 0;
    c.epochs = 1;  // 2000 rows: 7 batches of 256 and one of 208
    auto r = train_saes(c);
    CHECK(r.steps == 8);
    CHECK(r.tokens == 2000);
    CHECK(r.session_tokens == 2000);
    auto s = load_sae(c.out);
    CHECK(s.cfg["metadata"]["training"]["tokens"] == 2000);
    CHECK(s.cfg["metadata"]["training"]["k"] == (is_topk_family(arch) ? json(4) : json()));
    if (at::hasCUDA()) {  // the CUDA step with a partial last batch
      c.device = "cuda";
      c.out = join_path(dir, arch + "-cuda");
      auto rc = train_saes(c);
      CHECK(rc.tokens == 2000);
      auto e = evaluate_sae(load_sae(c.out), acts);
      MESSAGE(arch << " on CUDA, partial last batch: ev " << e.explained_variance);
      CHECK(std::isfinite(e.mse));
    }
  }
  // a token budget whose last batch has 3 rows, stopped and resumed: the same weights, totals over the run
  auto c = base_cfg(acts, join_path(dir, "full"));
  c.tokens = 256 * 5 + 3;
  c.buffer_rows = 512;
  double last_done = 0, last_total = 0;
  auto r = train_saes(c, nullptr, [&](const Progress& p) { last_done = p.done, last_total = p.total; });
  CHECK(r.steps == 6);
  CHECK(r.tokens == 1283);
  CHECK(last_done == 1283);
  CHECK(last_total == 1283);
  auto c2 = c;
  c2.out = join_path(dir, "resumed");
  c2.stop_after = 3;
  auto r1 = train_saes(c2);
  CHECK(r1.stopped);
  CHECK(r1.steps == 3);
  CHECK(r1.tokens == 768);
  c2.stop_after = 0;
  c2.resume = true;
  auto r2 = train_saes(c2);
  CHECK(r2.resumed_from == 3);
  CHECK(r2.steps == 6);
  CHECK(r2.tokens == 1283);
  CHECK(r2.session_tokens == 1283 - 768);
  auto a = weights(c.out), b = weights(c2.out);
  for (int i = 0; i < 4; ++i) CHECK(at::equal(a[i], b[i]));
  remove_tree(dir);
}

TEST_CASE("resume: --acts in any spelling; a changed setting or other data is named") {
  auto dir = tmpdir("fingerprint");
  auto acts = join_path(dir, "acts.safetensors");
  save_safetensors(acts, {{"acts", synthetic(1000, 8, 20, 2, 6, nullptr)}});
  auto c = base_cfg(acts, join_path(dir, "out"));
  c.tokens = 256 * 8;
  c.stop_after = 3;
  train_saes(c);
  // relative to another working directory
  {
    char cwd[4096];
    REQUIRE(::getcwd(cwd, sizeof cwd) != nullptr);
    REQUIRE(::chdir(dir.c_str()) == 0);
    struct Back {
      std::string to;
      ~Back() {
        if (::chdir(to.c_str()) != 0) std::abort();
      }
    } back{cwd};
    auto rel = c;
    rel.acts = "./acts.safetensors";
    rel.out = "out/";
    rel.stop_after = 4;
    rel.resume = true;
    auto r = train_saes(rel);
    CHECK(r.resumed_from == 3);
    CHECK(r.stopped);
  }
  auto abs = c;
  abs.acts = dir + "//acts.safetensors";
  abs.resume = true;
  abs.stop_after = 0;
  // a changed setting: named with its old and new value
  auto lr = abs;
  lr.lr = 2e-3;
  lr.seed = 8;
  auto e = error_of([&] { train_saes(lr); });
  CHECK(one_line(e));
  CHECK(has(e, "out.checkpoint.safetensors"));
  CHECK(has(e, "--lr was 0.001, now 0.002"));
  CHECK(has(e, "--seed was 7, now 8"));
  CHECK(!has(e, "--batch-size"));
  // other data with the same row count and width
  save_safetensors(acts, {{"acts", synthetic(1000, 8, 20, 2, 99, nullptr)}});
  e = error_of([&] { train_saes(abs); });
  CHECK(has(e, "the activations' content"));
  CHECK(!has(e, "row count"));
  save_safetensors(acts, {{"acts", synthetic(1000, 8, 20, 2, 6, nullptr)}});
  auto r = train_saes(abs);
  CHECK(r.resumed_from == 7);
  CHECK(r.steps == 8);
  remove_tree(dir);
}

TEST_CASE("--k with relu/jumprelu and an L1 list with topk/batchtopk are refused") {
  auto dir = tmpdir("kl1");
  auto acts = join_path(dir, "acts.safetensors");
  save_safetensors(acts, {{"acts", synthetic(600, 8, 20, 2, 4, nullptr)}});
  auto c = base_cfg(acts, join_path(dir, "out"));
  c.expansions = {8};
  for (std::string arch : {"relu", "jumprelu"}) {
    c.architecture = arch;
    c.k = 8;
    auto e = error_of([&] { train_saes(c); });
    CHECK(one_line(e));
    CHECK(has(e, "--k applies to topk and batchtopk SAEs only (got --k 8 with --type " + arch + ")"));
  }
  c.k = 0;
  for (std::string arch : {"topk", "batchtopk"}) {
    c.architecture = arch;
    c.l1s = {1e-3, 1e-2};
    auto e = error_of([&] { train_saes(c); });
    CHECK(one_line(e));
    CHECK(has(e, "--l1 applies to relu and jumprelu SAEs only"));
  }
  c.architecture = "relu";
  c.l1s = {1e-3, 1e-3};
  CHECK(has(error_of([&] { train_saes(c); }), "--l1 lists a value twice"));
  CHECK(!file_exists(c.out));
  // topk without --k takes k = 32
  c.architecture = "topk";
  c.l1s = {0};
  c.tokens = 256 * 2;
  train_saes(c);
  CHECK(load_sae(c.out).k == 32);
  remove_tree(dir);
}

TEST_CASE("cfg metadata: --hook/--layer of a plain file recorded, unknown fields null; raw-scale mse; density counts") {
  auto dir = tmpdir("meta");
  auto acts = join_path(dir, "acts.safetensors");
  auto X = synthetic(3000, 16, 40, 3, 3, nullptr, 30.0);
  save_safetensors(acts, {{"acts", X}});
  auto c = base_cfg(acts, join_path(dir, "labelled"));
  c.hook = "resid_post";
  c.layer = 3;
  c.tokens = 256 * 150;
  c.expansions = {2};
  c.l1s = {1e-3};
  auto r = train_saes(c);
  auto s = load_sae(c.out);
  auto md = s.cfg["metadata"];
  CHECK(md["hook_name"] == "resid_post");
  CHECK(md["layer"] == 3);
  CHECK(s.cfg["hook_name"] == "resid_post");
  CHECK(s.cfg["hook_layer"] == 3);
  for (const char* k : {"model", "precision", "quantization"}) {
    INFO(k);
    CHECK(md.contains(k));
    CHECK(md[k].is_null());
  }
  CHECK(!s.cfg.contains("model_name"));
  // the train result's mse is in the activations' scale, as evaluate_sae's (the scale here is about 1/60)
  auto e = evaluate_sae(s, acts);
  MESSAGE("train mse " << r.saes[0].mse << ", eval mse " << e.mse << ", scale " << r.scale);
  CHECK(r.scale < 0.1);
  CHECK(r.saes[0].mse / e.mse > 0.3);
  CHECK(r.saes[0].mse / e.mse < 3);
  CHECK(md["training"]["final_mse"].get<double>() == doctest::Approx(r.saes[0].mse));
  // the density histogram counts every latent: those that fired by bin, the others as dead
  int64_t n = 0;
  for (auto v : e.density_counts) n += v;
  CHECK(n + e.density_dead == e.d_sae);
  CHECK(e.density_dead == std::llround(e.dead_fraction * e.d_sae));
  // without --hook/--layer they are null, and SAELens's top-level names are left out
  c.hook = "";
  c.layer = -1;
  c.out = join_path(dir, "plain");
  c.tokens = 256 * 2;
  train_saes(c);
  auto p = load_sae(c.out);
  CHECK(p.cfg["metadata"]["hook_name"].is_null());
  CHECK(p.cfg["metadata"]["layer"].is_null());
  CHECK(!p.cfg.contains("hook_name"));
  CHECK(!p.cfg.contains("hook_layer"));
  remove_tree(dir);
}

TEST_CASE("evaluate_sae applies a loaded SAE's run-time normalization") {
  auto dir = tmpdir("evalnorm");
  auto acts = join_path(dir, "acts.safetensors");
  auto X = synthetic(500, 8, 20, 2, 4, nullptr, 3.0) + 0.5;
  save_safetensors(acts, {{"acts", X}});
  auto s = init_sae("relu", 8, 16, 0, at::make_generator<at::CPUGeneratorImpl>(2));
  s.b_dec.fill_(0.1f);
  auto none = evaluate_sae(s, acts, "", -1, 128);
  for (std::string norm : {"layer_norm", "constant_norm_rescale"}) {
    INFO(norm);
    s.normalize_activations = norm;
    auto folder = join_path(dir, norm);
    save_sae(folder, s);
    auto l = load_sae(folder);
    CHECK(l.normalize_activations == norm);
    auto e = evaluate_sae(l, acts, "", -1, 128);
    auto xh = l.decode(l.encode(X), X);
    CHECK(e.mse == doctest::Approx((xh - X).pow(2).mean().item<double>()).epsilon(1e-4));
    CHECK(e.mse != doctest::Approx(none.mse).epsilon(1e-3));
  }
  remove_tree(dir);
}
