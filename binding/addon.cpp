// Module entry: registers the exported functions and owns the per-instance state.
#include "bindings.hpp"
#include "device.hpp"
#include "cpu_features.hpp"
#include "hash_cpu_kernel.hpp"

namespace engram {

namespace {

Napi::Value Devices(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  for (const DeviceInfo& d : listDevices()) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", d.index);
    o.Set("name", d.name);
    o.Set("computeCapability", std::to_string(d.computeMajor) + "." + std::to_string(d.computeMinor));
    o.Set("totalMemory", static_cast<double>(d.totalMemory));
    o.Set("multiprocessors", d.multiprocessors);
    out.Set(i++, o);
  }
  return out;
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("cuda", builtWithCuda());
  o.Set("cpuThreads", addonState(env).pool.maxThreads());
  o.Set("deviceUnavailableReason", deviceUnavailableReason());
  o.Set("cpuKernel", cpuHashKernelName());
  Napi::Array features = Napi::Array::New(env);
  uint32_t n = 0;
  if (cpuHasAvx2()) features.Set(n++, "avx2");
  if (cpuHasAvx512()) features.Set(n++, "avx512");
  if (cpuHasAvx512Bf16()) features.Set(n++, "avx512bf16");
  o.Set("cpuFeatures", features);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonState());
  exports.Set("devices", Napi::Function::New(env, Devices, "devices"));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  exports.Set("ngramHashes", Napi::Function::New(env, NgramHashes, "ngramHashes"));
  exports.Set("ngramHashesAsync", Napi::Function::New(env, NgramHashesAsync, "ngramHashesAsync"));
  exports.Set("packLinear", Napi::Function::New(env, PackLinear, "packLinear"));
  exports.Set("linear", Napi::Function::New(env, Linear, "linear"));
  exports.Set("linearKernel", Napi::Function::New(env, LinearKernel, "linearKernel"));
  exports.Set("gatherRows", Napi::Function::New(env, GatherRows, "gatherRows"));
  exports.Set("engramForward", Napi::Function::New(env, EngramForward, "engramForward"));
  exports.Set("convertTable", Napi::Function::New(env, ConvertTable, "convertTable"));
  exports.Set("peakGflops", Napi::Function::New(env, PeakGflops, "peakGflops"));
  exports.Set("readRows", Napi::Function::New(env, ReadRows, "readRows"));
  exports.Set("adviseHugePages", Napi::Function::New(env, AdviseHugePages, "adviseHugePages"));
  exports.Set("adviseRandom", Napi::Function::New(env, AdviseRandom, "adviseRandom"));
  exports.Set("v41Forward", Napi::Function::New(env, V41Forward, "v41Forward"));
  exports.Set("v41ForwardAsync", Napi::Function::New(env, V41ForwardAsync, "v41ForwardAsync"));
  exports.Set("v41UploadCuda", Napi::Function::New(env, V41UploadCuda, "v41UploadCuda"));
  exports.Set("dequantizeBlockFp8", Napi::Function::New(env, DequantizeBlockFp8, "dequantizeBlockFp8"));
  exports.Set("quantizeWeights", Napi::Function::New(env, QuantizeWeights, "quantizeWeights"));
  exports.Set("gatherPacked", Napi::Function::New(env, GatherPacked, "gatherPacked"));
  exports.Set("moeUploadCuda", Napi::Function::New(env, MoeUploadCuda, "moeUploadCuda"));
  exports.Set("moeForwardCuda", Napi::Function::New(env, MoeForwardCuda, "moeForwardCuda"));
  exports.Set("moeForwardCudaAsync", Napi::Function::New(env, MoeForwardCudaAsync, "moeForwardCudaAsync"));
  exports.Set("dequantizeWeights", Napi::Function::New(env, DequantizeWeights, "dequantizeWeights"));
  exports.Set("moeRoute", Napi::Function::New(env, MoeRoute, "moeRoute"));
  exports.Set("moeLayout", Napi::Function::New(env, MoeLayout, "moeLayout"));
  exports.Set("moeRouteAsync", Napi::Function::New(env, MoeRouteAsync, "moeRouteAsync"));
  exports.Set("moeLayoutAsync", Napi::Function::New(env, MoeLayoutAsync, "moeLayoutAsync"));
  exports.Set("moeExperts", Napi::Function::New(env, MoeExperts, "moeExperts"));
  exports.Set("moeExpertsAsync", Napi::Function::New(env, MoeExpertsAsync, "moeExpertsAsync"));
  exports.Set("mapFileHandle", Napi::Function::New(env, MapFileHandle, "mapFileHandle"));
  exports.Set("mappedFileView", Napi::Function::New(env, MappedFileView, "mappedFileView"));
  exports.Set("mappedFileSize", Napi::Function::New(env, MappedFileSize, "mappedFileSize"));
  exports.Set("mapFile", Napi::Function::New(env, MapFile, "mapFile"));
  exports.Set("fillRandom", Napi::Function::New(env, FillRandom, "fillRandom"));
  exports.Set("engramUploadCuda", Napi::Function::New(env, EngramUploadCuda, "engramUploadCuda"));
  exports.Set("engramForwardAsync", Napi::Function::New(env, EngramForwardAsync, "engramForwardAsync"));
  exports.Set("pagerCreate", Napi::Function::New(env, PagerCreate, "pagerCreate"));
  exports.Set("pagerAcquire", Napi::Function::New(env, PagerAcquire, "pagerAcquire"));
  exports.Set("pagerWait", Napi::Function::New(env, PagerWait, "pagerWait"));
  exports.Set("pagerWaitAsync", Napi::Function::New(env, PagerWaitAsync, "pagerWaitAsync"));
  exports.Set("pagerRelease", Napi::Function::New(env, PagerRelease, "pagerRelease"));
  exports.Set("pagerSetHotRows", Napi::Function::New(env, PagerSetHotRows, "pagerSetHotRows"));
  exports.Set("pagerStats", Napi::Function::New(env, PagerStatsOf, "pagerStats"));
  exports.Set("pagerResetStats", Napi::Function::New(env, PagerResetStats, "pagerResetStats"));
  exports.Set("prefaultRegion", Napi::Function::New(env, PrefaultRegion, "prefaultRegion"));
  exports.Set("readFileRegion", Napi::Function::New(env, ReadFileRegion, "readFileRegion"));
  exports.Set("copyRegion", Napi::Function::New(env, CopyRegion, "copyRegion"));
  exports.Set("dropFileCache", Napi::Function::New(env, DropFileCache, "dropFileCache"));
  return exports;
}

}  // namespace

}  // namespace engram

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return engram::Init(env, exports); }

NODE_API_MODULE(engram_kernels, InitModule)
