// SAE format and activation sources: save/load round trips, SAELens folders, stores, bad input.
#include "testing.h"
#include <unistd.h>


#include "common/error.h"
#include "io/fs.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "sae/activation_source.h"
#include "sae/sae.h"

#include <functional>
#include <map>

using namespace qsae;
using namespace qsae::sae;

namespace {
std::string tmpdir(const std::string& name) { return qsae::testing::temp_dir("sae-test", name, false); }
using testing::error_of;
// A store with 2 shards of acts.resid_post.{3,5}, tokens, doc.
std::string make_store(const std::string& name, const std::vector<int64_t>& rows, int64_t d, at::Tensor* all = nullptr) {
  auto dir = tmpdir(name);
  make_dirs(dir);
  json m = {{"format", "qsae-activations"}, {"version", 1}, {"hooks", {"resid_post"}}, {"layers", {3, 5}},
            {"d_model", d}, {"dtype", "fp32"}, {"shards", json::array()}};
  std::vector<at::Tensor> parts;
  int64_t n = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    char fn[64];
    std::snprintf(fn, sizeof fn, "shard-%05zu.safetensors", i);
    auto a3 = at::randn({rows[i], d});
    auto a5 = at::randn({rows[i], d});
    parts.push_back(a3);
    save_safetensors(join_path(dir, fn), {{"acts.resid_post.3", a3}, {"acts.resid_post.5", a5},
                                          {"tokens", at::arange(n, n + rows[i], at::kLong)},
                                          {"doc", (at::arange(n, n + rows[i], at::kInt) / 4).to(at::kInt)},
                                          {"pos", at::zeros({rows[i]}, at::kInt)}});
    m["shards"].push_back({{"file", fn}, {"rows", rows[i]}});
    n += rows[i];
  }
  m["n_tokens"] = n;
  write_json_file(join_path(dir, "manifest.json"), m);
  if (all) *all = at::cat(parts, 0);
  return dir;
}
}  // namespace

TEST_CASE("save_sae / load_sae round trip for every architecture") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  for (std::string arch : {"relu", "topk", "batchtopk", "jumprelu"}) {
    auto s = init_sae(arch, 16, 24, 4, gen);
    s.b_enc.normal_(0, 0.1, gen);
    s.b_dec.normal_(0, 0.1, gen);
    s.apply_b_dec_to_input = arch == "relu";
    s.cfg["metadata"] = {{"model", "m"}, {"hook_name", "resid_post"}, {"layer", 3}, {"precision", "nf4"}};
    auto dir = tmpdir("rt-" + arch);
    save_sae(dir, s, at::full({24}, -2.0));
    CHECK(file_exists(join_path(dir, "sparsity.safetensors")));
    auto l = load_sae(dir);
    CHECK(l.architecture == arch);
    CHECK(l.k == (is_topk_family(arch) ? 4 : 0));
    CHECK(l.apply_b_dec_to_input == (arch == "relu"));
    CHECK(at::equal(l.W_enc, s.W_enc));
    CHECK(at::equal(l.W_dec, s.W_dec));
    CHECK(l.cfg["metadata"]["precision"] == "nf4");
    CHECK(l.cfg["hook_name"] == "resid_post");
    auto x = at::randn({5, 16}, gen);
    CHECK(at::allclose(l.encode(x), s.encode(x)));
    // re-save over the existing folder (atomic replace), no temp folders left behind
    save_sae(dir, l);
    CHECK(!file_exists(join_path(dir, "sparsity.safetensors")));
    const std::string base = dir.substr(parent_dir(dir).size() + 1);
    for (const std::string& e : list_dir(parent_dir(dir))) CHECK(e.find(base + ".tmp-") == std::string::npos);
    remove_tree(dir);
  }
}

