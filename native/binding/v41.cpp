// DeepSeek-V4.1's Engram layer: forward (sync and async) and its weights uploaded to a
// CUDA device.
#include <limits>

#include "binding/napi_util.hpp"
#include "binding/registry.hpp"
#include "common/device.hpp"
#include "binding/table_args.hpp"
#include "v41/v41_ops.hpp"

namespace engram {

namespace {

using V41DeviceHandle = std::shared_ptr<DeviceV41Weights>;

struct V41Call {
  V41ForwardRequest req;
  int threads = 0;
  V41DeviceHandle deviceWeights;  // set: run on CUDA
  std::shared_ptr<void> pagerCache;  // set: the table is a CUDA pager's device cache
  Keep keep;
};

void runV41(V41Call& call, AddonState& state) {
  if (call.deviceWeights) {
    EK_CUDA(0, v41ForwardCuda(call.req, *call.deviceWeights));
  } else {
    v41ForwardCpu(call.req, state.pool, call.threads);
  }
}

V41Call readV41(const Napi::CallbackInfo& info, bool keepAlive) {
  const Napi::Object o = argObject(info);
  V41Call call;
  Keep* keep = keepAlive ? &call.keep : nullptr;
  V41ForwardRequest& r = call.req;
  r.batch = static_cast<int>(intField(o, "batch", 0, INT32_MAX));
  r.seqLen = static_cast<int>(intField(o, "seqLen", 0, INT32_MAX));
  r.hc = static_cast<int>(intField(o, "hc", 1, 1 << 10));
  r.hidden = static_cast<int>(intField(o, "hidden", 1, 1 << 20));
  r.rowsPerToken = static_cast<int>(intField(o, "rowsPerToken", 1, 1 << 16));
  r.table = readForwardTable(o, keep, &r.tableOnDevice, &r.tableDevice, &call.pagerCache);
  const int64_t tokens = static_cast<int64_t>(r.batch) * r.seqLen;
  r.rowIdsStride = intField(o, "rowIdsStride", r.rowsPerToken, INT32_MAX);
  r.rowIdsOffset = intField(o, "rowIdsOffset", 0, r.rowIdsStride - r.rowsPerToken);
  r.rowIds = rowIdsField(o, tokens * r.rowIdsStride, &r.rowIds64, keep);
  r.hiddenStreams = typedField<float>(o, "hiddenStreams", napi_float32_array, tokens * r.hc * r.hidden, false, keep);
  r.wkv = linearField(o, "wkv");
  r.qWeight = typedField<float>(o, "qWeight", napi_float32_array, static_cast<int64_t>(r.hc) * r.hidden, false, keep);
  r.kWeight = typedField<float>(o, "kWeight", napi_float32_array, static_cast<int64_t>(r.hc) * r.hidden, false, keep);
  r.eps = static_cast<float>(floatField(o, "eps", 0, std::numeric_limits<float>::max()));
  r.tokenMask = typedField<uint8_t>(o, "tokenMask", napi_uint8_array, tokens, true, keep);
  r.out = typedField<float>(o, "out", napi_float32_array, tokens * r.hc * r.hidden, false, keep, Access::Write);
  r.gates = typedField<float>(o, "gates", napi_float32_array, tokens * r.hc, true, keep, Access::Write);
  r.rows = typedField<float>(o, "rows", napi_float32_array, tokens * r.rowsPerToken * r.table.cols, true, keep, Access::Write);
  r.stageSeconds = typedField<double>(o, "stageSeconds", napi_float64_array, 3, true, keep, Access::Write);
  call.threads = static_cast<int>(intField(o, "threads", 0, 4096));
  const Napi::Value dw = o.Get("deviceWeights");
  if (!dw.IsUndefined()) {
    call.deviceWeights = requireHandle<V41DeviceHandle>(o.Env(), dw, HandleKind::V41DeviceWeights, "deviceWeights",
                                                        "a handle from v41UploadCuda");
  }
  return call;
}

}  // namespace

Napi::Value V41Forward(const Napi::CallbackInfo& info) {
  auto call = std::make_shared<V41Call>(readV41(info, false));
  AddonState* state = &addonState(info.Env());
  runSync(info.Env(), [call, state] { runV41(*call, *state); });
  return info.Env().Undefined();
}

Napi::Value V41ForwardAsync(const Napi::CallbackInfo& info) {
  auto call = std::make_shared<V41Call>(readV41(info, true));
  AddonState* state = &addonState(info.Env());
  Keep keep = std::move(call->keep);
  return runAsync(info.Env(), [call, state] { runV41(*call, *state); }, std::move(keep));
}

namespace {

struct V41UploadCall {
  V41ForwardRequest r;
  const float* wkv = nullptr;
  int device = 0;
  Keep keep;
  V41DeviceHandle handle;
};

std::shared_ptr<V41UploadCall> readV41Upload(const Napi::CallbackInfo& info, bool keepAlive) {
  const Napi::Object o = argObject(info);
  auto call = std::make_shared<V41UploadCall>();
  Keep* keep = keepAlive ? &call->keep : nullptr;
  V41ForwardRequest& r = call->r;
  r.hc = static_cast<int>(intField(o, "hc", 1, 1 << 10));
  r.hidden = static_cast<int>(intField(o, "hidden", 1, 1 << 20));
  r.rowsPerToken = static_cast<int>(intField(o, "rowsPerToken", 1, 1 << 16));
  r.table = readUploadTable(o, &r.tableOnDevice, keep);
  const int64_t n = static_cast<int64_t>(r.hc + 1) * r.hidden;
  const int64_t k = static_cast<int64_t>(r.rowsPerToken) * r.table.cols;
  call->wkv = typedField<float>(o, "wkv", napi_float32_array, n * k, false, keep);
  r.qWeight = typedField<float>(o, "qWeight", napi_float32_array, static_cast<int64_t>(r.hc) * r.hidden, false, keep);
  r.kWeight = typedField<float>(o, "kWeight", napi_float32_array, static_cast<int64_t>(r.hc) * r.hidden, false, keep);
  call->device = static_cast<int>(intField(o, "deviceIndex", 0, 1024));
  return call;
}

}  // namespace

// The layer's weights copied to a CUDA device once (wkv as fp32); freed with the handle.
Napi::Value V41UploadCuda(const Napi::CallbackInfo& info) {
  auto call = readV41Upload(info, false);
  runSync(info.Env(), [&] { EK_CUDA(call->device, call->handle = uploadV41WeightsCuda(call->r, call->wkv, call->device)); });
  return makeHandle(info.Env(), HandleKind::V41DeviceWeights, new V41DeviceHandle(std::move(call->handle)));
}

// The same on a worker thread (the event loop stays free during a large table's upload).
Napi::Value V41UploadCudaAsync(const Napi::CallbackInfo& info) {
  auto call = readV41Upload(info, true);
  Keep keep = std::move(call->keep);
  return runAsync(
      info.Env(), [call] { EK_CUDA(call->device, call->handle = uploadV41WeightsCuda(call->r, call->wkv, call->device)); }, std::move(keep),
      [call](Napi::Env env) -> Napi::Value { return makeHandle(env, HandleKind::V41DeviceWeights, new V41DeviceHandle(std::move(call->handle))); });
}

EK_EXPORT_FUNCTIONS(
    {"v41Forward", V41Forward},
    {"v41ForwardAsync", V41ForwardAsync},
    {"v41UploadCuda", V41UploadCuda},
    {"v41UploadCudaAsync", V41UploadCudaAsync});

}  // namespace engram
