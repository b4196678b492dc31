// Bindings of the model runtime: loadModel / planModel (Promise workers with progress and cancellation),
// ModelHandle (forward, createCache, modules, info, dispose) and KvCacheHandle.
#include "addon/binding.h"
#include "addon/napi_util.h"
#include "common/tensor_util.h"
#include "model/model.h"
#include "sae/splice.h"

namespace qsae::addon {

namespace {

using model::KvCache;
using model::Model;

model::LoadOptions parse_load_options(const Napi::Object& o) {
  model::LoadOptions lo;
  if (auto p = opt_string(o, "precision")) lo.precision = model::parse_precision(*p, "precision");
  if (auto c = opt_string(o, "computeDtype")) {
    if (*c != "fp32" && *c != "bf16" && *c != "fp16")
      fail_type("computeDtype: expected fp32, bf16 or fp16, got '", *c, "'");
    lo.compute_dtype = dtype_from_name(*c);
  }
  if (auto d = opt_string(o, "device")) lo.device = *d;
  if (o.Has("devices") && !o.Get("devices").IsUndefined() && !o.Get("devices").IsNull()) {
    Napi::Value v = o.Get("devices");
    if (!v.IsArray()) fail_type("devices: expected an array of device names");
    auto a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value d = a.Get(i);
      if (!d.IsString()) fail_type("devices: expected device names such as \"cuda:0\"");
      lo.devices.push_back(d.As<Napi::String>().Utf8Value());
    }
  }
  if (auto b = opt_number(o, "blocksize")) lo.blocksize = int64_t(*b);
  if (auto dq = opt_bool(o, "doubleQuant")) lo.double_quant = *dq;
  if (auto t = opt_number(o, "int8Threshold")) lo.int8_threshold = *t;
  return lo;
}

Napi::Array modules_to_js(Napi::Env env, const std::vector<model::ModuleInfo>& mods) {
  auto a = Napi::Array::New(env, mods.size());
  for (size_t i = 0; i < mods.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("name", mods[i].name);
    o.Set("precision", mods[i].precision);
    o.Set("bytes", double(mods[i].bytes));
    a.Set(uint32_t(i), o);
  }
  return a;
}

Napi::Object config_to_js(Napi::Env env, const model::ModelConfig& c) {
  auto o = Napi::Object::New(env);
  o.Set("architecture", c.architecture);
  o.Set("modelType", c.model_type);
  o.Set("numLayers", double(c.num_layers));
  o.Set("hiddenSize", double(c.hidden_size));
  o.Set("vocabSize", double(c.vocab_size));
  o.Set("maxPositions", double(c.max_positions));
  o.Set("numHeads", double(c.num_heads));
  o.Set("numKvHeads", double(c.num_kv_heads));
  o.Set("headDim", double(c.head_dim));
  o.Set("bosTokenId", c.bos_token_id >= 0 ? Napi::Value(Napi::Number::New(env, double(c.bos_token_id))) : env.Null());
  o.Set("padTokenId", c.pad_token_id >= 0 ? Napi::Value(Napi::Number::New(env, double(c.pad_token_id))) : env.Null());
  auto eos = Napi::Array::New(env, c.eos_token_ids.size());
  for (size_t i = 0; i < c.eos_token_ids.size(); ++i) eos.Set(uint32_t(i), double(c.eos_token_ids[i]));
  o.Set("eosTokenIds", eos);
  return o;
}

std::string device_str(const at::Device& d) { return d.str(); }

class KvCacheHandle : public Napi::ObjectWrap<KvCacheHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "KvCacheHandle",
                                      {InstanceAccessor<&KvCacheHandle::Length>("length"),
                                       InstanceAccessor<&KvCacheHandle::Bytes>("bytes"),
                                       InstanceAccessor<&KvCacheHandle::Disposed>("disposed"),
                                       InstanceMethod<&KvCacheHandle::Dispose>("dispose")});
    addon_data(env).ctors["KvCacheHandle"] = Napi::Persistent(ctor);
  }
  explicit KvCacheHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvCacheHandle>(info) {}
  static Napi::Object New(Napi::Env env, std::shared_ptr<Model> m) {
    Napi::Object obj = addon_data(env).ctors["KvCacheHandle"].New({});
    auto* h = Unwrap(obj);
    h->cache_ = std::make_shared<KvCache>();
    h->model_ = std::move(m);
    return obj;
  }
  std::shared_ptr<KvCache> cache() const {
    if (!cache_) fail("KV cache was disposed");
    return cache_;
  }
  const std::shared_ptr<Model>& model() const { return model_; }
  // Called on the JS thread after a forward: reports the cache's growth to V8.
  void account(Napi::Env env) {
    if (!cache_) return;
    int64_t now = cache_->bytes();
    if (now != reported_) Napi::MemoryManagement::AdjustExternalMemory(env, now - reported_);
    reported_ = now;
  }

 private:
  Napi::Value Length(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), cache_ ? double(cache_->length) : 0);
  }
  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), cache_ ? double(cache_->bytes()) : 0);
  }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !cache_); }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (reported_) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -reported_);
    reported_ = 0;
    cache_.reset();
    model_.reset();
    return info.Env().Undefined();
  }
  std::shared_ptr<KvCache> cache_;
  std::shared_ptr<Model> model_;
  int64_t reported_ = 0;
};

