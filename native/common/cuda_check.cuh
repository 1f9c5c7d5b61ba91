// CUDA error handling: a failed call throws (file:line in the message), never aborts.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "common/common.hpp"

#define EK_CUDA_CHECK(expr)                                                               \
  do {                                                                                     \
    const cudaError_t ek_status = (expr);                                                  \
    if (ek_status != cudaSuccess) {                                                        \
      EK_THROW(Error, std::string("CUDA error in ") + #expr + ": " + cudaGetErrorString(ek_status)); \
    }                                                                                      \
  } while (0)

namespace engram {

// Device memory owned for the span of one call; freed on every path, errors included.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer(size_t count, cudaStream_t stream) : count_(count), stream_(stream) {
    if (count_ > 0) EK_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), count_ * sizeof(T), stream_));
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFreeAsync(ptr_, stream_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return ptr_; }
  void upload(const T* host) {
    if (count_ > 0 && host != nullptr)
      EK_CUDA_CHECK(cudaMemcpyAsync(ptr_, host, count_ * sizeof(T), cudaMemcpyHostToDevice, stream_));
  }
  void download(T* host) const {
    if (count_ > 0) EK_CUDA_CHECK(cudaMemcpyAsync(host, ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost, stream_));
  }

 private:
  T* ptr_ = nullptr;
  size_t count_;
  cudaStream_t stream_;
};

// A stream for one call, destroyed with it.
class ScopedStream {
 public:
  ScopedStream() { EK_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~ScopedStream() {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

// Waits for copies made with cudaMemcpy on the legacy default stream. From pageable memory
// cudaMemcpy returns once the bytes are staged, before they land; kernels on the calls'
// non-blocking streams do not wait for the legacy stream, so uploads finish here first.
inline void finishLegacyCopies() { EK_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy)); }

// Device memory that lives as long as its owner (the weights handle), its bytes on the
// device when the constructor returns.
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const void* host, size_t bytes) : bytes_(bytes) {
    if (bytes_ == 0) return;
    EK_CUDA_CHECK(cudaMalloc(&ptr_, bytes_));
    if (host != nullptr) {
      EK_CUDA_CHECK(cudaMemcpy(ptr_, host, bytes_, cudaMemcpyHostToDevice));
      finishLegacyCopies();
    }
  }
  ~DeviceArray() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Whether this thread has a CUDA context current (ours or another library's); true when
// the driver cannot be asked (device.cu).
bool threadHasCurrentContext();

// Keeps each device's stream-ordered pool from handing its memory back at every
// synchronisation (the default threshold is 0): calls allocate their buffers with
// cudaMallocAsync, and re-mapping them every call costs more than the kernels.
void configureDevicePool(int device);

// Makes `device` current for a scope. On exit it restores the previous device only where
// the thread had a context current before: switching a fresh libuv thread "back" to device
// 0 would create a context on GPU 0 in a process that only uses GPU k.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) : device_(device) {
    restore_ = threadHasCurrentContext() && cudaGetDevice(&previous_) == cudaSuccess && previous_ != device;
    EK_CUDA_CHECK(cudaSetDevice(device));
    configureDevicePool(device);
  }
  ~DeviceGuard() {
    if (restore_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int device_;
  int previous_ = 0;
  bool restore_ = false;
};


}  // namespace engram
