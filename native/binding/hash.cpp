// ngramHashes / ngramHashesAsync: unpack one hashing call into a HashRequest.
#include "binding/napi_util.hpp"
#include "binding/registry.hpp"
#include "common/device.hpp"
#include "hash/hash_ops.hpp"

namespace engram {

namespace {

struct HashCall {
  HashRequest req;
  std::string device;
  int deviceIndex = 0;
  int threads = 0;
  std::string cpuKernel;
  Keep keep;
};

HashCall readHashCall(const Napi::CallbackInfo& info, bool keepAlive) {
  const Napi::Object o = argObject(info);
  HashCall call;
  auto* keep = keepAlive ? &call.keep : nullptr;
  HashRequest& r = call.req;
  HashGeometry& g = r.geometry;
  g.batch = static_cast<int>(intField(o, "batch", 0, INT32_MAX));
  g.seqLen = static_cast<int>(intField(o, "seqLen", 0, INT32_MAX));
  g.layers = static_cast<int>(intField(o, "layers", 1, 1 << 16));
  g.maxNgram = static_cast<int>(intField(o, "maxNgram", 2, kMaxNgram));
  g.headsPerNgram = static_cast<int>(intField(o, "headsPerNgram", 1, 1 << 16));
  g.padId = intField(o, "padId", 0, INT32_MAX);
  r.compressedVocabSize = static_cast<int32_t>(intField(o, "compressedVocabSize", 1, INT32_MAX));
  const int64_t positions = static_cast<int64_t>(g.batch) * g.seqLen;
  const int64_t cells = static_cast<int64_t>(g.layers) * g.cols();
  r.ids = typedField<int32_t>(o, "ids", napi_int32_array, positions, false, keep);
  r.mask = typedField<uint8_t>(o, "mask", napi_uint8_array, positions, true, keep);
  r.history = typedField<int32_t>(o, "history", napi_int32_array, static_cast<int64_t>(g.batch) * (g.maxNgram - 1), true, keep);
  r.lookup = typedField<int32_t>(o, "lookup", napi_int32_array, -1, false, keep);
  r.vocabSize = static_cast<int32_t>(o.Get("lookup").As<Napi::TypedArray>().ElementLength());
  const int64_t* mult = typedField<int64_t>(o, "multipliers", napi_bigint64_array, static_cast<int64_t>(g.layers) * g.maxNgram, false);
  r.multipliers.assign(mult, mult + static_cast<int64_t>(g.layers) * g.maxNgram);
  const uint64_t* primes = typedField<uint64_t>(o, "primes", napi_biguint64_array, cells, false);
  r.primes.assign(primes, primes + cells);
  const int64_t* offsets = typedField<int64_t>(o, "offsets", napi_bigint64_array, cells, true);
  if (offsets != nullptr) r.offsets.assign(offsets, offsets + cells);
  const Napi::Value out = o.Get("out");
  r.int64Output = out.IsTypedArray() && out.As<Napi::TypedArray>().TypedArrayType() == napi_bigint64_array;
  if (r.int64Output) {
    r.out = typedField<int64_t>(o, "out", napi_bigint64_array, positions * cells, false, keep, Access::Write);
  } else {
    r.out = typedField<int32_t>(o, "out", napi_int32_array, positions * cells, false, keep, Access::Write);
  }
  r.historyOut = typedField<int32_t>(o, "historyOut", napi_int32_array, static_cast<int64_t>(g.batch) * (g.maxNgram - 1), true, keep, Access::Write);
  call.device = stringField(o, "device", "cpu");
  if (call.device != "cpu" && call.device != "cuda") {
    throwJs(info.Env(), ErrorKind::RangeError, "device must be 'cpu' or 'cuda', got '" + call.device + "'");
  }
  call.deviceIndex = static_cast<int>(intField(o, "deviceIndex", 0, 1024));
  call.threads = static_cast<int>(intField(o, "threads", 0, 4096));
  call.cpuKernel = stringField(o, "cpuKernel", "auto");
  return call;
}

std::function<void()> hashWork(std::shared_ptr<HashCall> call, AddonState* state) {
  return [call, state] {
    if (call->device == "cuda") {
      EK_CUDA(call->deviceIndex, ngramHashesCuda(call->req, call->deviceIndex));
    } else {
      ngramHashesCpu(call->req, state->pool, call->threads, call->cpuKernel);
    }
  };
}

}  // namespace

Napi::Value NgramHashes(const Napi::CallbackInfo& info) {
  auto call = std::make_shared<HashCall>(readHashCall(info, false));
  runSync(info.Env(), hashWork(call, &addonState(info.Env())));
  return info.Env().Undefined();
}

Napi::Value NgramHashesAsync(const Napi::CallbackInfo& info) {
  auto call = std::make_shared<HashCall>(readHashCall(info, true));
  auto keep = std::move(call->keep);
  return runAsync(info.Env(), hashWork(call, &addonState(info.Env())), std::move(keep));
}

EK_EXPORT_FUNCTIONS(
    {"ngramHashes", NgramHashes},
    {"ngramHashesAsync", NgramHashesAsync});

}  // namespace engram
