#include "common/cuda_check.cuh"
#include "common/device.hpp"

#include <cstdio>
#include <cstring>
#include <mutex>

namespace engram {

bool builtWithCuda() { return true; }

std::vector<DeviceInfo> listDevices() {
  std::vector<DeviceInfo> out;
  int count = 0;
  // No driver or no GPU: an error code here, which simply means "no devices".
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return out;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    out.push_back(DeviceInfo{i, prop.name, prop.major, prop.minor, prop.totalGlobalMem, prop.multiProcessorCount});
  }
  return out;
}

namespace {

// The oldest driver branch that runs a CUDA runtime of this major version (NVIDIA's
// compatibility table: 13.x needs R580, 12.x R525); the runtime is linked in, so this is
// what the machine's driver must meet, whatever toolkit it has.
int requiredDriverBranch(int runtimeVersion) { return runtimeVersion >= 13000 ? 580 : runtimeVersion >= 12000 ? 525 : 450; }

std::string cudaVersionText(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

// The kernel module's release ("580.65.06"), where the driver exposes it.
std::string installedDriverRelease() {
  FILE* f = std::fopen("/proc/driver/nvidia/version", "r");
  if (f == nullptr) return "";
  char line[512] = {0};
  const bool read = std::fgets(line, sizeof line, f) != nullptr;
  std::fclose(f);
  if (!read) return "";
  const char* p = std::strstr(line, "Kernel Module");
  if (p == nullptr) return "";
  p += std::strlen("Kernel Module");
  while (*p == ' ' || *p == '\t') ++p;
  std::string release;
  while ((*p >= '0' && *p <= '9') || *p == '.') release += *p++;
  return release;
}

}  // namespace

std::string deviceUnavailableReason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaSuccess) return count == 0 ? "no CUDA device is visible" : "";
  cudaGetLastError();
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  const std::string need = "this build's CUDA " + cudaVersionText(runtime) + " runtime needs NVIDIA driver " +
                           std::to_string(requiredDriverBranch(runtime)) + " or newer";
  if (driver == 0) return "no NVIDIA driver is installed (libcuda.so.1 was not found); " + need;
  const std::string release = installedDriverRelease();
  const std::string found = "the installed NVIDIA driver" + (release.empty() ? "" : " " + release) + " supports CUDA " +
                            cudaVersionText(driver);
  if (status == cudaErrorInsufficientDriver) return found + ", but " + need;
  return found + "; CUDA reports: " + cudaGetErrorString(status);
}

void requireDevice(int index) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    EK_THROW(Error, std::string("device 'cuda' was requested but no CUDA device is usable (") +
                        cudaGetErrorString(status) + ")");
  }
  EK_REQUIRE(count > 0, Error, "device 'cuda' was requested but no CUDA device is visible");
  EK_REQUIRE(index >= 0 && index < count, RangeError,
             "CUDA device index " + std::to_string(index) + " is outside [0, " + std::to_string(count) + ")");
}

bool threadHasCurrentContext() {
  // cuCtxGetCurrent through the runtime's entry-point lookup: no link against libcuda,
  // which the addon must load without.
  using GetCurrent = int (*)(void**);
  static const GetCurrent getCurrent = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuCtxGetCurrent", &fn, 12000, cudaEnableDefault, &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return static_cast<GetCurrent>(nullptr);
    }
    return reinterpret_cast<GetCurrent>(fn);
  }();
  if (getCurrent == nullptr) return true;
  void* context = nullptr;
  return getCurrent(&context) == 0 && context != nullptr;
}

void configureDevicePool(int device) {
  constexpr int kMaxDevices = 64;
  static std::once_flag configured[kMaxDevices];
  if (device < 0 || device >= kMaxDevices) return;
  std::call_once(configured[device], [device] {
    cudaMemPool_t pool = nullptr;
    size_t freeBytes = 0, totalBytes = 0;
    if (cudaDeviceGetDefaultMemPool(&pool, device) != cudaSuccess || cudaMemGetInfo(&freeBytes, &totalBytes) != cudaSuccess) {
      cudaGetLastError();
      return;
    }
    // Keep up to a quarter of the device cached in the pool: a layer's per-call buffers are
    // reused from it, and the rest stays free for the runtime around us.
    uint64_t threshold = totalBytes / 4;
    if (cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold) != cudaSuccess) cudaGetLastError();
  });
}

}  // namespace engram
