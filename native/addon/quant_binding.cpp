// Bindings of native/quant: quantize4/dequantize4, quantizeInt8/dequantizeInt8, linear4bit/linearInt8,
// quantizeCheckpoint (the CLI's work) and quantCpuKernel. Quantized weights cross the boundary as plain objects
// of TensorHandles plus format facts (see Native4bit / NativeInt8 in src/native/types.ts).
#include "addon/binding.h"
#include "addon/napi_util.h"
#include "common/tensor_util.h"
#include "quant/checkpoint_quant.h"
#include "quant/quant.h"

namespace qsae::addon {

namespace {

Napi::Object opts_or_empty(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() > i && info[i].IsObject()) return info[i].As<Napi::Object>();
  return Napi::Object::New(info.Env());
}

int64_t int_opt(const Napi::Object& o, const char* key, int64_t dflt) {
  auto v = opt_number(o, key);
  if (!v) return dflt;
  if (*v != std::floor(*v)) fail_type("option ", key, " must be an integer, got ", *v);
  return int64_t(*v);
}

Napi::Value tensor_or_undefined(Napi::Env env, const at::Tensor& t) {
  return t.defined() ? Napi::Value(TensorHandle::New(env, t)) : env.Undefined();
}

Napi::Object q4_to_js(Napi::Env env, const quant::Quant4& q) {
  auto o = Napi::Object::New(env);
  o.Set("format", quant::format_name(q.format));
  o.Set("blocksize", double(q.blocksize));
  auto shape = Napi::Array::New(env, q.shape.size());
  for (size_t i = 0; i < q.shape.size(); ++i) shape.Set(uint32_t(i), double(q.shape[i]));
  o.Set("shape", shape);
  o.Set("dtype", dtype_name(q.dtype));
  o.Set("doubleQuant", q.double_quant);
  o.Set("packed", TensorHandle::New(env, q.packed));
  o.Set("absmax", TensorHandle::New(env, q.absmax));
  if (q.double_quant) {
    o.Set("offset", double(q.offset));
    o.Set("quantAbsmax", TensorHandle::New(env, q.quant_absmax));
    o.Set("nestedAbsmax", TensorHandle::New(env, q.nested_absmax));
    o.Set("nestedQuantMap", TensorHandle::New(env, q.nested_quant_map));
    o.Set("nestedBlocksize", double(q.nested_blocksize));
  }
  return o;
}

quant::Quant4 q4_from_js(const Napi::Value& v, const char* what) {
  if (!v.IsObject()) fail_type(what, ": expected a 4-bit quantized tensor object");
  auto o = v.As<Napi::Object>();
  quant::Quant4 q;
  q.format = quant::parse_format(opt_string(o, "format").value_or(""), std::string(what) + ".format");
  q.blocksize = int_opt(o, "blocksize", 64);
  quant::check_blocksize(q.blocksize, what);
  q.shape = to_int64_vector(o.Get("shape"), "shape");
  q.dtype = dtype_from_name(opt_string(o, "dtype").value_or("fp32"));
  q.packed = tensor_arg(o.Get("packed"), "packed");
  q.absmax = tensor_arg(o.Get("absmax"), "absmax");
  q.double_quant = opt_bool(o, "doubleQuant").value_or(false);
  if (q.double_quant) {
    q.offset = float(opt_number(o, "offset").value_or(0));
    q.quant_absmax = tensor_arg(o.Get("quantAbsmax"), "quantAbsmax");
    q.nested_absmax = tensor_arg(o.Get("nestedAbsmax"), "nestedAbsmax");
    q.nested_quant_map = tensor_arg(o.Get("nestedQuantMap"), "nestedQuantMap");
    q.nested_blocksize = int_opt(o, "nestedBlocksize", 256);
  }
  QSAE_CHECK_TYPE(q.packed.scalar_type() == at::kByte, what, ": packed must be uint8");
  QSAE_CHECK_RANGE(q.packed.numel() == (q.numel() + 1) / 2, what, ": packed data has ", q.packed.numel(),
                   " bytes but shape ", shape_str(q.shape), " needs ", (q.numel() + 1) / 2);
  QSAE_CHECK_RANGE(q.absmax.numel() == q.nblocks(), what, ": absmax has ", q.absmax.numel(), " values, expected ",
                   q.nblocks());
  return q;
}

quant::Int8Weight i8_from_js(const Napi::Value& v, const char* what) {
  if (!v.IsObject()) fail_type(what, ": expected an int8 quantized tensor object {CB, SCB}");
  auto o = v.As<Napi::Object>();
  return quant::load_int8(what, tensor_arg(o.Get("CB"), "CB"), tensor_arg(o.Get("SCB"), "SCB"));
}

at::Tensor opt_tensor(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return {};
  return tensor_arg(info[i], what);
}

at::ScalarType compute_arg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsString()) return at::kFloat;
  return dtype_from_name(info[i].As<Napi::String>().Utf8Value());
}

}  // namespace

