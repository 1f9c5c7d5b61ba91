// Quantised projection weights: encoding fp32 matrices into bf16 / f16 / fp8-e4m3 /
// MXFP4 codes with UE8M0 block scales, and decoding them back (tests and tools).
#include "binding/napi_util.hpp"
#include "binding/registry.hpp"
#include "table/convert_ops.hpp"
#include "binding/napi_util.hpp"
#include "binding/table_args.hpp"

namespace engram {

namespace {

struct WeightArgs {
  WeightFormat format;
  int64_t n, k;
  int blockRows;
  int64_t codeBytes, scaleBytes;
};

WeightArgs readWeightArgs(const Napi::Object& o) {
  WeightArgs a{};
  a.format = weightFormatField(o, "format", "", false);
  a.n = intField(o, "n", 1, INT32_MAX);
  a.k = intField(o, "k", 1, INT32_MAX);
  a.blockRows = static_cast<int>(intField(o, "blockRows", 1, 1 << 20));
  if (a.format == WeightFormat::E2M1 && a.k % 2 != 0) {
    throwJs(o.Env(), ErrorKind::RangeError, "e2m1 weights need an even k, got " + std::to_string(a.k));
  }
  a.codeBytes = a.n * weightRowBytes(a.format, a.k);
  a.scaleBytes = weightFormatScaled(a.format)
                     ? ((a.n + a.blockRows - 1) / a.blockRows) * ((a.k + kScaleBlock - 1) / kScaleBlock)
                     : 0;
  return a;
}

}  // namespace

Napi::Value QuantizeWeights(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const WeightArgs a = readWeightArgs(o);
  const float* w = typedField<float>(o, "weight", napi_float32_array, a.n * a.k, false);
  uint8_t* codes = typedField<uint8_t>(o, "codes", napi_uint8_array, a.codeBytes, false);
  uint8_t* scales = typedField<uint8_t>(o, "scales", napi_uint8_array, a.scaleBytes, a.scaleBytes == 0);
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] { quantizeWeightsCpu(w, a.n, a.k, a.format, a.blockRows, codes, scales, state.pool, threads); });
  return info.Env().Undefined();
}

Napi::Value DequantizeWeights(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const WeightArgs a = readWeightArgs(o);
  const uint8_t* codes = typedField<uint8_t>(o, "codes", napi_uint8_array, a.codeBytes, false);
  const uint8_t* scales = typedField<uint8_t>(o, "scales", napi_uint8_array, a.scaleBytes, a.scaleBytes == 0);
  float* out = typedField<float>(o, "out", napi_float32_array, a.n * a.k, false);
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] { dequantizeWeightsCpu(codes, scales, a.n, a.k, a.format, a.blockRows, out, state.pool, threads); });
  return info.Env().Undefined();
}

EK_EXPORT_FUNCTIONS(
    {"quantizeWeights", QuantizeWeights},
    {"dequantizeWeights", DequantizeWeights});

}  // namespace engram
