// Bindings for the cross-precision analysis: analysisTransfer, analysisAlign, linearAssignment.
// All three run on the libuv pool (run_async) with cancellation (opts.cancel) and progress (opts.onProgress).
#include <cmath>

#include "addon/binding.h"
#include "addon/napi_util.h"
#include "analysis/align.h"
#include "analysis/lap.h"
#include "analysis/transfer.h"
#include "sae/sae.h"

namespace qsae::addon {

namespace {
Napi::Value num_or_null(Napi::Env env, double v) {
  return std::isnan(v) ? env.Null() : Napi::Number::New(env, v);
}

Napi::Int32Array perm_to_js(Napi::Env env, const std::vector<int64_t>& p) {
  auto a = Napi::Int32Array::New(env, p.size());
  for (size_t i = 0; i < p.size(); ++i) a[i] = int32_t(p[i]);
  return a;
}

Napi::Float32Array floats_to_js(Napi::Env env, const std::vector<float>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

Napi::Object opts_arg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() > i && info[i].IsObject()) return info[i].As<Napi::Object>();
  if (info.Length() > i && !info[i].IsUndefined() && !info[i].IsNull()) fail_type("options must be an object");
  return Napi::Object::New(info.Env());
}

int64_t opt_int(const Napi::Object& o, const char* key, int64_t dflt, int64_t lo) {
  auto v = opt_number(o, key);
  if (!v) return dflt;
  if (!std::isfinite(*v) || std::floor(*v) != *v) fail_type("option ", key, " must be an integer, got ", *v);
  if (*v < double(lo)) fail_range("option ", key, " must be ≥ ", lo, ", got ", *v);
  return int64_t(*v);
}
}  // namespace

