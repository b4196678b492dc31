// Model runtime on CUDA: every fixture model at each precision against ../shared/reference (the same
// tolerances as on CPU), KV-cache decoding equal to a full forward, and CUDA equal to CPU for the same
// precision. Skipped without a CUDA device; run by scripts/gpu-check.sh on a lent GPU machine.
#include "testing.h"

#include <cstdio>

#include "io/fs.h"
#include "io/safetensors.h"
#include "model/model.h"

using namespace qsae;
using namespace qsae::model;

namespace {

std::string model_dir(const std::string& m) { return testing::shared_model(m); }
std::string ref_path(const std::string& m, const std::string& p) { return testing::shared_ref(m, p); }

double rel_err(const at::Tensor& got, const at::Tensor& ref) {
  at::Tensor r = ref.cpu().to(at::kDouble);
  return (got.cpu().to(at::kDouble) - r).abs().max().item<double>() / r.abs().max().item<double>();
}

std::string sci(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2e", v);
  return b;
}

bool cuda_ready() {
  if (!at::hasCUDA()) {
    MESSAGE("no CUDA device: skipped");
    return false;
  }
  if (!testing::have_shared()) {
    MESSAGE(("fixtures not found at " + testing::shared_dir() + " (set QSAE_SHARED): skipped"));
    return false;
  }
  return true;
}

LoadOptions cuda_opts(const std::string& precision, at::ScalarType compute = at::kFloat) {
  LoadOptions o;
  o.precision = parse_precision(precision);
  o.device = "cuda";
  if (is_quantized(*o.precision)) o.compute_dtype = compute;
  return o;
}

// Worst relative error of logits and every hidden.{i} against a reference file.
double worst_vs(const Model& m, const std::string& ref) {
  auto f = SafetensorsFile::open(ref);
  ForwardOptions o;
  o.hidden = true;
  auto r = m.forward(f->get("input_ids"), o);
  double worst = rel_err(r.logits, f->get("logits"));
  for (size_t i = 0; i < r.hidden.size(); ++i) {
    std::string name = "hidden." + std::to_string(i);
    if (f->contains(name)) worst = std::max(worst, rel_err(r.hidden[i], f->get(name)));
  }
  return worst;
}

const char* kModels[] = {"tiny-llama3", "tiny-mistral", "tiny-qwen2", "tiny-qwen3", "tiny-qwen3-moe",
                         "tiny-qwen3-outliers", "tiny-qwen3-tied-sharded", "tiny-starcoder2", "tiny-gpt2"};

}  // namespace

TEST_CASE("model cuda: each precision matches the references on the GPU") {
  if (!cuda_ready()) return;
  struct Case {
    const char* precision;
    at::ScalarType compute;
    const char* ref;
    double tol;
  };
  const Case cases[] = {{"fp32", at::kFloat, "fp32", 1e-4},     {"bf16", at::kFloat, "fp32", 3e-2},
                        {"fp16", at::kFloat, "fp32", 3e-2},     {"nf4", at::kFloat, "nf4", 1e-3},
                        {"nf4", at::kBFloat16, "nf4", 3e-2},    {"int8", at::kFloat, "int8", 1e-2},
                        {"int8", at::kBFloat16, "int8", 5e-2}};
  for (const char* name : kModels)
    for (const Case& c : cases) {
      if (!file_exists(ref_path(name, c.ref))) continue;
      auto m = Model::load(model_dir(name), cuda_opts(c.precision, c.compute));
      CHECK(m->device().is_cuda());
      double e = worst_vs(*m, ref_path(name, c.ref));
      std::string label = std::string(name) + " " + c.precision + " (compute " + c10::toString(c.compute) + ") vs " +
                          c.ref + ": worst " + sci(e);
      CHECK_MESSAGE(e <= c.tol, label, " > ", c.tol);
      MESSAGE(label);
    }
}

TEST_CASE("model cuda: CUDA equals CPU for the same precision") {
  if (!cuda_ready()) return;
  for (const char* name : {"tiny-qwen3", "tiny-qwen3-moe", "tiny-starcoder2"})
    for (const char* p : {"fp32", "nf4"}) {
      auto f = SafetensorsFile::open(ref_path(name, "fp32"));
      at::Tensor ids = f->get("input_ids");
      LoadOptions cpu;
      cpu.precision = parse_precision(p);
      if (is_quantized(*cpu.precision)) cpu.compute_dtype = at::kFloat;
      auto mc = Model::load(model_dir(name), cpu);
      auto mg = Model::load(model_dir(name), cuda_opts(p));
      ForwardOptions o;
      double e = rel_err(mg->forward(ids, o).logits, mc->forward(ids, o).logits);
      CHECK_MESSAGE(e <= 1e-4, name, " ", p, ": CUDA vs CPU logits ", e);
      MESSAGE((std::string(name) + " " + p + " CUDA vs CPU: " + sci(e)));
    }
}

TEST_CASE("model cuda: KV-cache decoding equals a full forward") {
  if (!cuda_ready()) return;
  for (const char* name : {"tiny-qwen3", "tiny-mistral", "tiny-qwen3-moe"})
    for (const char* p : {"fp32", "nf4"}) {
      auto m = Model::load(model_dir(name), cuda_opts(p));
      auto f = SafetensorsFile::open(ref_path(name, "fp32"));
      at::Tensor ids = f->get("input_ids").narrow(0, 0, 1);
      const int64_t T = ids.size(1), split = T / 2;
      ForwardOptions full;
      at::Tensor want = m->forward(ids, full).logits;
      KvCache cache;
      ForwardOptions inc;
      inc.cache = &cache;
      std::vector<at::Tensor> parts = {m->forward(ids.narrow(1, 0, split), inc).logits};
      for (int64_t t = split; t < T; ++t) parts.push_back(m->forward(ids.narrow(1, t, 1), inc).logits);
      double e = rel_err(at::cat(parts, 1), want);
      CHECK_MESSAGE(e <= 1e-4, name, " ", p, ": cached decode vs full forward ", e);
    }
}
