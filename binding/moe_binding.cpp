// MoE routing and dispatch layout.
#include "bindings.hpp"
#include "moe_ops.hpp"
#include "table_args.hpp"

namespace engram {

Napi::Value MoeRoute(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  RouteParams p{};
  const int64_t tokens = intField(o, "tokens", 0, INT32_MAX);
  p.experts = static_cast<int>(intField(o, "experts", 1, 1 << 20));
  p.topk = static_cast<int>(intField(o, "topk", 1, 1 << 20));
  p.groups = static_cast<int>(intField(o, "groups", 1, 64));
  p.topkGroups = static_cast<int>(intField(o, "topkGroups", 1, 64));
  p.func = static_cast<ScoreFunc>(intField(o, "scoreFunc", 0, 2));
  p.gateTemp = static_cast<float>(o.Get("gateTemp").ToNumber().DoubleValue());
  p.routeScale = static_cast<float>(o.Get("routeScale").ToNumber().DoubleValue());
  p.normEps = static_cast<float>(o.Get("normEps").ToNumber().DoubleValue());
  const float* logits = typedField<float>(o, "logits", napi_float32_array, tokens * p.experts, false);
  const float* bias = typedField<float>(o, "bias", napi_float32_array, p.experts, true);
  const float* biasVl = typedField<float>(o, "biasVl", napi_float32_array, p.experts, true);
  const uint8_t* imageMask = typedField<uint8_t>(o, "imageMask", napi_uint8_array, tokens, true);
  p.hasBias = bias != nullptr;
  if (biasVl != nullptr && bias == nullptr) throwJs(info.Env(), ErrorKind::TypeError, "biasVl needs bias");
  int32_t* indices = typedField<int32_t>(o, "indices", napi_int32_array, tokens * p.topk, false);
  float* weights = typedField<float>(o, "weights", napi_float32_array, tokens * p.topk, false);
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] { moeRouteCpu(logits, tokens, bias, biasVl, imageMask, p, indices, weights, state.pool, threads); });
  return info.Env().Undefined();
}

Napi::Value MoeLayout(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const int64_t tokens = intField(o, "tokens", 0, INT32_MAX);
  const int topk = static_cast<int>(intField(o, "topk", 1, 1 << 20));
  const int experts = static_cast<int>(intField(o, "experts", 1, 1 << 20));
  const int ranks = static_cast<int>(intField(o, "ranks", 1, 1 << 16));
  const int32_t* indices = typedField<int32_t>(o, "indices", napi_int32_array, tokens * topk, false);
  const int32_t* expertToRank = typedField<int32_t>(o, "expertToRank", napi_int32_array, experts, true);
  int32_t* counts = typedField<int32_t>(o, "counts", napi_int32_array, experts, false);
  int32_t* offsets = typedField<int32_t>(o, "offsets", napi_int32_array, experts, false);
  int32_t* permutation = typedField<int32_t>(o, "permutation", napi_int32_array, tokens * topk, false);
  int32_t* countsPerRank = typedField<int32_t>(o, "countsPerRank", napi_int32_array, ranks, expertToRank == nullptr);
  uint8_t* tokenInRank = typedField<uint8_t>(o, "tokenInRank", napi_uint8_array, tokens * ranks, expertToRank == nullptr);
  runSync(info.Env(), [&] {
    moeLayoutCpu(indices, tokens, topk, experts, expertToRank, ranks, counts, offsets, permutation, countsPerRank, tokenInRank);
  });
  return info.Env().Undefined();
}

namespace {

std::vector<ExpertWeights> expertList(const Napi::Object& o, const char* gateUpName, const char* downName) {
  std::vector<ExpertWeights> out;
  const Napi::Value gu = o.Get(gateUpName), dn = o.Get(downName);
  if (gu.IsUndefined()) return out;
  if (!gu.IsArray() || !dn.IsArray() || gu.As<Napi::Array>().Length() != dn.As<Napi::Array>().Length()) {
    throwJs(o.Env(), ErrorKind::TypeError, std::string(gateUpName) + " and " + downName + " must be arrays of equal length");
  }
  const Napi::Array a = gu.As<Napi::Array>(), b = dn.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Object holder = Napi::Object::New(o.Env());
    holder.Set("gateUp", a.Get(i));
    holder.Set("down", b.Get(i));
    out.push_back({linearField(holder, "gateUp"), linearField(holder, "down")});
  }
  return out;
}

}  // namespace

namespace {

struct ExpertsCall {
  MoeExpertsRequest req;
  int threads = 0;
  Keep keep;
};

std::shared_ptr<ExpertsCall> readExperts(const Napi::CallbackInfo& info, bool keepAlive) {
  const Napi::Object o = argObject(info);
  auto call = std::make_shared<ExpertsCall>();
  Keep* keep = keepAlive ? &call->keep : nullptr;
  MoeExpertsRequest& r = call->req;
  r.tokens = intField(o, "tokens", 0, INT32_MAX);
  r.dim = static_cast<int>(intField(o, "dim", 1, 1 << 20));
  r.topk = static_cast<int>(intField(o, "topk", 1, 1 << 20));
  r.x = typedField<float>(o, "x", napi_float32_array, r.tokens * r.dim, false, keep);
  r.indices = typedField<int32_t>(o, "indices", napi_int32_array, r.tokens * r.topk, false, keep);
  r.weights = typedField<float>(o, "weights", napi_float32_array, r.tokens * r.topk, false, keep);
  r.experts = expertList(o, "gateUp", "down");  // handles hold their weights alive
  r.shared = expertList(o, "sharedGateUp", "sharedDown");
  r.swigluLimit = static_cast<float>(o.Get("swigluLimit").ToNumber().DoubleValue());
  r.out = typedField<float>(o, "out", napi_float32_array, r.tokens * r.dim, false, keep);
  r.stageSeconds = typedField<double>(o, "stageSeconds", napi_float64_array, 3, true, keep);
  call->threads = static_cast<int>(intField(o, "threads", 0, 4096));
  return call;
}

}  // namespace

Napi::Value MoeExperts(const Napi::CallbackInfo& info) {
  auto call = readExperts(info, false);
  AddonState* state = &addonState(info.Env());
  runSync(info.Env(), [call, state] { moeExpertsCpu(call->req, state->pool, call->threads); });
  return info.Env().Undefined();
}

Napi::Value MoeExpertsAsync(const Napi::CallbackInfo& info) {
  auto call = readExperts(info, true);
  AddonState* state = &addonState(info.Env());
  Keep keep = std::move(call->keep);
  return runAsync(info.Env(), [call, state] { moeExpertsCpu(call->req, state->pool, call->threads); }, std::move(keep));
}

}  // namespace engram