class ModelHandle : public Napi::ObjectWrap<ModelHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = DefineClass(env, "ModelHandle",
                                      {InstanceMethod<&ModelHandle::Info>("info"),
                                       InstanceMethod<&ModelHandle::Modules>("modules"),
                                       InstanceMethod<&ModelHandle::Forward>("forward"),
                                       InstanceMethod<&ModelHandle::CreateCache>("createCache"),
                                       InstanceAccessor<&ModelHandle::Bytes>("bytes"),
                                       InstanceAccessor<&ModelHandle::Disposed>("disposed"),
                                       InstanceMethod<&ModelHandle::Dispose>("dispose")});
    addon_data(env).ctors["ModelHandle"] = Napi::Persistent(ctor);
  }
  explicit ModelHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelHandle>(info) {}
  static std::shared_ptr<Model> model_of(const Napi::Value& v, const char* what) {
    auto& ctor = addon_data(v.Env()).ctors["ModelHandle"];
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor.Value())) fail_type(what, ": expected a model handle");
    return Unwrap(v.As<Napi::Object>())->model();
  }
  static Napi::Object New(Napi::Env env, std::shared_ptr<Model> m) {
    Napi::Object obj = addon_data(env).ctors["ModelHandle"].New({});
    auto* h = Unwrap(obj);
    h->reported_ = m->device().is_cpu() ? m->bytes() : 0;
    h->model_ = std::move(m);
    if (h->reported_) Napi::MemoryManagement::AdjustExternalMemory(env, h->reported_);
    return obj;
  }

 private:
  const std::shared_ptr<Model>& model() const {
    if (!model_) fail("model was disposed");
    return model_;
  }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    try {
      const auto& m = model();
      auto o = config_to_js(env, m->config());
      o.Set("precision", model::precision_name(m->precision()));
      o.Set("computeDtype", dtype_name(m->compute_dtype()));
      o.Set("device", device_str(m->device()));
      auto devs = m->devices();
      auto da = Napi::Array::New(env, devs.size());
      for (size_t i = 0; i < devs.size(); ++i) da.Set(uint32_t(i), device_str(devs[i]));
      o.Set("devices", da);
      auto ld = Napi::Array::New(env, m->config().num_layers);
      for (int64_t l = 0; l < m->config().num_layers; ++l) ld.Set(uint32_t(l), device_str(m->layer_device(l)));
      o.Set("layerDevices", ld);
      o.Set("bytes", double(m->bytes()));
      auto w = Napi::Array::New(env, m->config().num_layers);
      for (int64_t l = 0; l < m->config().num_layers; ++l) w.Set(uint32_t(l), double(m->config().sliding_window[l]));
      o.Set("slidingWindow", w);
      const model::QuantSettings q = m->quantization();
      if (q.type.empty()) {
        o.Set("quantization", env.Null());
      } else {
        auto qo = Napi::Object::New(env);
        qo.Set("type", q.type);
        if (q.blocksize) qo.Set("blocksize", double(q.blocksize));
        if (q.type != "int8") qo.Set("doubleQuant", q.double_quant);
        if (q.type == "int8") qo.Set("int8Threshold", q.int8_threshold);
        qo.Set("prequantized", q.prequantized);
        o.Set("quantization", qo);
      }
      return o;
    } catch (...) {
      throw make_js_error(env, catch_current());
    }
  }
  Napi::Value Modules(const Napi::CallbackInfo& info) {
    try {
      return modules_to_js(info.Env(), model()->modules());
    } catch (...) {
      throw make_js_error(info.Env(), catch_current());
    }
  }
  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), model_ ? double(model_->bytes()) : 0);
  }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !model_); }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (reported_) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -reported_);
    reported_ = 0;
    model_.reset();  // a forward in flight keeps its own reference
    return info.Env().Undefined();
  }
  Napi::Value CreateCache(const Napi::CallbackInfo& info) {
    try {
      return KvCacheHandle::New(info.Env(), model());
    } catch (...) {
      throw make_js_error(info.Env(), catch_current());
    }
  }
  // forward(inputIds, {attentionMask?, cache?, hooks?, layers?, hidden?, lastOnly?, logits?, cancel?})
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    try {
      auto m = model();
      at::Tensor ids = tensor_arg(info[0], "inputIds");
      std::vector<Napi::Object> keep{info.This().As<Napi::Object>(), info[0].As<Napi::Object>()};
      model::ForwardOptions fo;
      std::shared_ptr<KvCache> cache;
      KvCacheHandle* cache_handle = nullptr;
      std::shared_ptr<CancelToken> cancel;
      if (info.Length() > 1 && info[1].IsObject()) {
        auto o = info[1].As<Napi::Object>();
        if (o.Has("attentionMask") && !o.Get("attentionMask").IsUndefined() && !o.Get("attentionMask").IsNull()) {
          fo.attention_mask = tensor_arg(o.Get("attentionMask"), "attentionMask");
          keep.push_back(o.Get("attentionMask").As<Napi::Object>());
        }
        if (o.Has("cache") && o.Get("cache").IsObject()) {
          auto co = o.Get("cache").As<Napi::Object>();
          if (!co.InstanceOf(addon_data(env).ctors["KvCacheHandle"].Value()))
            fail_type("cache: expected a KV cache from createCache()");
          cache_handle = KvCacheHandle::Unwrap(co);
          cache = cache_handle->cache();
          if (cache_handle->model() != m) fail_type("cache: it belongs to another model");
          keep.push_back(co);
        }
        if (o.Has("hooks") && o.Get("hooks").IsArray()) {
          auto a = o.Get("hooks").As<Napi::Array>();
          for (uint32_t i = 0; i < a.Length(); ++i) {
            Napi::Value v = a.Get(i);
            if (!v.IsString()) fail_type("hooks: expected strings");
            fo.hooks.push_back(v.As<Napi::String>().Utf8Value());
          }
        }
        if (o.Has("layers") && !o.Get("layers").IsUndefined()) fo.hook_layers = to_int64_vector(o.Get("layers"), "layers");
        if (auto h = opt_bool(o, "hidden")) fo.hidden = *h;
        if (auto l = opt_bool(o, "lastOnly")) fo.last_only = *l;
        if (auto l = opt_bool(o, "logits")) fo.logits = *l;
        cancel = opt_cancel(o);
      }
      std::vector<Napi::ObjectReference> none;
      Napi::ObjectReference cache_ref;
      if (cache_handle) cache_ref = Napi::Persistent(cache_handle->Value());
      auto cache_ref_ptr = std::make_shared<Napi::ObjectReference>(std::move(cache_ref));
      return run_async<model::ForwardResult>(
          env,
          [m, ids, fo, cache, cancel]() mutable {
            check_cancel(cancel.get());
            fo.cache = cache.get();
            return m->forward(ids, fo);
          },
          [cache_ref_ptr](Napi::Env env, model::ForwardResult& r) -> Napi::Value {
            if (!cache_ref_ptr->IsEmpty()) {
              auto* h = KvCacheHandle::Unwrap(cache_ref_ptr->Value());
              h->account(env);
              cache_ref_ptr->Reset();
            }
            auto o = Napi::Object::New(env);
            o.Set("logits", r.logits.defined() ? Napi::Value(TensorHandle::New(env, r.logits)) : env.Undefined());
            if (!r.hidden.empty()) {
              auto a = Napi::Array::New(env, r.hidden.size());
              for (size_t i = 0; i < r.hidden.size(); ++i) a.Set(uint32_t(i), TensorHandle::New(env, r.hidden[i]));
              o.Set("hidden", a);
            }
            if (!r.captures.empty()) o.Set("captures", tensors_to_js(env, r.captures));
            return o;
          },
          keep);
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      throw make_js_error(env, catch_current());
    }
  }

  std::shared_ptr<Model> model_;
  int64_t reported_ = 0;
};

}  // namespace

