// Binding-layer plumbing: errors, guarded functions, tensor handles, cancel tokens, progress.
#include "addon/napi_util.h"

#include <c10/util/Exception.h>

#include <chrono>
#include <mutex>

#include "common/tensor_util.h"

namespace qsae::addon {

AddonData& addon_data(Napi::Env env) {
  auto* d = env.GetInstanceData<AddonData>();
  if (!d) {
    d = new AddonData();
    env.SetInstanceData<AddonData>(d);
  }
  return *d;
}

CaughtError catch_current() {
  try {
    throw;
  } catch (const qsae::Error& e) {
    return {e.kind(), e.what()};
  } catch (const c10::Error& e) {
    return {ErrorKind::Generic, e.what_without_backtrace()};
  } catch (const Napi::Error& e) {
    return {ErrorKind::Generic, e.Message()};
  } catch (const std::bad_alloc&) {
    return {ErrorKind::Generic, "out of memory"};
  } catch (const std::exception& e) {
    return {ErrorKind::Generic, e.what()};
  } catch (...) {
    return {ErrorKind::Generic, "unknown native error"};
  }
}

Napi::Error make_js_error(Napi::Env env, const CaughtError& e) {
  switch (e.kind) {
    case ErrorKind::Type:
      return Napi::TypeError::New(env, e.message);
    case ErrorKind::Range:
      return Napi::RangeError::New(env, e.message);
    case ErrorKind::Cancelled: {
      auto err = Napi::Error::New(env, e.message);
      err.Set("name", Napi::String::New(env, "AbortError"));
      err.Set("code", Napi::String::New(env, "ABORT_ERR"));
      return err;
    }
    default:
      return Napi::Error::New(env, e.message);
  }
}

Napi::Function make_function(Napi::Env env, const char* name, SyncFn fn) {
  return Napi::Function::New(
      env,
      [fn](const Napi::CallbackInfo& info) -> Napi::Value {
        try {
          return fn(info);
        } catch (const Napi::Error&) {
          throw;
        } catch (...) {
          throw make_js_error(info.Env(), catch_current());
        }
      },
      name);
}

void export_function(Napi::Env env, Napi::Object exports, const char* name, SyncFn fn) {
  exports.Set(name, make_function(env, name, std::move(fn)));
}

std::string arg_string(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) fail_type("expected a string for ", what);
  return info[i].As<Napi::String>().Utf8Value();
}

double arg_number(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) fail_type("expected a number for ", what);
  return info[i].As<Napi::Number>().DoubleValue();
}

Napi::Object arg_object(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsObject()) fail_type("expected an object for ", what);
  return info[i].As<Napi::Object>();
}

std::optional<std::string> opt_string(const Napi::Object& o, const char* key) {
  if (!o.Has(key)) return std::nullopt;
  auto v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  if (!v.IsString()) fail_type("expected a string for option ", key);
  return v.As<Napi::String>().Utf8Value();
}

std::optional<double> opt_number(const Napi::Object& o, const char* key) {
  if (!o.Has(key)) return std::nullopt;
  auto v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  if (!v.IsNumber()) fail_type("expected a number for option ", key);
  return v.As<Napi::Number>().DoubleValue();
}

std::optional<bool> opt_bool(const Napi::Object& o, const char* key) {
  if (!o.Has(key)) return std::nullopt;
  auto v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  if (!v.IsBoolean()) fail_type("expected a boolean for option ", key);
  return v.As<Napi::Boolean>().Value();
}

std::vector<int64_t> to_int64_vector(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) fail_type("expected an array of integers for ", what);
  auto a = v.As<Napi::Array>();
  std::vector<int64_t> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) fail_type("expected an array of integers for ", what);
    double d = e.As<Napi::Number>().DoubleValue();
    if (d != static_cast<double>(static_cast<int64_t>(d))) fail_type("expected integers in ", what);
    out.push_back(static_cast<int64_t>(d));
  }
  return out;
}

// ---------------- TensorHandle ----------------

