// The paper's Engram layer and its parts: packed projections (a handle JS holds), the
// table gather, one projection, and the whole layer forward (sync and async twins).
#include "binding/napi_util.hpp"
#include "binding/registry.hpp"
#include "binding/table_args.hpp"
#include "table/convert_ops.hpp"
#include "engram/engram_ops.hpp"
#include "bench/membench_ops.hpp"

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
  r.heads = static_cast<int>(intField(o, "heads", 1, 1 << 16));
  r.kernelSize = static_cast<int>(intField(o, "kernelSize", 1, 1 << 10));
  r.dilation = static_cast<int>(intField(o, "dilation", 1, 1 << 10));
  r.table = readForwardTable(o, keep, &r.tableOnDevice, &call.pagerCache);
  const int64_t tokens = static_cast<int64_t>(r.batch) * r.seqLen;
  const int64_t streams = tokens * r.hc * r.hidden;
  const int64_t branchWidth = static_cast<int64_t>(r.hc) * r.hidden;
  const int64_t historyRows = static_cast<int64_t>(r.batch) * (r.kernelSize - 1) * r.dilation;
  r.hiddenStates = typedField<float>(o, "hiddenStates", napi_float32_array, streams, false, keep);
  r.rowIdsStride = intField(o, "rowIdsStride", r.heads, INT32_MAX);
  r.rowIdsOffset = intField(o, "rowIdsOffset", 0, r.rowIdsStride - r.heads);
  r.rowIds = rowIdsField(o, tokens * r.rowIdsStride, &r.rowIds64, keep);
  r.keyValue = linearField(o, "keyValue");
  r.norm1 = typedField<float>(o, "norm1", napi_float32_array, branchWidth, false, keep);
  r.norm2 = typedField<float>(o, "norm2", napi_float32_array, branchWidth, false, keep);
  r.convNorm = typedField<float>(o, "convNorm", napi_float32_array, branchWidth, false, keep);
  r.convWeight = typedField<float>(o, "convWeight", napi_float32_array, branchWidth * r.kernelSize, false, keep);
  r.gateEps = static_cast<float>(o.Get("gateEps").ToNumber().DoubleValue());
  r.convEps = static_cast<float>(o.Get("convEps").ToNumber().DoubleValue());
  r.convHistory = typedField<float>(o, "convHistory", napi_float32_array, historyRows * branchWidth, true, keep);
  r.out = typedField<float>(o, "out", napi_float32_array, streams, false, keep);
  r.gates = typedField<float>(o, "gates", napi_float32_array, tokens * r.hc, true, keep);
  r.embeddings = typedField<float>(o, "embeddings", napi_float32_array, tokens * r.heads * r.table.cols, true, keep);
  r.convHistoryOut = typedField<float>(o, "convHistoryOut", napi_float32_array, historyRows * branchWidth, true, keep);
  r.stageSeconds = typedField<double>(o, "stageSeconds", napi_float64_array, 4, true, keep);
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
    engramForwardCuda(call.req, *call.deviceWeights);
  } else {
    engramForwardCpu(call.req, state.pool, call.threads);
  }
}

}  // namespace

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

Napi::Value GatherRows(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const TableView table = readTable(o, nullptr);
  const int64_t tokens = intField(o, "tokens", 0, INT32_MAX);
  const int heads = static_cast<int>(intField(o, "heads", 1, 1 << 16));
  bool ids64 = false;
  const void* ids = rowIdsField(o, tokens * heads, &ids64, nullptr);
  float* out = typedField<float>(o, "out", napi_float32_array, tokens * heads * table.cols, false);
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] { gatherRowsCpu(table, ids, ids64, tokens, heads, out, state.pool, threads); });
  return info.Env().Undefined();
}

// The layers' in-GEMM gather alone (gatherPackedCpu), for the benchmarks.
Napi::Value GatherPacked(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  GatheredRows rows;
  rows.table = readTable(o, nullptr);
  const int64_t tokens = intField(o, "tokens", 0, INT32_MAX);
  rows.heads = static_cast<int>(intField(o, "heads", 1, 1 << 16));
  rows.stride = rows.heads;
  rows.rowIds = rowIdsField(o, tokens * rows.heads, &rows.rowIds64, nullptr);
  const std::string kernel = stringField(o, "kernel", "avx512");
  if (kernel != "avx512-bf16" && kernel != "avx512" && kernel != "avx2" && kernel != "baseline") {
    throwJs(info.Env(), ErrorKind::RangeError, "kernel must be 'avx512-bf16', 'avx512', 'avx2' or 'baseline', got '" + kernel + "'");
  }
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] {
    // Every id is checked first: the packing reads the table unchecked.
    for (int64_t i = 0; i < tokens * rows.heads; ++i) {
      const int64_t id = rows.rowIds64 ? static_cast<const int64_t*>(rows.rowIds)[i] : static_cast<const int32_t*>(rows.rowIds)[i];
      EK_REQUIRE(id >= 0 && id < rows.table.rows, RangeError, "rowIds[" + std::to_string(i) + "] = " + std::to_string(id) + " is outside the table");
    }
    gatherPackedCpu(rows, tokens, kernel, state.pool, threads);
  });
  return info.Env().Undefined();
}

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

