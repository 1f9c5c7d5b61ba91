// The CUDA copy engine of the pager: the cache's page slots live in device memory and
// pages arrive with cudaMemcpyAsync on a stream of their own, from a source pinned with
// cudaHostRegister (the page-locked host tier), one event per job. FIFO like every engine:
// one stream runs the jobs in submission order.
#include <map>
#include <mutex>

#include "cuda_check.cuh"
#include "device.hpp"
#include "pager.hpp"

namespace engram {

namespace {

class CudaCopyEngine final : public CopyEngine {
 public:
  CudaCopyEngine(const PageSource& source, const PagerGeometry& g, uint8_t* deviceData, uint8_t* deviceScales, int device)
      : source_(source), g_(g), data_(deviceData), scales_(deviceScales), device_(device) {
    EK_REQUIRE(source.path.empty(), Error, "the CUDA pager reads its pages from host memory: open a file-tier table on the CPU backend, or map it first");
    EK_CUDA_CHECK(cudaSetDevice(device));
    EK_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    // Page-locked source: async copies run at full PCIe rate and overlap compute.
    // Best effort: a source that cannot be registered is still copied, more slowly.
    const size_t dataBytes = static_cast<size_t>(g.rows * g.rowBytes);
    if (cudaHostRegister(const_cast<uint8_t*>(source.data), dataBytes, cudaHostRegisterReadOnly) == cudaSuccess) registeredData_ = true;
    else cudaGetLastError();
    if (source.scales != nullptr) {
      const size_t scaleBytes = static_cast<size_t>(g.rows * g.scaleRowBytes);
      if (cudaHostRegister(const_cast<uint8_t*>(source.scales), scaleBytes, cudaHostRegisterReadOnly) == cudaSuccess) registeredScales_ = true;
      else cudaGetLastError();
    }
  }

  ~CudaCopyEngine() override {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    for (auto& [job, ev] : events_) cudaEventDestroy(ev);
    cudaStreamDestroy(stream_);
    if (registeredData_) cudaHostUnregister(const_cast<uint8_t*>(source_.data));
    if (registeredScales_) cudaHostUnregister(const_cast<uint8_t*>(source_.scales));
  }

  uint64_t submit(std::vector<RowCopy> copies) override {
    std::lock_guard<std::mutex> lock(mutex_);
    EK_CUDA_CHECK(cudaSetDevice(device_));
    for (const RowCopy& c : copies) {
      EK_CUDA_CHECK(cudaMemcpyAsync(data_ + c.dstRow * g_.rowBytes, source_.data + c.srcRow * g_.rowBytes,
                                    static_cast<size_t>(c.rows * g_.rowBytes), cudaMemcpyHostToDevice, stream_));
      if (g_.scaleRowBytes > 0) {
        EK_CUDA_CHECK(cudaMemcpyAsync(scales_ + c.dstRow * g_.scaleRowBytes, source_.scales + c.srcRow * g_.scaleRowBytes,
                                      static_cast<size_t>(c.rows * g_.scaleRowBytes), cudaMemcpyHostToDevice, stream_));
      }
    }
    cudaEvent_t ev;
    EK_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    EK_CUDA_CHECK(cudaEventRecord(ev, stream_));
    const uint64_t id = ++submitted_;
    events_.emplace(id, ev);
    return id;
  }

  void wait(uint64_t job, const std::vector<uint64_t>&) override {
    cudaEvent_t ev = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = events_.find(job);
      if (it == events_.end()) return;  // completed and collected
      ev = it->second;
    }
    EK_CUDA_CHECK(cudaEventSynchronize(ev));
    std::lock_guard<std::mutex> lock(mutex_);
    // Every job up to `job` is complete (one stream): their events can go.
    for (auto it = events_.begin(); it != events_.end() && it->first <= job;) {
      cudaEventDestroy(it->second);
      it = events_.erase(it);
    }
  }

  double busySeconds() const override { return 0; }  // the copy engine's time is not observed here

 private:
  PageSource source_;
  PagerGeometry g_;
  uint8_t* data_;
  uint8_t* scales_;
  int device_;
  cudaStream_t stream_ = nullptr;
  bool registeredData_ = false, registeredScales_ = false;
  std::mutex mutex_;
  std::map<uint64_t, cudaEvent_t> events_;
  uint64_t submitted_ = 0;
};

}  // namespace

std::shared_ptr<uint8_t> allocateDeviceCache(size_t bytes, int deviceIndex) {
  requireDevice(deviceIndex);  // a clear error where no device (or driver) is there
  EK_CUDA_CHECK(cudaSetDevice(deviceIndex));
  void* ptr = nullptr;
  EK_CUDA_CHECK(cudaMalloc(&ptr, bytes));
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(ptr), [deviceIndex](uint8_t* p) {
    cudaSetDevice(deviceIndex);
    cudaFree(p);
  });
}

std::unique_ptr<CopyEngine> makeCudaCopyEngine(const PageSource& source, const PagerGeometry& g, uint8_t* deviceData, uint8_t* deviceScales,
                                               int deviceIndex) {
  return std::make_unique<CudaCopyEngine>(source, g, deviceData, deviceScales, deviceIndex);
}

}  // namespace engram