TEST_CASE("encode matches hand-computed activations") {
  Sae s;
  s.architecture = "relu";
  s.d_in = 2;
  s.d_sae = 3;
  s.W_enc = at::tensor({1.f, 0.f, -1.f, 0.f, 1.f, 2.f}).reshape({2, 3});
  s.b_enc = at::tensor({0.f, -1.f, 0.5f});
  s.W_dec = at::tensor({1.f, 0.f, 0.f, 1.f, 1.f, 1.f}).reshape({3, 2});
  s.b_dec = at::tensor({0.f, 1.f});
  auto x = at::tensor({2.f, 1.f}).reshape({1, 2});
  // pre = [2, 1-1, -2+2+0.5] = [2, 0, 0.5]
  CHECK(at::allclose(s.encode(x), at::tensor({2.f, 0.f, 0.5f}).reshape({1, 3})));
  s.apply_b_dec_to_input = true;  // x - b_dec = [2, 0] -> pre = [2, -1, -1.5]
  CHECK(at::allclose(s.encode(x), at::tensor({2.f, 0.f, 0.f}).reshape({1, 3})));
  CHECK(at::allclose(s.decode(at::tensor({2.f, 0.f, 0.f}).reshape({1, 3})), at::tensor({2.f, 1.f}).reshape({1, 2})));
  s.architecture = "topk";
  s.k = 1;
  s.apply_b_dec_to_input = false;
  CHECK(at::allclose(s.encode(x), at::tensor({2.f, 0.f, 0.f}).reshape({1, 3})));
  s.architecture = "jumprelu";
  s.threshold = at::tensor({2.5f, 0.f, 0.1f});
  CHECK(at::allclose(s.encode(x), at::tensor({0.f, 0.f, 0.5f}).reshape({1, 3})));
}

TEST_CASE("loads a SAELens folder (standard architecture, float32, torch dtype names)") {
  auto dir = tmpdir("saelens");
  make_dirs(dir);
  json c = {{"architecture", "standard"}, {"d_in", 8}, {"d_sae", 12}, {"dtype", "torch.float32"},
            {"apply_b_dec_to_input", true}, {"normalize_activations", "none"}, {"hook_name", "blocks.3.hook_resid_post"},
            {"model_name", "gpt2"}, {"device", "cpu"}};
  write_json_file(join_path(dir, "cfg.json"), c);
  auto we = at::randn({8, 12}), wd = at::randn({12, 8}), be = at::randn({12}), bd = at::randn({8});
  save_safetensors(join_path(dir, "sae_weights.safetensors"), {{"W_enc", we}, {"b_enc", be}, {"W_dec", wd}, {"b_dec", bd}});
  auto s = load_sae(dir);
  CHECK(s.architecture == "relu");
  CHECK(s.apply_b_dec_to_input);
  auto x = at::randn({3, 8});
  CHECK(at::allclose(s.encode(x), at::relu((x - bd).mm(we) + be), 1e-5, 1e-5));
  // topk through activation_fn_str (older SAELens)
  c["activation_fn_str"] = "topk";
  c["activation_fn_kwargs"] = {{"k", 3}};
  write_json_file(join_path(dir, "cfg.json"), c);
  auto t = load_sae(dir);
  CHECK(t.architecture == "topk");
  CHECK(t.k == 3);
  CHECK(((t.encode(x) != 0).sum(1) <= 3).all().item<bool>());
  // bad shapes name the tensor
  save_safetensors(join_path(dir, "sae_weights.safetensors"), {{"W_enc", we.t().contiguous()}, {"b_enc", be}, {"W_dec", wd}, {"b_dec", bd}});
  auto e = error_of([&] { load_sae(dir); });
  CHECK(e.find("W_enc") != std::string::npos);
  CHECK(e.find("[12, 8]") != std::string::npos);
  remove_tree(dir);
  CHECK(error_of([&] { load_sae(dir); }).find("not an SAE folder") != std::string::npos);
}

TEST_CASE("activation source reads a store in order across shards") {
  at::manual_seed(5);
  at::Tensor all;
  auto dir = make_store("store", {7, 5, 9}, 6, &all);
  CHECK(error_of([&] { ActivationSource::open(dir); }).find("--layer") != std::string::npos);
  CHECK(error_of([&] { ActivationSource::open(dir, "resid_post", 4); }).find("acts.resid_post.5") != std::string::npos);
  auto src = ActivationSource::open(dir, "", 3);
  CHECK(src->n_rows() == 21);
  CHECK(src->d() == 6);
  CHECK(src->tensor_name() == "acts.resid_post.3");
  CHECK(src->has_doc());
  std::vector<at::Tensor> got, toks;
  ActivationChunk c;
  while (src->next(c, 4)) {
    CHECK(c.rows() <= 4);
    got.push_back(c.acts);
    toks.push_back(c.tokens);
  }
  CHECK(at::equal(at::cat(got, 0), all));
  CHECK(at::equal(at::cat(toks, 0), at::arange(21, at::kLong)));
  auto r = src->read(6, 13);
  CHECK(at::equal(r.acts, all.narrow(0, 6, 7)));
  CHECK(at::equal(r.doc, (at::arange(6, 13, at::kInt) / 4).to(at::kInt)));
  CHECK(src->locate(12).second == 0);
  remove_tree(dir);
}

