// Bindings for safetensors and checkpoints: inspectCheckpoint, loadSafetensors, saveSafetensors.
#include "addon/binding.h"
#include "addon/napi_util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"

namespace qsae::addon {

namespace {
struct Inspected {
  std::string path;
  std::vector<std::string> shards;
  std::vector<std::pair<TensorInfo, std::string>> tensors;  // info, shard path
  std::map<std::string, std::string> metadata;
};

struct Loaded {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::map<std::string, std::string> metadata;
};

Napi::Object metadata_to_js(Napi::Env env, const std::map<std::string, std::string>& m) {
  auto o = Napi::Object::New(env);
  for (const auto& [k, v] : m) o.Set(k, v);
  return o;
}
}  // namespace

void init_io(Napi::Env env, Napi::Object exports) {
  // inspectCheckpoint(path): header facts of a file or model folder, without reading tensor data.
  export_function(env, exports, "inspectCheckpoint", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::string path = arg_string(info, 0, "path");
    return run_async<Inspected>(
        info.Env(),
        [path] {
          auto ck = Checkpoint::open(path);
          Inspected out;
          out.path = path;
          out.shards = ck->shards();
          for (const auto& n : ck->names()) out.tensors.emplace_back(ck->info(n), ck->shard_path(n));
          out.metadata = ck->metadata();
          return out;
        },
        [](Napi::Env env, Inspected& r) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("path", r.path);
          auto shards = Napi::Array::New(env, r.shards.size());
          for (size_t i = 0; i < r.shards.size(); ++i) shards.Set(uint32_t(i), r.shards[i]);
          o.Set("shards", shards);
          auto ts = Napi::Array::New(env, r.tensors.size());
          for (size_t i = 0; i < r.tensors.size(); ++i) {
            const auto& [t, shard] = r.tensors[i];
            auto tj = Napi::Object::New(env);
            tj.Set("name", t.name);
            tj.Set("dtype", t.dtype);
            auto shape = Napi::Array::New(env, t.shape.size());
            for (size_t k = 0; k < t.shape.size(); ++k) shape.Set(uint32_t(k), double(t.shape[k]));
            tj.Set("shape", shape);
            tj.Set("bytes", double(t.end - t.begin));
            tj.Set("file", shard);
            ts.Set(uint32_t(i), tj);
          }
          o.Set("tensors", ts);
          o.Set("metadata", metadata_to_js(env, r.metadata));
          return o;
        });
  });

  // loadSafetensors(path, names?): {tensors: {name: TensorHandle}, metadata}; zero-copy views of the mapping.
  export_function(env, exports, "loadSafetensors", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::string path = arg_string(info, 0, "path");
    std::vector<std::string> names;
    bool all = true;
    if (info.Length() > 1 && info[1].IsArray()) {
      all = false;
      auto a = info[1].As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) {
        Napi::Value v = a.Get(i);
        if (!v.IsString()) fail_type("expected an array of strings for names");
        names.push_back(v.As<Napi::String>().Utf8Value());
      }
    }
    return run_async<Loaded>(
        info.Env(),
        [path, names, all] {
          auto ck = Checkpoint::open(path);
          Loaded out;
          for (const auto& n : all ? ck->names() : names) out.tensors.emplace_back(n, ck->get(n));
          out.metadata = ck->metadata();
          return out;
        },
        [](Napi::Env env, Loaded& r) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("tensors", tensors_to_js(env, r.tensors));
          o.Set("metadata", metadata_to_js(env, r.metadata));
          return o;
        });
  });

  // saveSafetensors(path, {name: TensorHandle}, metadata?): atomic write.
  export_function(env, exports, "saveSafetensors", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::string path = arg_string(info, 0, "path");
    Napi::Object obj = arg_object(info, 1, "tensors");
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    std::vector<Napi::Object> keep;
    auto keys = obj.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      std::string name = keys.Get(i).As<Napi::String>().Utf8Value();
      Napi::Value v = obj.Get(name);
      tensors.emplace_back(name, tensor_arg(v, ("tensor '" + name + "'").c_str()));
      keep.push_back(v.As<Napi::Object>());
    }
    std::map<std::string, std::string> metadata;
    if (info.Length() > 2 && info[2].IsObject()) {
      auto m = info[2].As<Napi::Object>();
      auto mk = m.GetPropertyNames();
      for (uint32_t i = 0; i < mk.Length(); ++i) {
        std::string k = mk.Get(i).As<Napi::String>().Utf8Value();
        Napi::Value v = m.Get(k);
        if (!v.IsString()) fail_type("metadata value '", k, "' must be a string");
        metadata[k] = v.As<Napi::String>().Utf8Value();
      }
    }
    return run_async<bool>(
        info.Env(),
        [path, tensors, metadata] {
          save_safetensors(path, tensors, metadata);
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); }, keep);
  });
}

}  // namespace qsae::addon
