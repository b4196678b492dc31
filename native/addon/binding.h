// Entry points of the binding modules. Each native/<module> has one native/addon/<module>_binding.cpp
// defining its init_<module>(env, exports); addon.cpp calls those that are linked in (weak symbols),
// so a module's binding is added by listing its file in native/<module>/sources.cmake.
#pragma once
#include <napi.h>

#include <memory>

namespace qsae::sae {
struct Sae;
}

namespace qsae::addon {
void init_common(Napi::Env env, Napi::Object exports);
void init_io(Napi::Env env, Napi::Object exports);
void init_quant(Napi::Env env, Napi::Object exports) __attribute__((weak));
void init_model(Napi::Env env, Napi::Object exports) __attribute__((weak));
void init_sae(Napi::Env env, Napi::Object exports) __attribute__((weak));
void init_analysis(Napi::Env env, Napi::Object exports) __attribute__((weak));
void init_train(Napi::Env env, Napi::Object exports) __attribute__((weak));
// The SAE behind a JS SaeHandle (defined in sae_binding.cpp); throws a TypeError for anything else.
std::shared_ptr<sae::Sae> sae_from_js(const Napi::Value& v);
}  // namespace qsae::addon