void init_analysis(Napi::Env env, Napi::Object exports) {
  // analysisTransfer(saeDir, actsA, actsB, {hook?, layer?, k?, nBoot?, seed?, device?, cancel?, onProgress?})
  export_function(env, exports, "analysisTransfer", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::string sae_dir = arg_string(info, 0, "sae");
    std::string path_a = arg_string(info, 1, "actsA");
    std::string path_b = arg_string(info, 2, "actsB");
    Napi::Object o = opts_arg(info, 3);
    std::string hook = opt_string(o, "hook").value_or("");
    int64_t layer = opt_int(o, "layer", -1, -1);
    analysis::TransferOptions t;
    t.k = opt_int(o, "k", 10, 1);
    t.n_boot = opt_int(o, "nBoot", 1000, 0);
    t.seed = uint64_t(opt_int(o, "seed", int64_t(t.seed), 0));
    t.chunk_rows = opt_int(o, "chunkRows", 0, 0);
    t.max_groups = opt_int(o, "maxGroups", 0, 0);
    t.device = opt_string(o, "device").value_or("cpu");
    auto cancel = opt_cancel(o);
    ProgressSink sink(info.Env(), o);
    ProgressFn progress = sink.fn();
    return run_async<analysis::TransferResult>(
        info.Env(),
        [=] {
          sae::Sae s = sae::load_sae(sae_dir);
          return analysis::transfer(s, sae_dir, path_a, path_b, hook, layer, t, cancel.get(), progress);
        },
        [](Napi::Env env, analysis::TransferResult& r) -> Napi::Value {
          auto out = Napi::Object::New(env);
          for (const auto& name : analysis::kTransferMetrics) out.Set(name, num_or_null(env, r.values.at(name)));
          out.Set("n_tokens", double(r.n_tokens));
          out.Set("n_features", double(r.n_features));
          auto ci = Napi::Object::New(env);
          for (const auto& name : analysis::kTransferMetrics) {
            auto pair = Napi::Array::New(env, 2);
            pair.Set(uint32_t(0), num_or_null(env, r.ci95.at(name)[0]));
            pair.Set(uint32_t(1), num_or_null(env, r.ci95.at(name)[1]));
            ci.Set(name, pair);
          }
          out.Set("ci95", ci);
          auto d = Napi::Object::New(env);
          d.Set("unit", r.unit);
          d.Set("units", double(r.n_units));
          d.Set("groups", double(r.n_groups));
          d.Set("resamples", double(r.n_boot));
          d.Set("k", double(r.k));
          d.Set("dIn", double(r.d_in));
          out.Set("details", d);
          return out;
        },
        {}, sink);
  });

  // analysisAlign(saeDirA, saeDirB, {exactMax?, epsFinal?, method?: "auto"|"exact"|"approx", cancel?, onProgress?})
  export_function(env, exports, "analysisAlign", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::string dir_a = arg_string(info, 0, "saeA");
    std::string dir_b = arg_string(info, 1, "saeB");
    Napi::Object o = opts_arg(info, 2);
    analysis::AlignOptions a;
    a.exact_max = opt_int(o, "exactMax", a.exact_max, 0);
    if (auto e = opt_number(o, "epsFinal")) {
      if (!(*e > 0)) fail_range("option epsFinal must be > 0, got ", *e);
      a.eps_final = *e;
    }
    std::string method = opt_string(o, "method").value_or("auto");
    if (method == "exact")
      a.force_exact = true;
    else if (method == "approx")
      a.force_approx = true;
    else if (method != "auto")
      fail_type("option method must be \"auto\", \"exact\" or \"approx\", got \"", method, "\"");
    auto cancel = opt_cancel(o);
    ProgressSink sink(info.Env(), o);
    ProgressFn progress = sink.fn();
    return run_async<analysis::AlignResult>(
        info.Env(),
        [=] {
          sae::Sae sa = sae::load_sae(dir_a);
          sae::Sae sb = sae::load_sae(dir_b);
          return analysis::align_saes(sa, sb, dir_a, dir_b, a, cancel.get(), progress);
        },
        [](Napi::Env env, analysis::AlignResult& r) -> Napi::Value {
          auto out = Napi::Object::New(env);
          auto side = [&](const analysis::DictAlignment& d, const std::string& prefix) {
            out.Set(prefix + "matched_cosine", d.matched_cosine);
            out.Set(prefix + "procrustes_alignment", d.procrustes_alignment);
            out.Set(prefix + "frac_cosine_ge_0_7", d.frac_cosine_ge_0_7);
          };
          side(r.decoder, "");
          side(r.encoder, "encoder_");
          out.Set("n_features", double(r.n_features));
          out.Set("d_in", double(r.d_in));
          out.Set("assignment", (r.decoder.exact && r.encoder.exact) ? "exact" : "approx");
          out.Set("gap_bound", r.decoder.gap_bound);
          out.Set("encoder_gap_bound", r.encoder.gap_bound);
          out.Set("permutation", perm_to_js(env, r.decoder.permutation));
          out.Set("encoder_permutation", perm_to_js(env, r.encoder.permutation));
          out.Set("cosines", floats_to_js(env, r.decoder.rotated));
          out.Set("encoder_cosines", floats_to_js(env, r.encoder.rotated));
          return out;
        },
        {}, sink);
  });

  // linearAssignment(weights [n, n] TensorHandle, {method?: "exact"|"approx", epsFinal?}): maximizes Σ W[i, π(i)].
  export_function(env, exports, "linearAssignment", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor w = tensor_arg(info[0], "weights");
    if (w.dim() != 2 || w.size(0) != w.size(1)) fail_range("weights: expected a square [n, n] matrix, got ", w.sizes());
    w = w.to(at::kCPU, at::kFloat).contiguous();
    Napi::Object o = opts_arg(info, 1);
    std::string method = opt_string(o, "method").value_or("exact");
    if (method != "exact" && method != "approx")
      fail_type("option method must be \"exact\" or \"approx\", got \"", method, "\"");
    analysis::AuctionOptions ao;
    if (auto e = opt_number(o, "epsFinal")) ao.eps_final = *e;
    auto cancel = opt_cancel(o);
    ProgressSink sink(info.Env(), o);
    ProgressFn progress = sink.fn();
    return run_async<analysis::LapResult>(
        info.Env(),
        [=] {
          const int64_t n = w.size(0);
          return method == "exact" ? analysis::solve_lap_exact(w.data_ptr<float>(), n, cancel.get(), progress)
                                   : analysis::solve_lap_auction(w.data_ptr<float>(), n, ao, cancel.get(), progress);
        },
        [](Napi::Env env, analysis::LapResult& r) -> Napi::Value {
          auto out = Napi::Object::New(env);
          out.Set("colOfRow", perm_to_js(env, r.col_of_row));
          out.Set("value", r.value);
          out.Set("upperBound", r.upper_bound);
          out.Set("gapBound", r.gap_bound);
          out.Set("exact", r.exact);
          out.Set("iterations", double(r.iterations));
          return out;
        },
        {info[0].As<Napi::Object>()}, sink);
  });
}

}  // namespace qsae::addon
