// Bindings for SAEs: loadSae -> SaeHandle (info, encode, decode, tensors, save, dispose), trainSae, evalSae.
#include <cmath>
#include <memory>

#include "addon/binding.h"
#include "addon/napi_util.h"
#include "common/tensor_util.h"
#include "sae/sae.h"
#include "sae/trainer.h"

namespace qsae::addon {

namespace {

class SaeHandle : public Napi::ObjectWrap<SaeHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "SaeHandle",
                                      {
                                          InstanceMethod<&SaeHandle::Info>("info"),
                                          InstanceMethod<&SaeHandle::Encode>("encode"),
                                          InstanceMethod<&SaeHandle::Decode>("decode"),
                                          InstanceMethod<&SaeHandle::Tensors>("tensors"),
                                          InstanceMethod<&SaeHandle::Save>("save"),
                                          InstanceMethod<&SaeHandle::Dispose>("dispose"),
                                          InstanceAccessor<&SaeHandle::IsDisposed>("disposed"),
                                      });
    addon_data(env).ctors["SaeHandle"] = Napi::Persistent(ctor);
    exports.Set("SaeHandle", ctor);
  }
  static Napi::Object New(Napi::Env env, std::shared_ptr<sae::Sae> s) {
    Napi::Object obj = addon_data(env).ctors["SaeHandle"].New({});
    auto* h = Unwrap(obj);
    h->s_ = std::move(s);
    for (auto& [n, t] : h->s_->named_tensors()) h->bytes_ += int64_t(t.numel()) * int64_t(t.element_size());
    Napi::MemoryManagement::AdjustExternalMemory(env, h->bytes_);
    return obj;
  }
  explicit SaeHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SaeHandle>(info) {}
  ~SaeHandle() override { s_.reset(); }
  std::shared_ptr<sae::Sae> sae() const {
    if (!s_) fail("SAE was disposed");
    return s_;
  }
  static SaeHandle* from(const Napi::Value& v) {
    auto& ctor = addon_data(v.Env()).ctors["SaeHandle"];
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor.Value())) fail_type("expected an SAE handle");
    return Unwrap(v.As<Napi::Object>());
  }

 private:
  template <class F>
  Napi::Value guard(const Napi::CallbackInfo& info, F f) {
    try {
      return f();
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      throw make_js_error(info.Env(), catch_current());
    }
  }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      auto s = sae();
      auto o = Napi::Object::New(info.Env());
      o.Set("architecture", s->architecture);
      o.Set("dIn", double(s->d_in));
      o.Set("dSae", double(s->d_sae));
      o.Set("k", double(s->k));
      o.Set("applyBDecToInput", s->apply_b_dec_to_input);
      o.Set("normalizeActivations", s->normalize_activations);
      o.Set("dtype", qsae::dtype_name(s->dtype()));
      o.Set("cfg", sae::make_cfg(*s).dump());
      return o;
    });
  }
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      auto s = sae();
      at::Tensor x = tensor_arg(info[0], "x");
      return run_async<at::Tensor>(
          info.Env(), [s, x] { return s->encode(x); },
          [](Napi::Env env, at::Tensor& t) -> Napi::Value { return TensorHandle::New(env, t); },
          {info.This().As<Napi::Object>(), info[0].As<Napi::Object>()});
    });
  }
  Napi::Value Decode(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      auto s = sae();
      at::Tensor f = tensor_arg(info[0], "latents");
      // decode(latents, x?): x, the input the latents came from, undoes a per-token run-time normalization
      at::Tensor x;
      std::vector<Napi::Object> keep = {info.This().As<Napi::Object>(), info[0].As<Napi::Object>()};
      if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) {
        x = tensor_arg(info[1], "x");
        keep.push_back(info[1].As<Napi::Object>());
      }
      return run_async<at::Tensor>(
          info.Env(), [s, f, x] { return s->decode(f, x); },
          [](Napi::Env env, at::Tensor& t) -> Napi::Value { return TensorHandle::New(env, t); }, keep);
    });
  }
  Napi::Value Tensors(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value { return tensors_to_js(info.Env(), sae()->named_tensors()); });
  }
  Napi::Value Save(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      auto s = sae();
      std::string folder = arg_string(info, 0, "folder");
      return run_async<bool>(
          info.Env(), [s, folder] { sae::save_sae(folder, *s); return true; },
          [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); }, {info.This().As<Napi::Object>()});
    });
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (s_) {
      Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -bytes_);
      bytes_ = 0;
      s_.reset();
    }
    return info.Env().Undefined();
  }
  Napi::Value IsDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !s_); }
  std::shared_ptr<sae::Sae> s_;
  int64_t bytes_ = 0;
};

