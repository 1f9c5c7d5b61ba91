// The paper's Engram layer: the whole forward (sync and async twins) and its weights
// uploaded to a CUDA device.
#include <limits>

#include "binding/napi_util.hpp"
#include "binding/registry.hpp"
#include "common/device.hpp"
#include "binding/table_args.hpp"
#include "engram/engram_ops.hpp"

namespace engram {

namespace {

using DeviceWeightsHandle = std::shared_ptr<DeviceEngramWeights>;

struct ForwardCall {
  EngramForwardRequest req;
  int threads = 0;
  DeviceWeightsHandle deviceWeights;  // set: run on CUDA
  std::shared_ptr<void> pagerCache;   // set: the table is a CUDA pager's device cache
  Keep keep;
};

ForwardCall readForward(const Napi::CallbackInfo& info, bool keepAlive) {
  const Napi::Object o = argObject(info);
  ForwardCall call;
  Keep* keep = keepAlive ? &call.keep : nullptr;
  EngramForwardRequest& r = call.req;
  r.batch = static_cast<int>(intField(o, "batch", 0, INT32_MAX));
  r.seqLen = static_cast<int>(intField(o, "seqLen", 0, INT32_MAX));
  r.hc = static_cast<int>(intField(o, "hc", 1, 1 << 10));
  r.hidden = static_cast<int>(intField(o, "hidden", 1, 1 << 20));
  r.rowsPerToken = static_cast<int>(intField(o, "rowsPerToken", 1, 1 << 16));
  r.kernelSize = static_cast<int>(intField(o, "kernelSize", 1, 1 << 10));
  r.dilation = static_cast<int>(intField(o, "dilation", 1, 1 << 10));
  r.table = readForwardTable(o, keep, &r.tableOnDevice, &r.tableDevice, &call.pagerCache);
  const int64_t tokens = static_cast<int64_t>(r.batch) * r.seqLen;
  const int64_t streams = tokens * r.hc * r.hidden;
  const int64_t branchWidth = static_cast<int64_t>(r.hc) * r.hidden;
  const int64_t historyRows = static_cast<int64_t>(r.batch) * (r.kernelSize - 1) * r.dilation;
  // Only the gates read the hidden states, after the gather and the projections: an async
  // call copies them in while those run.
  r.hiddenStates = typedField<float>(o, "hiddenStates", napi_float32_array, streams, false, keep, Access::ReadLater);
  if (keep != nullptr) r.hiddenReady = keep->lateInputs();
  r.rowIdsStride = intField(o, "rowIdsStride", r.rowsPerToken, INT32_MAX);
  r.rowIdsOffset = intField(o, "rowIdsOffset", 0, r.rowIdsStride - r.rowsPerToken);
  r.rowIds = rowIdsField(o, tokens * r.rowIdsStride, &r.rowIds64, keep);
  r.keyValue = linearField(o, "keyValue");
  r.norm1 = typedField<float>(o, "norm1", napi_float32_array, branchWidth, false, keep);
  r.norm2 = typedField<float>(o, "norm2", napi_float32_array, branchWidth, false, keep);
  r.convNorm = typedField<float>(o, "convNorm", napi_float32_array, branchWidth, false, keep);
  r.convWeight = typedField<float>(o, "convWeight", napi_float32_array, branchWidth * r.kernelSize, false, keep);
  r.gateEps = static_cast<float>(floatField(o, "gateEps", 0, std::numeric_limits<float>::max()));
  r.convEps = static_cast<float>(floatField(o, "convEps", 0, std::numeric_limits<float>::max()));
  r.convHistory = typedField<float>(o, "convHistory", napi_float32_array, historyRows * branchWidth, true, keep);
  r.out = typedField<float>(o, "out", napi_float32_array, streams, false, keep, Access::Write);
  r.gates = typedField<float>(o, "gates", napi_float32_array, tokens * r.hc, true, keep, Access::Write);
  r.embeddings = typedField<float>(o, "embeddings", napi_float32_array, tokens * r.rowsPerToken * r.table.cols, true, keep, Access::Write);
  r.convHistoryOut = typedField<float>(o, "convHistoryOut", napi_float32_array, historyRows * branchWidth, true, keep, Access::Write);
  r.stageSeconds = typedField<double>(o, "stageSeconds", napi_float64_array, 4, true, keep, Access::Write);
  call.threads = static_cast<int>(intField(o, "threads", 0, 4096));
  const Napi::Value dw = o.Get("deviceWeights");
  if (!dw.IsUndefined()) {
    call.deviceWeights = requireHandle<DeviceWeightsHandle>(o.Env(), dw, HandleKind::EngramDeviceWeights, "deviceWeights",
                                                            "a handle from engramUploadCuda");
  }
  return call;
}

void runForward(ForwardCall& call, AddonState& state) {
  if (call.deviceWeights) {
    EK_CUDA(0, engramForwardCuda(call.req, *call.deviceWeights));
  } else {
    engramForwardCpu(call.req, state.pool, call.threads);
  }
}

}  // namespace

Napi::Value EngramForward(const Napi::CallbackInfo& info) {
  auto call = std::make_shared<ForwardCall>(readForward(info, false));
  AddonState* state = &addonState(info.Env());
  runSync(info.Env(), [call, state] { runForward(*call, *state); });
  return info.Env().Undefined();
}

Napi::Value EngramForwardAsync(const Napi::CallbackInfo& info) {
  auto call = std::make_shared<ForwardCall>(readForward(info, true));
  AddonState* state = &addonState(info.Env());
  Keep keep = std::move(call->keep);
  return runAsync(info.Env(), [call, state] { runForward(*call, *state); }, std::move(keep));
}

namespace {

struct UploadCall {
  EngramForwardRequest r;
  const float* weight = nullptr;
  const float* bias = nullptr;
  int device = 0;
  Keep keep;
  DeviceWeightsHandle handle;
};

std::shared_ptr<UploadCall> readUpload(const Napi::CallbackInfo& info, bool keepAlive) {
  const Napi::Object o = argObject(info);
  auto call = std::make_shared<UploadCall>();
  Keep* keep = keepAlive ? &call->keep : nullptr;
  EngramForwardRequest& r = call->r;
  r.hc = static_cast<int>(intField(o, "hc", 1, 1 << 10));
  r.hidden = static_cast<int>(intField(o, "hidden", 1, 1 << 20));
  r.rowsPerToken = static_cast<int>(intField(o, "rowsPerToken", 1, 1 << 16));
  r.kernelSize = static_cast<int>(intField(o, "kernelSize", 1, 1 << 10));
  r.table = readUploadTable(o, &r.tableOnDevice, keep);
  const int64_t n = static_cast<int64_t>(r.hc + 1) * r.hidden;
  const int64_t k = static_cast<int64_t>(r.rowsPerToken) * r.table.cols;
  const int64_t branchWidth = static_cast<int64_t>(r.hc) * r.hidden;
  call->weight = typedField<float>(o, "keyValueWeight", napi_float32_array, n * k, false, keep);
  call->bias = typedField<float>(o, "keyValueBias", napi_float32_array, n, false, keep);
  r.norm1 = typedField<float>(o, "norm1", napi_float32_array, branchWidth, false, keep);
  r.norm2 = typedField<float>(o, "norm2", napi_float32_array, branchWidth, false, keep);
  r.convNorm = typedField<float>(o, "convNorm", napi_float32_array, branchWidth, false, keep);
  r.convWeight = typedField<float>(o, "convWeight", napi_float32_array, branchWidth * r.kernelSize, false, keep);
  call->device = static_cast<int>(intField(o, "deviceIndex", 0, 1024));
  return call;
}

}  // namespace

// The layer's weights copied to a CUDA device once; the handle frees them when collected.
Napi::Value EngramUploadCuda(const Napi::CallbackInfo& info) {
  auto call = readUpload(info, false);
  runSync(info.Env(), [&] { EK_CUDA(call->device, call->handle = uploadEngramWeightsCuda(call->r, call->weight, call->bias, call->device)); });
  return makeHandle(info.Env(), HandleKind::EngramDeviceWeights, new DeviceWeightsHandle(std::move(call->handle)));
}

// The same on a worker thread: a multi-GB table's upload keeps the event loop free.
Napi::Value EngramUploadCudaAsync(const Napi::CallbackInfo& info) {
  auto call = readUpload(info, true);
  Keep keep = std::move(call->keep);
  return runAsync(
      info.Env(), [call] { EK_CUDA(call->device, call->handle = uploadEngramWeightsCuda(call->r, call->weight, call->bias, call->device)); }, std::move(keep),
      [call](Napi::Env env) -> Napi::Value { return makeHandle(env, HandleKind::EngramDeviceWeights, new DeviceWeightsHandle(std::move(call->handle))); });
}

EK_EXPORT_FUNCTIONS(
    {"engramForward", EngramForward},
    {"engramForwardAsync", EngramForwardAsync},
    {"engramUploadCuda", EngramUploadCuda},
    {"engramUploadCudaAsync", EngramUploadCudaAsync});

}  // namespace engram
