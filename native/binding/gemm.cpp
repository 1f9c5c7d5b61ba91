// Projections and their weight formats: fp32 or quantised weights packed for the CPU
// micro-kernels (a handle JS holds), one projection, which kernel runs it, and encoding fp32
// matrices into bf16 / f16 / fp8-e4m3 / MXFP4 codes with UE8M0 block scales and back.
#include "binding/napi_util.hpp"
#include "binding/registry.hpp"
#include "table/convert_ops.hpp"
#include "binding/table_args.hpp"
#include "gemm/gemm_ops.hpp"
#include "v41/v41_ops.hpp"

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

Napi::Value PackLinear(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const int64_t n = intField(o, "n", 1, INT32_MAX);
  const int64_t k = intField(o, "k", 1, INT32_MAX);
  const float* bias = typedField<float>(o, "bias", napi_float32_array, n, true);
  const std::string kernel = stringField(o, "cpuKernel", "auto");
  const WeightFormat format = weightFormatField(o, "format", "f32", true);
  LinearHandle handle;
  if (format == WeightFormat::F32) {
    const float* weight = typedField<float>(o, "weight", napi_float32_array, n * k, false);
    const bool preferBf16 = boolField(o, "preferBf16", false);
    runSync(info.Env(), [&] { handle = packLinear(weight, bias, n, k, kernel, preferBf16); });
  } else {
    // Quantised weights stay in their codes (see WeightCodes).
    WeightCodes codes;
    codes.format = format;
    if (codes.format == WeightFormat::E2M1 && k % 2 != 0) {
      throwJs(info.Env(), ErrorKind::RangeError, "e2m1 weights need an even k, got " + std::to_string(k));
    }
    codes.codes = typedField<uint8_t>(o, "codes", napi_uint8_array, n * weightRowBytes(codes.format, k), false);
    const int64_t blocks = (k + kScaleBlock - 1) / kScaleBlock;
    codes.rowScales = typedField<uint8_t>(o, "scales", napi_uint8_array, n * blocks, !weightFormatScaled(codes.format));
    const bool preferBf16 = boolField(o, "preferBf16", false);
    runSync(info.Env(), [&] { handle = packLinearCodes(codes, bias, n, k, kernel, preferBf16); });
  }
  return wrapLinear(info.Env(), std::move(handle));
}

Napi::Value LinearKernel(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  return Napi::String::New(info.Env(), linearField(o, "weight")->kernel);
}

Napi::Value Linear(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  LinearHandle w = linearField(o, "weight");
  const int64_t m = intField(o, "m", 0, INT32_MAX);
  const float* x = typedField<float>(o, "x", napi_float32_array, m * w->k, false);
  float* y = typedField<float>(o, "out", napi_float32_array, m * w->n, false);
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] { linearCpu(x, m, w->k, *w, y, w->n, state.pool, threads); });
  return info.Env().Undefined();
}

Napi::Value DequantizeBlockFp8(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const int64_t rows = intField(o, "rows", 1, INT32_MAX);
  const int64_t cols = intField(o, "cols", 1, INT32_MAX);
  const int64_t blocks = ((rows + kScaleBlock - 1) / kScaleBlock) * ((cols + kScaleBlock - 1) / kScaleBlock);
  const uint8_t* codes = bufferRegion(o, "codes", "codesByteOffset", rows * cols, false);
  const uint8_t* scales = bufferRegion(o, "scales", "scalesByteOffset", blocks, false);
  float* out = typedField<float>(o, "out", napi_float32_array, rows * cols, false);
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] { dequantizeBlockFp8Cpu(codes, scales, rows, cols, out, state.pool, threads); });
  return info.Env().Undefined();
}

EK_EXPORT_FUNCTIONS(
    {"packLinear", PackLinear},
    {"linearKernel", LinearKernel},
    {"linear", Linear},
    {"quantizeWeights", QuantizeWeights},
    {"dequantizeWeights", DequantizeWeights},
    {"dequantizeBlockFp8", DequantizeBlockFp8});

}  // namespace engram