std::vector<double> number_list(const Napi::Object& o, const char* key) {
  std::vector<double> out;
  if (!o.Has(key)) return out;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return out;
  if (v.IsNumber()) return {v.As<Napi::Number>().DoubleValue()};
  if (!v.IsArray()) fail_type("option ", key, " must be a number or an array of numbers");
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) fail_type("option ", key, " must hold numbers");
    out.push_back(e.As<Napi::Number>().DoubleValue());
  }
  return out;
}

Napi::Object eval_to_js(Napi::Env env, const sae::EvalResult& r) {
  auto o = Napi::Object::New(env);
  o.Set("mse", r.mse);
  o.Set("explained_variance", r.explained_variance);
  o.Set("l0", r.l0);
  o.Set("l1", r.l1);
  o.Set("dead_fraction", r.dead_fraction);
  o.Set("n_tokens", double(r.n_tokens));
  o.Set("d_in", double(r.d_in));
  o.Set("d_sae", double(r.d_sae));
  auto edges = Napi::Array::New(env, r.density_edges.size());
  for (size_t i = 0; i < r.density_edges.size(); ++i) edges.Set(uint32_t(i), r.density_edges[i]);
  auto counts = Napi::Array::New(env, r.density_counts.size());
  for (size_t i = 0; i < r.density_counts.size(); ++i) counts.Set(uint32_t(i), double(r.density_counts[i]));
  auto h = Napi::Object::New(env);
  h.Set("log10_edges", edges);
  h.Set("counts", counts);
  h.Set("dead", double(r.density_dead));
  o.Set("density_histogram", h);
  return o;
}

}  // namespace

std::shared_ptr<sae::Sae> sae_from_js(const Napi::Value& v) { return SaeHandle::from(v)->sae(); }