void init_model(Napi::Env env, Napi::Object exports) {
  ModelHandle::Init(env, exports);
  KvCacheHandle::Init(env, exports);

  // spliceEval(model, sae | sae[], inputIds, attentionMask | null, {hook, layer}): Promise<{nllOrig, nllSae,
  // nllZero, klSae, klZero, tokens}> (an array of them, in order, for an array of SAEs: the clean and zero
  // forwards then run once) — sums over the batch's predicted positions (see native/sae/splice.h).
  export_function(env, exports, "spliceEval", [](const Napi::CallbackInfo& info) -> Napi::Value {
    auto m = ModelHandle::model_of(info[0], "model");
    const bool many = info[1].IsArray();
    std::vector<std::shared_ptr<sae::Sae>> saes;
    if (many) {
      auto arr = info[1].As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); ++i) saes.push_back(sae_from_js(arr.Get(i)));
      if (saes.empty()) fail_range("sae: expected at least one SAE");
    } else {
      saes.push_back(sae_from_js(info[1]));
    }
    at::Tensor ids = tensor_arg(info[2], "inputIds");
    std::vector<Napi::Object> keep{info[0].As<Napi::Object>(), info[1].As<Napi::Object>(), info[2].As<Napi::Object>()};
    at::Tensor mask;
    if (info.Length() > 3 && info[3].IsObject()) {
      mask = tensor_arg(info[3], "attentionMask");
      keep.push_back(info[3].As<Napi::Object>());
    }
    Napi::Object o = info.Length() > 4 && info[4].IsObject() ? info[4].As<Napi::Object>() : Napi::Object::New(info.Env());
    std::string hook = opt_string(o, "hook").value_or("resid_post");
    auto layer = opt_number(o, "layer");
    if (!layer) fail_type("layer: expected the layer the SAE reads");
    int64_t l = int64_t(*layer);
    return run_async<std::vector<sae::SpliceSums>>(
        info.Env(),
        [m, saes, ids, mask, hook, l] {
          std::vector<const sae::Sae*> ptrs;
          for (auto& s : saes) ptrs.push_back(s.get());
          return sae::splice_eval(*m, ptrs, hook, l, ids, mask);
        },
        [many](Napi::Env env, std::vector<sae::SpliceSums>& rs) -> Napi::Value {
          auto one = [&](const sae::SpliceSums& r) {
            auto out = Napi::Object::New(env);
            out.Set("nllOrig", r.nll_orig);
            out.Set("nllSae", r.nll_sae);
            out.Set("nllZero", r.nll_zero);
            out.Set("klSae", r.kl_sae);
            out.Set("klZero", r.kl_zero);
            out.Set("tokens", double(r.tokens));
            return out;
          };
          if (!many) return one(rs.front());
          auto arr = Napi::Array::New(env, rs.size());
          for (size_t i = 0; i < rs.size(); ++i) arr.Set(uint32_t(i), one(rs[i]));
          return arr;
        },
        keep);
  });

  // loadModel(path, {precision, computeDtype, device, blocksize, doubleQuant, int8Threshold, cancel, onProgress})
  export_function(env, exports, "loadModel", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::string path = arg_string(info, 0, "path");
    Napi::Object o = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(info.Env());
    model::LoadOptions lo = parse_load_options(o);
    auto cancel = opt_cancel(o);
    ProgressSink sink(info.Env(), o);
    ProgressFn pf = sink.fn();
    return run_async<std::shared_ptr<Model>>(
        info.Env(), [path, lo, cancel, pf] { return Model::load(path, lo, pf, cancel.get()); },
        [](Napi::Env env, std::shared_ptr<Model>& m) -> Napi::Value { return ModelHandle::New(env, m); }, {}, sink);
  });

  // planModel(path, opts): per-module precision and bytes without loading weights.
  export_function(env, exports, "planModel", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::string path = arg_string(info, 0, "path");
    Napi::Object o = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(info.Env());
    model::LoadOptions lo = parse_load_options(o);
    return run_async<model::ModelPlan>(
        info.Env(), [path, lo] { return model::plan_model(path, lo); },
        [](Napi::Env env, model::ModelPlan& p) -> Napi::Value {
          auto o = config_to_js(env, p.config);
          o.Set("precision", model::precision_name(p.precision));
          o.Set("computeDtype", dtype_name(p.compute_dtype));
          o.Set("modules", modules_to_js(env, p.modules));
          o.Set("totalBytes", double(p.total_bytes));
          o.Set("checkpointBytes", double(p.checkpoint_bytes));
          o.Set("largestTensorBytes", double(p.largest_tensor_bytes));
          o.Set("prequantized", p.prequantized);
          return o;
        });
  });
}

}  // namespace qsae::addon
