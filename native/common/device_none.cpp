// CPU-only build (ENGRAM_CUDA=OFF or no nvcc): no devices, and CUDA entry points refuse.
#include "common/common.hpp"
#include "common/device.hpp"
#include "engram/engram_ops.hpp"
#include "hash/hash_ops.hpp"
#include "moe/moe_ops.hpp"
#include "pager/pager.hpp"
#include "v41/v41_ops.hpp"

namespace engram {

bool builtWithCuda() { return false; }
std::vector<DeviceInfo> listDevices() { return {}; }
std::string deviceUnavailableReason() { return "this build of engram-kernels has no CUDA backend (built with ENGRAM_CUDA=OFF or without nvcc)"; }
void requireDevice(int) { EK_THROW(Error, "device 'cuda' was requested but " + deviceUnavailableReason()); }
void ngramHashesCuda(const HashRequest&, int device) { requireDevice(device); }

struct DeviceEngramWeights {};
std::shared_ptr<DeviceEngramWeights> uploadEngramWeightsCuda(const EngramForwardRequest&, const float*, const float*,
                                                             int device) {
  requireDevice(device);
  return nullptr;
}
void engramForwardCuda(const EngramForwardRequest&, const DeviceEngramWeights&) { requireDevice(0); }

struct DeviceV41Weights {};
std::shared_ptr<DeviceV41Weights> uploadV41WeightsCuda(const V41ForwardRequest&, const float*, int device) {
  requireDevice(device);
  return nullptr;
}
void v41ForwardCuda(const V41ForwardRequest&, const DeviceV41Weights&) { requireDevice(0); }

struct DeviceMoeWeights {};
std::shared_ptr<DeviceMoeWeights> uploadMoeWeightsCuda(const MoeDeviceUpload&, int device) {
  requireDevice(device);
  return nullptr;
}
void moeForwardCuda(const MoeCudaRequest&, const DeviceMoeWeights&) { requireDevice(0); }
void moeRouteCuda(const MoeRouteCudaRequest& r) { requireDevice(r.device); }

std::shared_ptr<uint8_t> allocateDeviceCache(size_t, int device) {
  requireDevice(device);
  return nullptr;
}

std::unique_ptr<CopyEngine> makeCudaCopyEngine(const PageSource&, const PagerGeometry&, uint8_t*, uint8_t*, int device) {
  requireDevice(device);
  return nullptr;
}

}  // namespace engram
