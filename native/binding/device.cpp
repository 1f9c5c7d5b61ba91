// Devices and what the addon was built with.
#include "binding/napi_util.hpp"
#include "binding/registry.hpp"
#include "common/cpu_features.hpp"
#include "common/device.hpp"
#include "hash/hash_cpu_kernel.hpp"

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

EK_EXPORT_FUNCTIONS({"devices", Devices}, {"buildInfo", BuildInfo});

}  // namespace

}  // namespace engram
