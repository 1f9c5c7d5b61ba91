// Which accelerators this process can use. Both backends of the build implement it:
// device.cu (CUDA runtime, linked statically) and device_none.cpp (CPU-only builds).
#pragma once
#include <string>
#include <vector>

namespace engram {

struct DeviceInfo {
  int index;
  std::string name;
  int computeMajor;
  int computeMinor;
  size_t totalMemory;
  int multiprocessors;
};

bool builtWithCuda();
// Devices visible now; empty when there is no driver or no GPU (never throws for that).
std::vector<DeviceInfo> listDevices();
// Why listDevices() is empty, in words ("" when it is not).
std::string deviceUnavailableReason();
// Throws a clear error unless `index` names a usable device.
void requireDevice(int index);

}  // namespace engram

// A call into the CUDA backend, as written where the build has one; in a CPU-only build
// the call is compiled out and refuses with requireDevice's clear error, so a new CUDA
// entry point needs no stub: EK_CUDA(call->device, handle = uploadFooCuda(...)).
#if defined(ENGRAM_WITH_CUDA)
#define EK_CUDA(device, ...) ((void)(__VA_ARGS__))
#else
#define EK_CUDA(device, ...) ::engram::requireDevice(device)
#endif

namespace engram {

}  // namespace engram