void TensorHandle::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "TensorHandle",
                                    {
                                        InstanceAccessor<&TensorHandle::Shape>("shape"),
                                        InstanceAccessor<&TensorHandle::Dtype>("dtype"),
                                        InstanceAccessor<&TensorHandle::Device>("device"),
                                        InstanceAccessor<&TensorHandle::Nbytes>("nbytes"),
                                        InstanceAccessor<&TensorHandle::IsDisposed>("disposed"),
                                        InstanceMethod<&TensorHandle::ToBuffer>("toBuffer"),
                                        InstanceMethod<&TensorHandle::To>("to"),
                                        InstanceMethod<&TensorHandle::Dispose>("dispose"),
                                    });
  addon_data(env).ctors["TensorHandle"] = Napi::Persistent(ctor);
  exports.Set("TensorHandle", ctor);

  // tensorFromBuffer(arrayBuffer, dtype, shape): copies the bytes into a new CPU tensor.
  export_function(env, exports, "tensorFromBuffer", [](const Napi::CallbackInfo& info) -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsArrayBuffer()) fail_type("expected an ArrayBuffer for data");
    auto buf = info[0].As<Napi::ArrayBuffer>();
    auto dtype = dtype_from_name(arg_string(info, 1, "dtype"));
    if (info.Length() < 3) fail_type("expected an array of integers for shape");
    auto shape = to_int64_vector(info[2], "shape");
    int64_t numel = 1;
    for (auto d : shape) {
      QSAE_CHECK_RANGE(d >= 0, "shape ", shape_str(shape), " has a negative dimension");
      numel *= d;
    }
    const size_t need = size_t(numel) * dtype_size(dtype);
    QSAE_CHECK_RANGE(buf.ByteLength() == need, "data has ", buf.ByteLength(), " bytes but shape ", shape_str(shape),
                     " x ", dtype_name(dtype), " needs ", need);
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
    if (need) std::memcpy(t.data_ptr(), buf.Data(), need);
    return TensorHandle::New(info.Env(), t);
  });
}

Napi::Object TensorHandle::New(Napi::Env env, at::Tensor t) {
  Napi::Object obj = addon_data(env).ctors["TensorHandle"].New({});
  auto* h = Napi::ObjectWrap<TensorHandle>::Unwrap(obj);
  h->t_ = std::move(t);
  h->reported_ = h->t_.defined() ? int64_t(h->t_.numel()) * int64_t(h->t_.element_size()) : 0;
  if (h->reported_) Napi::MemoryManagement::AdjustExternalMemory(env, h->reported_);
  return obj;
}

TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info) {}

TensorHandle::~TensorHandle() { release(nullptr); }

void TensorHandle::release(Napi::Env* env) {
  if (env && reported_) Napi::MemoryManagement::AdjustExternalMemory(*env, -reported_);
  reported_ = 0;
  t_ = at::Tensor();
}

const at::Tensor& TensorHandle::tensor() const {
  if (!t_.defined()) fail("tensor was disposed");
  return t_;
}

Napi::Value TensorHandle::Shape(const Napi::CallbackInfo& info) {
  const auto& t = tensor();
  auto arr = Napi::Array::New(info.Env(), t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) arr.Set(uint32_t(i), Napi::Number::New(info.Env(), double(t.size(i))));
  return arr;
}
Napi::Value TensorHandle::Dtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dtype_name(tensor().scalar_type()));
}
Napi::Value TensorHandle::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), tensor().device().str());
}
Napi::Value TensorHandle::Nbytes(const Napi::CallbackInfo& info) {
  const auto& t = tensor();
  return Napi::Number::New(info.Env(), double(t.numel()) * double(t.element_size()));
}
Napi::Value TensorHandle::IsDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed()); }

Napi::Value TensorHandle::ToBuffer(const Napi::CallbackInfo& info) {
  try {
    at::Tensor c = tensor().to(at::kCPU).contiguous();
    size_t n = size_t(c.numel()) * c.element_size();
    auto buf = Napi::ArrayBuffer::New(info.Env(), n);
    if (n) std::memcpy(buf.Data(), c.data_ptr(), n);
    return buf;
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw make_js_error(info.Env(), catch_current());
  }
}

// to(dtype?: string, device?: string): a converted copy as a new handle.
Napi::Value TensorHandle::To(const Napi::CallbackInfo& info) {
  try {
    at::Tensor t = tensor();
    if (info.Length() > 1 && info[1].IsString()) t = t.to(parse_device(info[1].As<Napi::String>().Utf8Value()));
    if (info.Length() > 0 && info[0].IsString()) t = t.to(dtype_from_name(info[0].As<Napi::String>().Utf8Value()));
    return New(info.Env(), t.is_same(tensor()) ? t.clone() : t);
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw make_js_error(info.Env(), catch_current());
  }
}

