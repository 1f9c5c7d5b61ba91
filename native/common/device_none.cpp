// CPU-only build (ENGRAM_CUDA=OFF or no nvcc): no devices. The CUDA entry points are
// compiled out where the bindings call them (EK_CUDA in device.hpp) and refuse there.
#include "common/common.hpp"
#include "common/device.hpp"

namespace engram {

bool builtWithCuda() { return false; }
std::vector<DeviceInfo> listDevices() { return {}; }
std::string deviceUnavailableReason() { return "this build of engram-kernels has no CUDA backend (built with ENGRAM_CUDA=OFF or without nvcc)"; }
void requireDevice(int) { EK_THROW(Error, "device 'cuda' was requested but " + deviceUnavailableReason()); }

}  // namespace engram
