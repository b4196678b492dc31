// SAE format and activation sources: save/load round trips, SAELens folders, stores, bad input.
#include "testing.h"
#include <unistd.h>


#include "common/error.h"
#include "io/fs.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "sae/activation_source.h"
#include "sae/sae.h"

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