void init_sae(Napi::Env env, Napi::Object exports) {
  SaeHandle::Init(env, exports);

  // loadSae(folder): Promise<SaeHandle>
  export_function(env, exports, "loadSae", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::string folder = arg_string(info, 0, "folder");
    return run_async<std::shared_ptr<sae::Sae>>(
        info.Env(), [folder] { return std::make_shared<sae::Sae>(sae::load_sae(folder)); },
        [](Napi::Env env, std::shared_ptr<sae::Sae>& s) -> Napi::Value { return SaeHandle::New(env, s); });
  });

  // trainSae(options): Promise<result>; options mirror sae::TrainConfig (camelCase), + cancel, onProgress.
  export_function(env, exports, "trainSae", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Object o = arg_object(info, 0, "options");
    sae::TrainConfig c;
    auto s = [&](const char* k, std::string& dst) { if (auto v = opt_string(o, k)) dst = *v; };
    auto n = [&](const char* k, auto& dst) { if (auto v = opt_number(o, k)) dst = static_cast<std::decay_t<decltype(dst)>>(*v); };
    auto b = [&](const char* k, bool& dst) { if (auto v = opt_bool(o, k)) dst = *v; };
    s("acts", c.acts);
    if (c.acts.empty()) fail_type("trainSae: option acts (activation store or .safetensors) is required");
    s("hook", c.hook);
    n("layer", c.layer);
    s("architecture", c.architecture);
    if (auto e = number_list(o, "expansion"); !e.empty()) c.expansions = e;
    if (auto l = number_list(o, "l1"); !l.empty()) c.l1s = l;
    if (auto k = opt_number(o, "k")) {
      if (!(*k >= 1) || *k != std::floor(*k)) fail_range("trainSae: k must be a positive integer (got ", *k, ")");
      c.k = int64_t(*k);
    }
    b("l1NormWeighted", c.l1_norm_weighted);
    b("applyBDecToInput", c.apply_b_dec_to_input);
    n("epochs", c.epochs);
    n("tokens", c.tokens);
    n("batchSize", c.batch_size);
    n("lr", c.lr);
    n("lrWarmup", c.lr_warmup);
    n("lrDecay", c.lr_decay);
    n("l1Warmup", c.l1_warmup);
    n("seed", c.seed);
    b("normalize", c.normalize);
    n("deadAfter", c.dead_after);
    n("auxCoef", c.aux_coef);
    n("auxK", c.aux_k);
    n("resampleEvery", c.resample_every);
    n("bufferRows", c.buffer_rows);
    b("fused", c.fused);
    s("device", c.device);
    s("out", c.out);
    b("resume", c.resume);
    n("checkpointEvery", c.checkpoint_every);
    n("stopAfter", c.stop_after);
    if (auto m = opt_string(o, "metadata")) c.metadata = nlohmann::json::parse(*m);
    auto cancel = opt_cancel(o);
    ProgressSink sink(info.Env(), o);
    auto pfn = sink.fn();
    return run_async<sae::TrainResult>(
        info.Env(), [c, cancel, pfn] { return sae::train_saes(c, cancel.get(), pfn); },
        [](Napi::Env env, sae::TrainResult& r) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("steps", double(r.steps));
          o.Set("tokens", double(r.tokens));
          o.Set("sessionTokens", double(r.session_tokens));
          o.Set("dIn", double(r.d_in));
          o.Set("seconds", r.seconds);
          o.Set("tokensPerSecond", r.tokens_per_second);
          o.Set("scale", r.scale);
          o.Set("resumedFrom", double(r.resumed_from));
          o.Set("stopped", r.stopped);
          auto a = Napi::Array::New(env, r.saes.size());
          for (size_t i = 0; i < r.saes.size(); ++i) {
            const auto& t = r.saes[i];
            auto e = Napi::Object::New(env);
            e.Set("name", t.name);
            e.Set("folder", t.folder);
            e.Set("dSae", double(t.d_sae));
            e.Set("l1", t.l1_coef);
            e.Set("loss", t.loss);
            e.Set("mse", t.mse);
            e.Set("l0", t.l0);
            e.Set("deadFraction", t.dead_fraction);
            a.Set(uint32_t(i), e);
          }
          o.Set("saes", a);
          return o;
        },
        {}, sink);
  });

  // evalSae(sae: SaeHandle | folder, acts, {hook, layer, batchSize, cancel, onProgress}): Promise<metrics>
  export_function(env, exports, "evalSae", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::shared_ptr<sae::Sae> s;
    std::string folder;
    std::vector<Napi::Object> keep;
    if (info.Length() > 0 && info[0].IsString()) {
      folder = info[0].As<Napi::String>().Utf8Value();
    } else {
      s = SaeHandle::from(info[0])->sae();
      keep.push_back(info[0].As<Napi::Object>());
    }
    std::string acts = arg_string(info, 1, "acts");
    Napi::Object o = info.Length() > 2 && info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(info.Env());
    std::string hook = opt_string(o, "hook").value_or("");
    int64_t layer = int64_t(opt_number(o, "layer").value_or(-1));
    int64_t bs = int64_t(opt_number(o, "batchSize").value_or(4096));
    auto cancel = opt_cancel(o);
    ProgressSink sink(info.Env(), o);
    auto pfn = sink.fn();
    return run_async<sae::EvalResult>(
        info.Env(),
        [s, folder, acts, hook, layer, bs, cancel, pfn] {
          auto sp = s ? s : std::make_shared<sae::Sae>(sae::load_sae(folder));
          return sae::evaluate_sae(*sp, acts, hook, layer, bs, cancel.get(), pfn);
        },
        [](Napi::Env env, sae::EvalResult& r) -> Napi::Value { return eval_to_js(env, r); }, keep, sink);
  });
}

}  // namespace qsae::addon