Napi::Value TensorHandle::Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  release(&env);
  return env.Undefined();
}

bool is_tensor_handle(const Napi::Value& v) {
  if (!v.IsObject()) return false;
  auto& ctor = addon_data(v.Env()).ctors["TensorHandle"];
  return v.As<Napi::Object>().InstanceOf(ctor.Value());
}

at::Tensor tensor_arg(const Napi::Value& v, const char* what) {
  if (!is_tensor_handle(v)) fail_type("expected a Tensor for ", what);
  return Napi::ObjectWrap<TensorHandle>::Unwrap(v.As<Napi::Object>())->tensor();
}

Napi::Object tensors_to_js(Napi::Env env, const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  auto obj = Napi::Object::New(env);
  for (const auto& [name, t] : tensors) obj.Set(name, TensorHandle::New(env, t));
  return obj;
}

// ---------------- CancelTokenHandle ----------------

void CancelTokenHandle::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = DefineClass(env, "CancelToken", {InstanceMethod<&CancelTokenHandle::Cancel>("cancel")});
  addon_data(env).ctors["CancelToken"] = Napi::Persistent(ctor);
  exports.Set("CancelToken", ctor);
}

CancelTokenHandle::CancelTokenHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CancelTokenHandle>(info) {}

Napi::Value CancelTokenHandle::Cancel(const Napi::CallbackInfo& info) {
  token_->cancel();
  return info.Env().Undefined();
}

std::shared_ptr<CancelToken> opt_cancel(const Napi::Object& opts) {
  if (!opts.Has("cancel")) return nullptr;
  auto v = opts.Get("cancel");
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  auto& ctor = addon_data(opts.Env()).ctors["CancelToken"];
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor.Value())) fail_type("expected a CancelToken for option cancel");
  return Napi::ObjectWrap<CancelTokenHandle>::Unwrap(v.As<Napi::Object>())->token();
}

// ---------------- ProgressSink ----------------

struct ProgressSink::State {
  Napi::ThreadSafeFunction tsfn;
  std::mutex mu;
  bool released = false;
  std::chrono::steady_clock::time_point last{};
};

ProgressSink::ProgressSink(Napi::Env env, const Napi::Object& opts) {
  if (!opts.Has("onProgress")) return;
  auto cb = opts.Get("onProgress");
  if (cb.IsUndefined() || cb.IsNull()) return;
  if (!cb.IsFunction()) fail_type("expected a function for option onProgress");
  state_ = std::make_shared<State>();
  state_->tsfn = Napi::ThreadSafeFunction::New(env, cb.As<Napi::Function>(), "qsae-progress", 0, 1);
}

ProgressFn ProgressSink::fn() {
  if (!state_) return {};
  auto st = state_;
  return [st](const Progress& p) {
    std::lock_guard<std::mutex> lock(st->mu);
    if (st->released) return;
    auto now = std::chrono::steady_clock::now();
    bool final = p.total > 0 && p.done >= p.total;
    if (!final && now - st->last < std::chrono::milliseconds(100)) return;
    st->last = now;
    auto* copy = new Progress(p);
    auto status = st->tsfn.NonBlockingCall(copy, [](Napi::Env env, Napi::Function cb, Progress* pr) {
      std::unique_ptr<Progress> owned(pr);
      if (!env || !cb) return;
      auto o = Napi::Object::New(env);
      o.Set("stage", pr->stage);
      o.Set("done", pr->done);
      o.Set("total", pr->total);
      o.Set("unit", pr->unit);
      o.Set("message", pr->message);
      try {
        cb.Call({o});
      } catch (...) {
        // A throwing progress callback must not kill the job.
      }
    });
    if (status != napi_ok) delete copy;
  };
}

void ProgressSink::release() {
  if (!state_) return;
  std::lock_guard<std::mutex> lock(state_->mu);
  if (!state_->released) {
    state_->released = true;
    state_->tsfn.Release();
  }
}

}  // namespace qsae::addon