TEST_CASE("activation source: plain .safetensors, NaN rows, empty and wrong inputs") {
  auto dir = tmpdir("plain");
  make_dirs(dir);
  auto p = join_path(dir, "a.safetensors");
  auto a = at::randn({10, 4});
  a[7][2] = NAN;
  save_safetensors(p, {{"acts", a}});
  auto src = ActivationSource::open(p);
  CHECK(src->n_rows() == 10);
  CHECK(!src->has_doc());
  auto e = error_of([&] { src->read(0, 10, true); });
  CHECK(e.find("a.safetensors") != std::string::npos);
  CHECK(e.find("row 7") != std::string::npos);
  CHECK(e.find("NaN") != std::string::npos);
  save_safetensors(p, {{"acts", at::empty({0, 4})}});
  CHECK(error_of([&] { ActivationSource::open(p); }).find("empty") != std::string::npos);
  save_safetensors(p, {{"x", at::zeros({3, 4})}});
  CHECK(error_of([&] { ActivationSource::open(p); }).find("no tensor 'acts'") != std::string::npos);
  write_json_file(join_path(dir, "manifest.json"), json{{"hooks", {"h"}}, {"layers", {0}}, {"shards", json::array()}});
  CHECK(error_of([&] { ActivationSource::open(dir); }).find("empty") != std::string::npos);
  remove_tree(dir);
}

namespace {
// A SAELens-style folder (cfg.json + sae_weights.safetensors) of a relu SAE with the given cfg additions.
std::string saelens_folder(const std::string& name, const json& extra, int64_t d = 8, int64_t S = 12,
                           std::vector<at::Tensor>* w = nullptr) {
  auto dir = tmpdir(name);
  make_dirs(dir);
  json c = {{"architecture", "standard"}, {"d_in", d}, {"d_sae", S}, {"dtype", "float32"},
            {"apply_b_dec_to_input", true}, {"normalize_activations", "none"}};
  for (auto it = extra.begin(); it != extra.end(); ++it) c[it.key()] = it.value();
  write_json_file(join_path(dir, "cfg.json"), c);
  auto g = at::make_generator<at::CPUGeneratorImpl>(17);
  std::vector<at::Tensor> t = {at::randn({d, S}, g), at::randn({S}, g) * 0.1, at::randn({S, d}, g),
                               at::randn({d}, g) * 0.1};
  save_safetensors(join_path(dir, "sae_weights.safetensors"),
                   {{"W_enc", t[0]}, {"b_enc", t[1]}, {"W_dec", t[2]}, {"b_dec", t[3]}});
  if (w) *w = t;
  return dir;
}
bool one_line(const std::string& e) { return !e.empty() && e.find('\n') == std::string::npos; }
}  // namespace

TEST_CASE("cfg.json uses SAELens's architecture names; qsae's own type round-trips through metadata") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  const std::map<std::string, std::string> saelens = {
      {"relu", "standard"}, {"topk", "topk"}, {"batchtopk", "jumprelu"}, {"jumprelu", "jumprelu"}};
  for (const auto& [arch, name] : saelens) {
    INFO(arch);
    auto s = init_sae(arch, 16, 24, 4, gen);
    if (arch == "batchtopk") s.threshold = at::full({24}, 0.05f);
    auto dir = tmpdir("arch-" + arch);
    save_sae(dir, s);
    auto c = read_json_file(join_path(dir, "cfg.json"));
    CHECK(c["architecture"] == name);
    CHECK(c["metadata"]["qsae_architecture"] == arch);
    auto l = load_sae(dir);
    CHECK(l.architecture == arch);
    CHECK(l.k == (is_topk_family(arch) ? 4 : 0));
    // a SAELens folder without qsae's key loads as SAELens reads it
    c["metadata"].erase("qsae_architecture");
    write_json_file(join_path(dir, "cfg.json"), c);
    auto m = load_sae(dir);
    CHECK(m.architecture == (arch == "relu" ? "relu" : arch == "batchtopk" ? "jumprelu" : arch));
    auto x = at::randn({6, 16}, gen);
    CHECK(at::allclose(m.encode(x), l.encode(x)));  // a thresholded batchtopk is a jumprelu at inference
    remove_tree(dir);
  }
  // batchtopk without a threshold keeps its per-row top-k: SAELens's topk
  auto s = init_sae("batchtopk", 16, 24, 4, gen);
  CHECK(make_cfg(s)["architecture"] == "topk");
  // an unknown qsae type in metadata is named
  auto dir = saelens_folder("arch-bad", {{"metadata", {{"qsae_architecture", "gated"}}}});
  auto e = error_of([&] { load_sae(dir); });
  CHECK(e.find("cfg.json") != std::string::npos);
  CHECK(e.find("'gated'") != std::string::npos);
  remove_tree(dir);
}