void init_quant(Napi::Env env, Napi::Object exports) {
  // quantize4(tensor, {format, blocksize, doubleQuant}) -> Promise<Native4bit>
  export_function(env, exports, "quantize4", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor t = tensor_arg(info[0], "tensor");
    Napi::Object o = opts_or_empty(info, 1);
    quant::Format f = quant::parse_format(opt_string(o, "format").value_or("nf4"), "format");
    int64_t bs = int_opt(o, "blocksize", 64);
    quant::check_blocksize(bs, "blocksize");
    bool dq = opt_bool(o, "doubleQuant").value_or(false);
    return run_async<quant::Quant4>(
        info.Env(), [=] { return quant::quantize_4bit(t, f, bs, dq); },
        [](Napi::Env env, quant::Quant4& q) -> Napi::Value { return q4_to_js(env, q); });
  });
  // dequantize4(q, dtype?) -> Promise<tensor>
  export_function(env, exports, "dequantize4", [](const Napi::CallbackInfo& info) -> Napi::Value {
    quant::Quant4 q = q4_from_js(info[0], "quantized");
    at::ScalarType out = info.Length() > 1 && info[1].IsString() ? dtype_from_name(info[1].As<Napi::String>().Utf8Value())
                                                                 : at::kFloat;
    return run_async<at::Tensor>(
        info.Env(), [=] { return quant::dequantize_4bit(q, out); },
        [](Napi::Env env, at::Tensor& t) -> Napi::Value { return TensorHandle::New(env, t); });
  });
  // quantizeInt8(tensor) -> Promise<{CB, SCB}>
  export_function(env, exports, "quantizeInt8", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor t = tensor_arg(info[0], "tensor");
    return run_async<quant::Int8Weight>(
        info.Env(), [=] { return quant::quantize_int8(t); },
        [](Napi::Env env, quant::Int8Weight& w) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("format", "int8");
          o.Set("CB", TensorHandle::New(env, w.CB));
          o.Set("SCB", TensorHandle::New(env, w.SCB));
          return o;
        });
  });
  export_function(env, exports, "dequantizeInt8", [](const Napi::CallbackInfo& info) -> Napi::Value {
    quant::Int8Weight w = i8_from_js(info[0], "quantized");
    at::ScalarType out = info.Length() > 1 && info[1].IsString() ? dtype_from_name(info[1].As<Napi::String>().Utf8Value())
                                                                 : at::kFloat;
    return run_async<at::Tensor>(
        info.Env(), [=] { return quant::dequantize_int8(w, out); },
        [](Napi::Env env, at::Tensor& t) -> Napi::Value { return TensorHandle::New(env, t); });
  });
  // linear4bit(x, q, bias|null, compute?) -> Promise<tensor>
  export_function(env, exports, "linear4bit", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor x = tensor_arg(info[0], "x");
    quant::Quant4 q = q4_from_js(info[1], "weight");
    at::Tensor b = opt_tensor(info, 2, "bias");
    at::ScalarType c = compute_arg(info, 3);
    return run_async<at::Tensor>(
        info.Env(), [=] { return quant::linear_4bit(x, q, b, c); },
        [](Napi::Env env, at::Tensor& t) -> Napi::Value { return TensorHandle::New(env, t); });
  });
  // linearInt8(x, {CB, SCB}, bias|null, threshold, compute?) -> Promise<tensor>
  export_function(env, exports, "linearInt8", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor x = tensor_arg(info[0], "x");
    quant::Int8Weight w = i8_from_js(info[1], "weight");
    at::Tensor b = opt_tensor(info, 2, "bias");
    double thr = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : 6.0;
    at::ScalarType c = compute_arg(info, 4);
    return run_async<at::Tensor>(
        info.Env(), [=] { return quant::linear_int8(x, w, b, thr, c); },
        [](Napi::Env env, at::Tensor& t) -> Napi::Value { return TensorHandle::New(env, t); });
  });
  // quantizeCheckpoint(in, out, {format, blocksize, doubleQuant, threshold, cancel, onProgress})
  export_function(env, exports, "quantizeCheckpoint", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::string in = arg_string(info, 0, "input");
    std::string out = arg_string(info, 1, "output");
    Napi::Object o = opts_or_empty(info, 2);
    quant::QuantizeOptions q;
    q.format = opt_string(o, "format").value_or("nf4");
    if (q.format != "nf4" && q.format != "fp4" && q.format != "int8")
      fail_type("--format: unknown format '", q.format, "' (expected nf4, fp4 or int8)");
    q.blocksize = int_opt(o, "blocksize", 64);
    if (q.format != "int8") quant::check_blocksize(q.blocksize, "--blocksize");
    q.double_quant = opt_bool(o, "doubleQuant").value_or(false);
    q.threshold = opt_number(o, "threshold").value_or(6.0);
    if (!(q.threshold >= 0)) fail_range("--threshold must be >= 0, got ", q.threshold);
    auto cancel = opt_cancel(o);
    ProgressSink sink(info.Env(), o);
    ProgressFn progress = sink.fn();
    return run_async<quant::QuantizeReport>(
        info.Env(), [=] { return quant::quantize_checkpoint(in, out, q, progress, cancel.get()); },
        [](Napi::Env env, quant::QuantizeReport& r) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("out", r.out);
          o.Set("modelFolder", r.model_folder);
          auto qa = Napi::Array::New(env, r.quantized.size());
          for (size_t i = 0; i < r.quantized.size(); ++i) qa.Set(uint32_t(i), r.quantized[i]);
          o.Set("quantized", qa);
          auto ka = Napi::Array::New(env, r.kept.size());
          for (size_t i = 0; i < r.kept.size(); ++i) ka.Set(uint32_t(i), r.kept[i]);
          o.Set("kept", ka);
          o.Set("bytesIn", double(r.bytes_in));
          o.Set("bytesOut", double(r.bytes_out));
          return o;
        },
        {}, sink);
  });
  export_function(env, exports, "quantCpuKernel", [](const Napi::CallbackInfo& info) -> Napi::Value {
    if (info.Length() > 0 && info[0].IsString()) quant::set_cpu_kernel(info[0].As<Napi::String>().Utf8Value());
    return Napi::String::New(info.Env(), quant::cpu_kernel());
  });
}

}  // namespace qsae::addon
