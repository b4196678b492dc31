// Bindings for runtime facts and settings: info(), setThreads().
#include <ATen/Parallel.h>

#include "addon/binding.h"
#include "addon/napi_util.h"
#include "common/runtime.h"

namespace qsae::addon {

void init_common(Napi::Env env, Napi::Object exports) {
  export_function(env, exports, "info", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Env env = info.Env();
    RuntimeInfo r = runtime_info();
    auto o = Napi::Object::New(env);
    o.Set("qsaeVersion", r.qsae_version);
    o.Set("torchVersion", r.torch_version);
    o.Set("blas", r.blas);
    o.Set("blasLibrary", r.blas_library);
    o.Set("threads", r.threads);
    o.Set("cpuFeatures", r.cpu_features);
    o.Set("cudaBuilt", r.cuda_built);
    o.Set("cudaAvailable", r.cuda_available);
    auto devs = Napi::Array::New(env, r.cuda_devices.size());
    for (size_t i = 0; i < r.cuda_devices.size(); ++i) {
      const auto& d = r.cuda_devices[i];
      auto dj = Napi::Object::New(env);
      dj.Set("index", d.index);
      dj.Set("name", d.name);
      dj.Set("totalMemory", double(d.total_memory));
      dj.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
      devs.Set(uint32_t(i), dj);
    }
    o.Set("cudaDevices", devs);
    return o;
  });
  export_function(env, exports, "setThreads", [](const Napi::CallbackInfo& info) -> Napi::Value {
    int n = static_cast<int>(arg_number(info, 0, "threads"));
    QSAE_CHECK_RANGE(n >= 1 && n <= 1024, "Expected number between 1 and 1024 for threads but received ", n);
    return Napi::Number::New(info.Env(), set_threads(n));
  });
  export_function(env, exports, "manualSeed", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::manual_seed(static_cast<uint64_t>(arg_number(info, 0, "seed")));
    return info.Env().Undefined();
  });
}

}  // namespace qsae::addon
