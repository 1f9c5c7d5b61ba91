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

// Device memory that lives as long as its owner (the weights handle).
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const void* host, size_t bytes) : bytes_(bytes) {
    if (bytes_ == 0) return;
    EK_CUDA_CHECK(cudaMalloc(&ptr_, bytes_));
    if (host != nullptr) EK_CUDA_CHECK(cudaMemcpy(ptr_, host, bytes_, cudaMemcpyHostToDevice));
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

// Makes `device` current for a scope, restoring the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    cudaGetDevice(&previous_);
    EK_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};


}  // namespace engram
