// The qsae Node-API addon: a thin binding layer over qsae_core. Sets torch threads at load.
#include <napi.h>

#include "addon/binding.h"
#include "addon/napi_util.h"
#include "common/runtime.h"

namespace qsae::addon {

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  try {
    init_runtime();
  } catch (...) {
    throw make_js_error(env, catch_current());
  }
  TensorHandle::Init(env, exports);
  CancelTokenHandle::Init(env, exports);
  init_common(env, exports);
  init_io(env, exports);
  if (init_quant) init_quant(env, exports);
  if (init_model) init_model(env, exports);
  if (init_sae) init_sae(env, exports);
  if (init_analysis) init_analysis(env, exports);
  if (init_train) init_train(env, exports);
  return exports;
}

}  // namespace qsae::addon

static Napi::Object QsaeInit(Napi::Env env, Napi::Object exports) { return qsae::addon::Init(env, exports); }

NODE_API_MODULE(qsae, QsaeInit)