TEST_CASE("batchtopk with a threshold encodes as SAELens's jumprelu: relu(pre) * (pre > threshold)") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(8);
  auto s = init_sae("batchtopk", 8, 16, 3, gen);
  s.b_enc.normal_(0, 0.3, gen);
  s.threshold = at::rand({16}, gen) * 0.5;
  auto x = at::randn({20, 8}, gen);
  auto pre = x.mm(s.W_enc) + s.b_enc;
  auto ref = at::relu(pre) * (pre > s.threshold).to(at::kFloat);
  CHECK(at::allclose(s.encode(x), ref, 1e-5, 1e-6));
}

TEST_CASE("run-time normalization: layer_norm and constant_norm_rescale match hand-computed values") {
  Sae s;
  s.architecture = "relu";
  s.d_in = 3;
  s.d_sae = 3;
  s.W_enc = at::eye(3);
  s.W_dec = at::eye(3);
  s.b_enc = at::zeros({3});
  s.b_dec = at::zeros({3});
  // layer_norm, per token: x = [1, 2, 6]: mean 3, x - mean = [-2, -1, 3], unbiased std sqrt(7);
  //                        x = [0, 0, 3]: mean 1, x - mean = [-1, -1, 2], unbiased std sqrt(3)
  s.normalize_activations = "layer_norm";
  auto x = at::tensor({1.f, 2.f, 6.f, 0.f, 0.f, 3.f}).reshape({2, 3});
  const double e = 1e-5, s7 = std::sqrt(7.0), s3 = std::sqrt(3.0);
  auto f_ref = at::tensor({0.f, 0.f, float(3 / (s7 + e)), 0.f, 0.f, float(2 / (s3 + e))}).reshape({2, 3});
  auto f = s.encode(x);
  CHECK(at::allclose(f, f_ref, 1e-6, 1e-6));
  // decode scales back: x_hat = f * std + mean
  auto xh_ref = at::tensor({3.f, 3.f, float(3 + 3 * s7 / (s7 + e)), 1.f, 1.f, float(1 + 2 * s3 / (s3 + e))}).reshape({2, 3});
  CHECK(at::allclose(s.decode(f, x), xh_ref, 1e-5, 1e-6));
  CHECK(at::allclose(s.forward(x).x_hat, xh_ref, 1e-5, 1e-6));
  CHECK(s.forward(x).mse.item<double>() == doctest::Approx((xh_ref - x).pow(2).mean().item<double>()).epsilon(1e-5));
  auto err = error_of([&] { s.decode(f); });
  CHECK(err.find("layer_norm") != std::string::npos);
  CHECK(err.find("decode needs the input") != std::string::npos);
  // b_dec is subtracted after the normalization (SAELens: norm in, then - b_dec) and added before scaling back
  s.apply_b_dec_to_input = true;
  s.b_dec = at::tensor({1.f, 0.f, 0.f});
  auto xn = at::tensor({-2.f, -1.f, 3.f}) / float(s7 + e);
  auto f2 = at::relu(xn - s.b_dec);
  CHECK(at::allclose(s.encode(x.narrow(0, 0, 1)), f2.unsqueeze(0), 1e-6, 1e-6));
  CHECK(at::allclose(s.decode(f2.unsqueeze(0), x.narrow(0, 0, 1)), ((f2 + s.b_dec) * float(s7) + 3).unsqueeze(0), 1e-5, 1e-6));
  s.apply_b_dec_to_input = false;
  s.b_dec = at::zeros({3});
  // constant_norm_rescale: x = [3, 4, 0], c = sqrt(3) / 5, x' = [3c, 4c, 0]; b_enc = [-1.2, 0, 0] -> f = [0, 4c, 0]; x_hat = f / c
  s.normalize_activations = "constant_norm_rescale";
  s.b_enc = at::tensor({-1.2f, 0.f, 0.f});
  auto y = at::tensor({3.f, 4.f, 0.f}).reshape({1, 3});
  const double c = s3 / 5;
  CHECK(at::allclose(s.encode(y), at::tensor({0.f, float(4 * c), 0.f}).reshape({1, 3}), 1e-6, 1e-6));
  CHECK(at::allclose(s.decode(s.encode(y), y), at::tensor({0.f, 4.f, 0.f}).reshape({1, 3}), 1e-5, 1e-6));
  CHECK(at::allclose(s.forward(y).x_hat, at::tensor({0.f, 4.f, 0.f}).reshape({1, 3}), 1e-5, 1e-6));
}

