#include "cuda_check.cuh"
#include "device.hpp"

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

std::string deviceUnavailableReason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return std::string("CUDA reports: ") + cudaGetErrorString(status);
  }
  return count == 0 ? "no CUDA device is visible" : "";
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
  EK_CUDA_CHECK(cudaSetDevice(index));
}

}  // namespace engram
