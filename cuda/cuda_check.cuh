// CUDA error handling: a failed call throws (file:line in the message), never aborts.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "common.hpp"

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

}  // namespace engram