TEST_CASE("normalize_activations from cfg.json: applied at run time, folded, or refused") {
  std::vector<at::Tensor> w;
  auto x = at::randn({40, 8}, at::make_generator<at::CPUGeneratorImpl>(2)) * 3 + 1;
  // layer_norm loads, changes the reconstruction, re-saves as it was
  auto dir = saelens_folder("norm-ln", {{"normalize_activations", "layer_norm"}}, 8, 12, &w);
  auto ln = load_sae(dir);
  CHECK(ln.normalize_activations == "layer_norm");
  Sae plain = ln;
  plain.normalize_activations = "none";
  auto mu = x.mean(1, true), sd = ((x - mu).pow(2).sum(1, true) / 7.0).sqrt();  // unbiased, as torch.std
  auto xn = (x - mu) / (sd + 1e-5);
  CHECK(at::allclose(ln.encode(x), plain.encode(xn), 1e-5, 1e-5));
  CHECK(at::allclose(ln.decode(ln.encode(x), x), plain.decode(plain.encode(xn)) * sd + mu, 1e-4, 1e-4));
  CHECK(!at::allclose(ln.encode(x), plain.encode(x)));
  auto re = tmpdir("norm-ln-re");
  save_sae(re, ln);
  CHECK(read_json_file(join_path(re, "cfg.json"))["normalize_activations"] == "layer_norm");
  CHECK(load_sae(re).normalize_activations == "layer_norm");
  remove_tree(re);
  remove_tree(dir);
  // unknown values are refused naming cfg.json and the value
  dir = saelens_folder("norm-bad", {{"normalize_activations", "batch_norm"}});
  auto e = error_of([&] { load_sae(dir); });
  CHECK(e.find("cfg.json") != std::string::npos);
  CHECK(e.find("'batch_norm'") != std::string::npos);
  CHECK(one_line(e));
  remove_tree(dir);
  // SAELens's old bool and null spellings
  dir = saelens_folder("norm-bool", {{"normalize_activations", false}});
  CHECK(load_sae(dir).normalize_activations == "none");
  remove_tree(dir);
  dir = saelens_folder("norm-null", {{"normalize_activations", nullptr}});
  CHECK(load_sae(dir).normalize_activations == "none");
  remove_tree(dir);
  // expected_average_only_in: a SAELens training checkpoint keeps its factor in activation_scaler.json; it is folded
  dir = saelens_folder("norm-eao", {{"normalize_activations", "expected_average_only_in"}}, 8, 12, &w);
  auto id = load_sae(dir);  // no scaler file: the factor is in the weights already (identity, as SAELens)
  CHECK(id.normalize_activations == "none");
  CHECK(at::equal(id.W_enc, w[0]));
  write_json_file(join_path(dir, "activation_scaler.json"), json{{"scaling_factor", 2.5}});
  auto folded = load_sae(dir);
  CHECK(folded.normalize_activations == "none");
  CHECK(at::allclose(folded.encode(x), id.encode(x * 2.5), 1e-5, 1e-5));
  auto f = folded.encode(x);
  CHECK(at::allclose(folded.decode(f), id.decode(f) / 2.5, 1e-5, 1e-5));
  CHECK(make_cfg(folded)["normalize_activations"] == "none");
  write_json_file(join_path(dir, "activation_scaler.json"), json{{"scaling_factor", nullptr}});
  CHECK(at::equal(load_sae(dir).W_enc, w[0]));
  remove_tree(dir);
  dir = saelens_folder("norm-true", {{"normalize_activations", true}});
  CHECK(load_sae(dir).normalize_activations == "none");
  remove_tree(dir);
}

