// DeepSeek-V4.1's Engram layer: forward (sync and async) and the fp8 block-scaled weight
// dequantisation its wkv needs.
#include "bindings.hpp"
#include "table_args.hpp"
#include "v41_ops.hpp"

namespace engram {

namespace {

struct V41Call {
  V41ForwardRequest req;
  int threads = 0;
  Keep keep;
};

V41Call readV41(const Napi::CallbackInfo& info, bool keepAlive) {
  const Napi::Object o = argObject(info);
  V41Call call;
  Keep* keep = keepAlive ? &call.keep : nullptr;
  V41ForwardRequest& r = call.req;
  r.batch = static_cast<int>(intField(o, "batch", 0, INT32_MAX));
  r.seqLen = static_cast<int>(intField(o, "seqLen", 0, INT32_MAX));
  r.hc = static_cast<int>(intField(o, "hc", 1, 1 << 10));
  r.hidden = static_cast<int>(intField(o, "hidden", 1, 1 << 20));
  r.cols = static_cast<int>(intField(o, "cols", 1, 1 << 16));
  r.table = readTable(o, keep);
  const int64_t tokens = static_cast<int64_t>(r.batch) * r.seqLen;
  r.rowIdsStride = intField(o, "rowIdsStride", r.cols, INT32_MAX);
  r.rowIdsOffset = intField(o, "rowIdsOffset", 0, r.rowIdsStride - r.cols);
  r.rowIds = rowIdsField(o, tokens * r.rowIdsStride, &r.rowIds64, keep);
  r.hiddenStreams = typedField<float>(o, "hiddenStreams", napi_float32_array, tokens * r.hc * r.hidden, false, keep);
  r.wkv = linearField(o, "wkv");
  r.qWeight = typedField<float>(o, "qWeight", napi_float32_array, static_cast<int64_t>(r.hc) * r.hidden, false, keep);
  r.kWeight = typedField<float>(o, "kWeight", napi_float32_array, static_cast<int64_t>(r.hc) * r.hidden, false, keep);
  r.eps = static_cast<float>(o.Get("eps").ToNumber().DoubleValue());
  r.tokenMask = typedField<uint8_t>(o, "tokenMask", napi_uint8_array, tokens, true, keep);
  r.out = typedField<float>(o, "out", napi_float32_array, tokens * r.hc * r.hidden, false, keep);
  r.gates = typedField<float>(o, "gates", napi_float32_array, tokens * r.hc, true, keep);
  r.rows = typedField<float>(o, "rows", napi_float32_array, tokens * r.cols * r.table.cols, true, keep);
  r.stageSeconds = typedField<double>(o, "stageSeconds", napi_float64_array, 3, true, keep);
  call.threads = static_cast<int>(intField(o, "threads", 0, 4096));
  return call;
}

}  // namespace

Napi::Value V41Forward(const Napi::CallbackInfo& info) {
  auto call = std::make_shared<V41Call>(readV41(info, false));
  AddonState* state = &addonState(info.Env());
  runSync(info.Env(), [call, state] { v41ForwardCpu(call->req, state->pool, call->threads); });
  return info.Env().Undefined();
}

Napi::Value V41ForwardAsync(const Napi::CallbackInfo& info) {
  auto call = std::make_shared<V41Call>(readV41(info, true));
  AddonState* state = &addonState(info.Env());
  Keep keep = std::move(call->keep);
  return runAsync(info.Env(), [call, state] { v41ForwardCpu(call->req, state->pool, call->threads); }, std::move(keep));
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

}  // namespace engram
