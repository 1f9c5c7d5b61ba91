// MoE routing and dispatch layout.
#include "bindings.hpp"
#include "moe_ops.hpp"

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

}  // namespace engram