TEST_CASE("NaN or Inf in the weights is refused at load, naming the file, tensor and position") {
  std::vector<at::Tensor> w;
  auto dir = saelens_folder("nanw", json::object(), 8, 12, &w);
  auto wd = w[2].clone();
  wd[2][5] = NAN;
  save_safetensors(join_path(dir, "sae_weights.safetensors"), {{"W_enc", w[0]}, {"b_enc", w[1]}, {"W_dec", wd}, {"b_dec", w[3]}});
  auto e = error_of([&] { load_sae(dir); });
  CHECK(e.find("sae_weights.safetensors") != std::string::npos);
  CHECK(e.find("'W_dec'") != std::string::npos);
  CHECK(e.find("NaN at [2, 5]") != std::string::npos);
  CHECK(one_line(e));
  auto be = w[1].clone();
  be[3] = -INFINITY;
  save_safetensors(join_path(dir, "sae_weights.safetensors"), {{"W_enc", w[0]}, {"b_enc", be}, {"W_dec", w[2]}, {"b_dec", w[3]}});
  e = error_of([&] { load_sae(dir); });
  CHECK(e.find("'b_enc' holds -Inf at [3]") != std::string::npos);
  remove_tree(dir);
}

TEST_CASE("save_sae replaces only a previous qsae output: never a plain file or another folder") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(6);
  auto s = init_sae("relu", 8, 4, 0, gen);
  auto dir = tmpdir("replace");
  make_dirs(dir);
  auto file = join_path(dir, "notes.txt");
  write_file_atomic(file, "keep me\n");
  auto e = error_of([&] { save_sae(file, s); });
  CHECK(e.find("notes.txt: exists and is a file") != std::string::npos);
  CHECK(file_exists(file));
  CHECK(!is_directory(file));
  auto other = join_path(dir, "other");
  make_dirs(other);
  write_file_atomic(join_path(other, "manifest.json"), "{}\n");
  e = error_of([&] { save_sae(other, s); });
  CHECK(e.find("not a qsae SAE or grid folder") != std::string::npos);
  CHECK(file_exists(join_path(other, "manifest.json")));
  // a grid folder (grid.json) and an SAE folder are replaced whole; a trailing slash names the same folder
  auto grid = join_path(dir, "grid");
  make_dirs(join_path(grid, "x1"));
  write_file_atomic(join_path(grid, "grid.json"), "[]\n");
  save_sae(grid + "/", s);
  CHECK(file_exists(join_path(grid, "cfg.json")));
  CHECK(!file_exists(join_path(grid, "grid.json")));
  CHECK(!file_exists(join_path(grid, "x1")));
  for (const auto& n : list_dir(dir)) {
    CHECK(n.find(".tmp-") == std::string::npos);
    CHECK(n.find(".old-") == std::string::npos);
  }
  remove_tree(dir);
}

TEST_CASE("the store reader checks manifest.json against the shards") {
  at::manual_seed(9);
  auto dir = make_store("manifest", {7, 5}, 6);
  const auto mpath = join_path(dir, "manifest.json");
  const json good = read_json_file(mpath);
  auto with = [&](const std::function<void(json&)>& edit) {
    json m = good;
    edit(m);
    write_json_file(mpath, m);
    auto e = error_of([&] { ActivationSource::open(dir, "resid_post", 3); });
    CHECK(one_line(e));
    CHECK(e.find("manifest.json") != std::string::npos);
    return e;
  };
  CHECK(with([](json& m) { m["n_tokens"] = 13; }).find("shards hold 12 rows but n_tokens is 13") != std::string::npos);
  CHECK(with([](json& m) { m["d_model"] = 7; }).find("d_model is 7 but") != std::string::npos);
  CHECK(with([](json& m) { m["dtype"] = "bf16"; }).find("dtype is bf16 but") != std::string::npos);
  CHECK(with([](json& m) { m["dtype"] = "int8"; }).find("dtype: expected fp32, bf16 or fp16") != std::string::npos);
  CHECK(with([](json& m) { m["shards"][1]["file"] = "../shard-00001.safetensors"; })
            .find("shard name \"../shard-00001.safetensors\" must be a plain file name") != std::string::npos);
  CHECK(with([&](json& m) { m["shards"][0]["file"] = join_path(dir, "shard-00000.safetensors"); })
            .find("must be a plain file name") != std::string::npos);
  CHECK(with([](json& m) { m.erase("hooks"); }).find("hooks: missing") != std::string::npos);
  CHECK(with([](json& m) { m["layers"] = "3"; }).find("layers: expected an array") != std::string::npos);
  write_json_file(mpath, good);
  CHECK(ActivationSource::open(dir, "resid_post", 3)->n_rows() == 12);
  remove_tree(dir);
}