// The layer's weights copied to a CUDA device once; the handle frees them when collected.
Napi::Value EngramUploadCuda(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  EngramForwardRequest r;
  r.hc = static_cast<int>(intField(o, "hc", 1, 1 << 10));
  r.hidden = static_cast<int>(intField(o, "hidden", 1, 1 << 20));
  r.heads = static_cast<int>(intField(o, "heads", 1, 1 << 16));
  r.kernelSize = static_cast<int>(intField(o, "kernelSize", 1, 1 << 10));
  r.table = readUploadTable(o, &r.tableOnDevice);
  const int64_t n = static_cast<int64_t>(r.hc + 1) * r.hidden;
  const int64_t k = static_cast<int64_t>(r.heads) * r.table.cols;
  const int64_t branchWidth = static_cast<int64_t>(r.hc) * r.hidden;
  const float* weight = typedField<float>(o, "keyValueWeight", napi_float32_array, n * k, false);
  const float* bias = typedField<float>(o, "keyValueBias", napi_float32_array, n, false);
  r.norm1 = typedField<float>(o, "norm1", napi_float32_array, branchWidth, false);
  r.norm2 = typedField<float>(o, "norm2", napi_float32_array, branchWidth, false);
  r.convNorm = typedField<float>(o, "convNorm", napi_float32_array, branchWidth, false);
  r.convWeight = typedField<float>(o, "convWeight", napi_float32_array, branchWidth * r.kernelSize, false);
  const int device = static_cast<int>(intField(o, "deviceIndex", 0, 1024));
  DeviceWeightsHandle handle;
  runSync(info.Env(), [&] { handle = uploadEngramWeightsCuda(r, weight, bias, device); });
  auto* holder = new DeviceWeightsHandle(std::move(handle));
  return makeHandle(info.Env(), HandleKind::EngramDeviceWeights, holder);
}

}  // namespace engram

namespace engram {

Napi::Value ConvertTable(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const TableView src = readTable(o, nullptr);
  const auto dstDtype = static_cast<TableDtype>(intField(o, "dstDtype", 0, 3));
  uint8_t* dst = bufferRegion(o, "dst", "dstByteOffset", src.rows * src.cols * tableElementBytes(dstDtype), false);
  uint8_t* dstScales = dstDtype == TableDtype::F8E4M3
                           ? bufferRegion(o, "dstScales", "dstScalesByteOffset", src.rows * (src.cols / kScaleBlock), false)
                           : nullptr;
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] { convertTableCpu(src, dst, dstScales, dstDtype, state.pool, threads); });
  return info.Env().Undefined();
}

Napi::Value FillRandom(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const TableView t = readContiguousTable(o, "fillRandom");  // the table to fill
  const TableDtype dtype = t.dtype;
  const int64_t rows = t.rows;
  const int cols = t.cols;
  uint8_t* dst = const_cast<uint8_t*>(t.data);
  uint8_t* scales = const_cast<uint8_t*>(t.scales);
  const uint64_t seed = static_cast<uint64_t>(intField(o, "seed", 0, INT64_MAX));
  const bool normal = stringField(o, "distribution", "normal") == "normal";
  const float scale = static_cast<float>(o.Get("scale").ToNumber().DoubleValue());
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] { fillRandomCpu(dst, scales, dtype, rows, cols, seed, normal, scale, state.pool, threads); });
  return info.Env().Undefined();
}

}  // namespace engram

namespace engram {

Napi::Value PeakGflops(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  const double seconds = o.Get("seconds").ToNumber().DoubleValue();
  double gflops = 0.0;
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] { gflops = fmaPeakGflops(state.pool, threads, seconds > 0 && seconds < 10 ? seconds : 0.2); });
  return Napi::Number::New(info.Env(), gflops);
}

Napi::Value ReadRows(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const TableView t = readContiguousTable(o, "readRows");
  const int32_t* ids = typedField<int32_t>(o, "rowIds", napi_int32_array, -1, false);
  const int64_t count = static_cast<int64_t>(o.Get("rowIds").As<Napi::TypedArray>().ElementLength());
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  const bool withScales = boolField(o, "withScales", false) && t.scales != nullptr;
  uint64_t fold = 0;
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] {
    fold = readRowsCpu(t.data, t.rows, static_cast<int64_t>(t.cols) * tableElementBytes(t.dtype), ids, count, state.pool, threads,
                       withScales ? t.scales : nullptr, withScales ? t.cols / kScaleBlock : 0);
  });
  return Napi::Number::New(info.Env(), static_cast<double>(fold & 0xffffffffu));
}

EK_EXPORT_FUNCTIONS(
    {"packLinear", PackLinear},
    {"linear", Linear},
    {"linearKernel", LinearKernel},
    {"gatherRows", GatherRows},
    {"engramForward", EngramForward},
    {"convertTable", ConvertTable},
    {"peakGflops", PeakGflops},
    {"readRows", ReadRows},
    {"gatherPacked", GatherPacked},
    {"fillRandom", FillRandom},
    {"engramUploadCuda", EngramUploadCuda},
    {"engramForwardAsync", EngramForwardAsync});

}  // namespace engram
