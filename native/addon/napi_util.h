// Shared plumbing for the N-API binding layer: error mapping, guarded sync functions, Promise workers,
// progress (thread-safe functions), cancellation tokens and wrapped tensor handles.
// Conventions: argument parsing happens on the main thread into plain C++ values ("baton"); worker
// lambdas touch no JS values; results become JS values in the completion callback.
#pragma once
#include <ATen/ATen.h>
#include <napi.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/cancel.h"
#include "common/error.h"

namespace qsae::addon {

// Per-environment constructors of wrapped classes, by name.
struct AddonData {
  std::map<std::string, Napi::FunctionReference> ctors;
};
AddonData& addon_data(Napi::Env env);

// Turns the current exception (qsae::Error, c10::Error, std::exception) into a kind + message.
struct CaughtError {
  ErrorKind kind = ErrorKind::Generic;
  std::string message;
};
CaughtError catch_current();
Napi::Error make_js_error(Napi::Env env, const CaughtError& e);

// Wraps a sync binding so C++ exceptions become JS exceptions (never std::terminate).
using SyncFn = std::function<Napi::Value(const Napi::CallbackInfo&)>;
Napi::Function make_function(Napi::Env env, const char* name, SyncFn fn);
void export_function(Napi::Env env, Napi::Object exports, const char* name, SyncFn fn);

// ---- argument helpers (throw qsae::Error of kind Type with the argument name) ----
std::string arg_string(const Napi::CallbackInfo& info, size_t i, const char* what);
double arg_number(const Napi::CallbackInfo& info, size_t i, const char* what);
Napi::Object arg_object(const Napi::CallbackInfo& info, size_t i, const char* what);
// Optional fields of an options object.
std::optional<std::string> opt_string(const Napi::Object& o, const char* key);
std::optional<double> opt_number(const Napi::Object& o, const char* key);
std::optional<bool> opt_bool(const Napi::Object& o, const char* key);
std::vector<int64_t> to_int64_vector(const Napi::Value& v, const char* what);

// ---- tensors ----
class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  static Napi::Object New(Napi::Env env, at::Tensor t);
  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;
  const at::Tensor& tensor() const;  // throws DisposedError-style qsae::Error when disposed
  bool disposed() const { return !t_.defined(); }

 private:
  Napi::Value Shape(const Napi::CallbackInfo&);
  Napi::Value Dtype(const Napi::CallbackInfo&);
  Napi::Value Device(const Napi::CallbackInfo&);
  Napi::Value Nbytes(const Napi::CallbackInfo&);
  Napi::Value IsDisposed(const Napi::CallbackInfo&);
  Napi::Value ToBuffer(const Napi::CallbackInfo&);
  Napi::Value To(const Napi::CallbackInfo&);
  Napi::Value Dispose(const Napi::CallbackInfo&);
  void release(Napi::Env* env);
  at::Tensor t_;
  int64_t reported_ = 0;
};
// The tensor behind a JS TensorHandle argument; TypeError naming `what` otherwise.
at::Tensor tensor_arg(const Napi::Value& v, const char* what);
bool is_tensor_handle(const Napi::Value& v);

// ---- cancellation (wired to AbortSignal on the TS side) ----
class CancelTokenHandle : public Napi::ObjectWrap<CancelTokenHandle> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit CancelTokenHandle(const Napi::CallbackInfo& info);
  std::shared_ptr<CancelToken> token() const { return token_; }

 private:
  Napi::Value Cancel(const Napi::CallbackInfo&);
  std::shared_ptr<CancelToken> token_ = std::make_shared<CancelToken>();
};
// opts.cancel (a CancelTokenHandle) or null.
std::shared_ptr<CancelToken> opt_cancel(const Napi::Object& opts);

// ---- progress: opts.onProgress(progress) called on the JS thread, at most every 100 ms ----
class ProgressSink {
 public:
  ProgressSink() = default;
  // Takes opts.onProgress when it is a function.
  ProgressSink(Napi::Env env, const Napi::Object& opts);
  ProgressFn fn();  // empty when no callback; safe to call from any thread
  void release();   // call on the JS thread when the job ends

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// ---- Promise workers ----
// Runs `work` on the libuv pool. On success the promise resolves with `done(env, result)`; a thrown
// exception rejects it with the mapped JS error (stack of the JS call site). `keep` objects (tensor
// handles, models) are referenced until completion so GC cannot free them mid-job.
template <class R>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<R()>;
  using Done = std::function<Napi::Value(Napi::Env, R&)>;
  PromiseWorker(Napi::Env env, Work work, Done done, std::vector<Napi::Object> keep, ProgressSink progress)
      : Napi::AsyncWorker(env, "qsae"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)), progress_(std::move(progress)) {
    for (auto& o : keep) keep_.push_back(Napi::Persistent(o));
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      result_.emplace(work_());
    } catch (...) {
      error_ = catch_current();
      SetError(error_.message);
    }
  }
  void OnOK() override {
    progress_.release();
    Napi::Env env = Env();
    try {
      deferred_.Resolve(done_(env, *result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      deferred_.Reject(make_js_error(env, catch_current()).Value());
    }
  }
  void OnError(const Napi::Error&) override {
    progress_.release();
    deferred_.Reject(make_js_error(Env(), error_).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  ProgressSink progress_;
  std::vector<Napi::ObjectReference> keep_;
  std::optional<R> result_;
  CaughtError error_;
};

template <class R>
Napi::Promise run_async(Napi::Env env, std::function<R()> work, std::function<Napi::Value(Napi::Env, R&)> done,
                        std::vector<Napi::Object> keep = {}, ProgressSink progress = {}) {
  auto* w = new PromiseWorker<R>(env, std::move(work), std::move(done), std::move(keep), std::move(progress));
  auto p = w->promise();
  w->Queue();
  return p;
}

// Converts a tensor map result into a plain JS object of TensorHandles.
Napi::Object tensors_to_js(Napi::Env env, const std::vector<std::pair<std::string, at::Tensor>>& tensors);

}  // namespace qsae::addon
