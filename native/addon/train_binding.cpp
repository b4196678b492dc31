// Bindings for small-LM training: lmInitWeights, lmTrain, lmEvalLoss.
#include "addon/binding.h"
#include "addon/napi_util.h"
#include "common/tensor_util.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/model.h"
#include "train/lm_init.h"
#include "train/lm_trainer.h"

namespace qsae::addon {

namespace {
Napi::Object curve_to_js(Napi::Env env, const train::LmTrainResult& r) {
  auto o = Napi::Object::New(env);
  o.Set("steps", double(r.steps));
  o.Set("scheduledSteps", double(r.scheduled_steps));
  o.Set("tokens", double(r.tokens));
  o.Set("seconds", r.seconds);
  o.Set("finalTrainLoss", r.final_train_loss);
  o.Set("heldoutLoss", r.heldout_loss);
  auto curve = Napi::Array::New(env, r.heldout_curve.size());
  for (size_t i = 0; i < r.heldout_curve.size(); ++i) {
    auto p = Napi::Array::New(env, 2);
    p.Set(uint32_t(0), double(r.heldout_curve[i].first));
    p.Set(uint32_t(1), r.heldout_curve[i].second);
    curve.Set(uint32_t(i), p);
  }
  o.Set("heldoutCurve", curve);
  return o;
}

model::LoadOptions fp32_on(const std::string& device) {
  model::LoadOptions lo;
  lo.precision = model::Precision::FP32;
  lo.device = device;
  return lo;
}
}  // namespace

void init_train(Napi::Env env, Napi::Object exports) {
  // lmInitWeights(dir, seed): writes DIR/model.safetensors with fresh fp32 weights for DIR/config.json.
  export_function(env, exports, "lmInitWeights", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::string dir = arg_string(info, 0, "dir");
    uint64_t seed = static_cast<uint64_t>(arg_number(info, 1, "seed"));
    return run_async<bool>(
        info.Env(),
        [dir, seed] {
          auto cfg = model::load_config(dir);
          save_safetensors(join_path(dir, "model.safetensors"), train::init_lm_weights(cfg, seed), {{"format", "pt"}});
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  });

  // lmTrain(dir, trainTokens, heldoutTokens, opts): loads DIR at fp32 on opts.device (default cpu), trains,
  // writes DIR/model.safetensors in opts.saveDtype (default bf16) atomically, resolves with the losses.
  export_function(env, exports, "lmTrain", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::string dir = arg_string(info, 0, "dir");
    at::Tensor train_tokens = tensor_arg(info[1], "trainTokens");
    at::Tensor heldout = tensor_arg(info[2], "heldoutTokens");
    Napi::Object o = arg_object(info, 3, "options");
    train::LmTrainOptions t;
    if (auto v = opt_number(o, "seqLen")) t.seq_len = int64_t(*v);
    if (auto v = opt_number(o, "batchSize")) t.batch_size = int64_t(*v);
    if (auto v = opt_number(o, "steps")) t.steps = int64_t(*v);
    if (auto v = opt_number(o, "warmupSteps")) t.warmup_steps = int64_t(*v);
    if (auto v = opt_number(o, "lr")) t.lr = *v;
    if (auto v = opt_number(o, "minLrRatio")) t.min_lr_ratio = *v;
    if (auto v = opt_number(o, "weightDecay")) t.weight_decay = *v;
    if (auto v = opt_number(o, "gradClip")) t.grad_clip = *v;
    if (auto v = opt_number(o, "seed")) t.seed = uint64_t(*v);
    if (auto v = opt_number(o, "evalEvery")) t.eval_every = int64_t(*v);
    if (auto v = opt_number(o, "evalWindows")) t.eval_windows = int64_t(*v);
    if (auto v = opt_number(o, "maxSeconds")) t.max_seconds = *v;
    at::ScalarType save = dtype_from_name(opt_string(o, "saveDtype").value_or("bf16"));
    std::string device = opt_string(o, "device").value_or("cpu");
    auto cancel = opt_cancel(o);
    ProgressSink sink(info.Env(), o);
    auto progress = sink.fn();
    std::vector<Napi::Object> keep{info[1].As<Napi::Object>(), info[2].As<Napi::Object>()};
    return run_async<train::LmTrainResult>(
        info.Env(),
        [=] {
          auto m = model::Model::load(dir, fp32_on(device));
          auto r = train::train_lm(*m, train_tokens, heldout, t, progress, cancel.get());
          std::vector<std::pair<std::string, at::Tensor>> out;
          for (auto& [name, p] : train::trainable_parameters(*m)) out.emplace_back(name, p.detach().to(at::kCPU).to(save));
          save_safetensors(join_path(dir, "model.safetensors"), out, {{"format", "pt"}});
          return r;
        },
        [](Napi::Env env, train::LmTrainResult& r) -> Napi::Value { return curve_to_js(env, r); }, keep, sink);
  });

  // lmEvalLoss(dir, tokens, {precision?, seqLen, windows}): mean next-token loss (nats) over evenly spaced windows.
  export_function(env, exports, "lmEvalLoss", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::string dir = arg_string(info, 0, "dir");
    at::Tensor tokens = tensor_arg(info[1], "tokens");
    Napi::Object o = arg_object(info, 2, "options");
    int64_t seq_len = int64_t(opt_number(o, "seqLen").value_or(256));
    int64_t windows = int64_t(opt_number(o, "windows").value_or(64));
    model::LoadOptions lo;
    if (auto p = opt_string(o, "precision")) lo.precision = model::parse_precision(*p);
    std::vector<Napi::Object> keep{info[1].As<Napi::Object>()};
    return run_async<double>(
        info.Env(),
        [=] {
          auto m = model::Model::load(dir, lo);
          return train::lm_eval_loss(*m, tokens, seq_len, windows);
        },
        [](Napi::Env env, double& v) -> Napi::Value { return Napi::Number::New(env, v); }, keep);
  });
}

}  // namespace qsae::addon
