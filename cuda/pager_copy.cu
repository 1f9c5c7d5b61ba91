// The CUDA copy engine of the pager: the cache's page slots live in device memory and
// pages arrive with cudaMemcpyAsync on a stream of their own, from a source pinned with
// cudaHostRegister (the page-locked host tier), one event per job. FIFO like every engine:
// one stream runs the jobs in submission order.
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "cuda_check.cuh"
#include "device.hpp"
#include "pager.hpp"

namespace engram {

namespace {

// Events of submitted jobs. A waiter pins the event it synchronises on, so collecting
// completed jobs never destroys an event under a waiter. Callers hold their own mutex.
class EventLog {
 public:
  ~EventLog() {
    for (auto& [job, ev] : events_) cudaEventDestroy(ev);
  }
  void record(uint64_t job, cudaEvent_t ev) { events_.emplace(job, ev); }
  // The event of `job` pinned for a wait, or null when it was collected (complete).
  cudaEvent_t pin(uint64_t job) {
    const auto it = events_.find(job);
    if (it == events_.end()) return nullptr;
    ++waiters_[job];
    return it->second;
  }
  void unpin(uint64_t job) {
    if (--waiters_[job] == 0) waiters_.erase(job);
  }
  // Destroys the events of jobs up to `job` (all complete) that nobody waits on.
  void collect(uint64_t job) {
    for (auto it = events_.begin(); it != events_.end() && it->first <= job;) {
      if (waiters_.count(it->first) != 0) {
        ++it;
        continue;
      }
      cudaEventDestroy(it->second);
      it = events_.erase(it);
    }
  }

 private:
  std::map<uint64_t, cudaEvent_t> events_;
  std::map<uint64_t, int> waiters_;
};

class CudaCopyEngine final : public CopyEngine {
 public:
  CudaCopyEngine(const PageSource& source, const PagerGeometry& g, uint8_t* deviceData, uint8_t* deviceScales, int device)
      : source_(source), g_(g), data_(deviceData), scales_(deviceScales), device_(device) {
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
    events_.record(id, ev);
    return id;
  }

  void wait(uint64_t job, const std::vector<uint64_t>&) override {
    cudaEvent_t ev = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ev = events_.pin(job);
      if (ev == nullptr) return;  // completed and collected
    }
    const cudaError_t status = cudaEventSynchronize(ev);
    std::lock_guard<std::mutex> lock(mutex_);
    events_.unpin(job);
    EK_CUDA_CHECK(status);
    events_.collect(job);  // every job up to `job` is complete (one stream)
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
  EventLog events_;
  uint64_t submitted_ = 0;
};

// The file tier on CUDA: a host thread reads a job's rows with pread into a pinned staging
// buffer, then copies them to the device cache on the copy stream. One staging buffer,
// reused once the previous job's copies are done (its event), keeps the order FIFO.
class CudaFileCopyEngine final : public CopyEngine {
 public:
  CudaFileCopyEngine(const PageSource& source, const PagerGeometry& g, uint8_t* deviceData, uint8_t* deviceScales, int device)
      : source_(source), g_(g), data_(deviceData), scales_(deviceScales), device_(device) {
    fd_ = openTableFile(source, g);
    try {
      EK_CUDA_CHECK(cudaSetDevice(device));
      EK_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    } catch (...) {
      ::close(fd_);
      throw;
    }
    thread_ = std::thread([this] { run(); });
  }

  ~CudaFileCopyEngine() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
    if (staging_ != nullptr) cudaFreeHost(staging_);
    ::close(fd_);
  }

  uint64_t submit(std::vector<RowCopy> copies) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t id = ++submitted_;
    queue_.emplace_back(id, std::move(copies));
    wake_.notify_all();
    return id;
  }

  void wait(uint64_t job, const std::vector<uint64_t>& jobs) override {
    cudaEvent_t ev = nullptr;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return staged_ >= job; });  // its copies are on the stream
      for (uint64_t j : jobs) {
        const auto it = failures_.find(j);
        if (it != failures_.end()) EK_THROW(Error, it->second);
      }
      ev = events_.pin(job);
      if (ev == nullptr) return;  // completed and collected
    }
    const cudaError_t status = cudaEventSynchronize(ev);
    std::lock_guard<std::mutex> lock(mutex_);
    events_.unpin(job);
    EK_CUDA_CHECK(status);
  }

  double busySeconds() const override { return 0; }

 private:
  void run() {
    cudaSetDevice(device_);
    cudaEvent_t previous = nullptr;
    for (;;) {
      std::pair<uint64_t, std::vector<RowCopy>> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      std::string failure;
      cudaEvent_t ev = nullptr;
      try {
        int64_t bytes = 0;
        for (const RowCopy& c : job.second) bytes += c.rows * (g_.rowBytes + g_.scaleRowBytes);
        if (previous != nullptr) EK_CUDA_CHECK(cudaEventSynchronize(previous));  // the staging buffer is free again
        if (bytes > stagingBytes_) {
          if (staging_ != nullptr) cudaFreeHost(staging_);
          staging_ = nullptr;
          EK_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&staging_), static_cast<size_t>(bytes), cudaHostAllocDefault));
          stagingBytes_ = bytes;
        }
        int64_t at = 0;
        for (const RowCopy& c : job.second) {
          const int64_t dataBytes = c.rows * g_.rowBytes, scaleBytes = c.rows * g_.scaleRowBytes;
          preadFully(fd_, staging_ + at, source_.dataOffset + c.srcRow * g_.rowBytes, dataBytes, source_.path);
          EK_CUDA_CHECK(cudaMemcpyAsync(data_ + c.dstRow * g_.rowBytes, staging_ + at, static_cast<size_t>(dataBytes), cudaMemcpyHostToDevice, stream_));
          at += dataBytes;
          if (scaleBytes > 0) {
            preadFully(fd_, staging_ + at, source_.scalesOffset + c.srcRow * g_.scaleRowBytes, scaleBytes, source_.path);
            EK_CUDA_CHECK(cudaMemcpyAsync(scales_ + c.dstRow * g_.scaleRowBytes, staging_ + at, static_cast<size_t>(scaleBytes), cudaMemcpyHostToDevice, stream_));
            at += scaleBytes;
          }
        }
        EK_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
        EK_CUDA_CHECK(cudaEventRecord(ev, stream_));
      } catch (const std::exception& e) {
        failure = e.what();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!failure.empty()) failures_.emplace(job.first, failure);
        if (ev != nullptr) events_.record(job.first, ev);
        staged_ = job.first;
        // Jobs before the previous one are complete (its event was synchronised above).
        if (job.first >= 2) events_.collect(job.first - 2);
      }
      previous = ev;
      done_.notify_all();
    }
  }

  PageSource source_;
  PagerGeometry g_;
  uint8_t* data_;
  uint8_t* scales_;
  int device_;
  int fd_ = -1;
  cudaStream_t stream_ = nullptr;
  uint8_t* staging_ = nullptr;
  int64_t stagingBytes_ = 0;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::deque<std::pair<uint64_t, std::vector<RowCopy>>> queue_;
  EventLog events_;
  std::map<uint64_t, std::string> failures_;
  uint64_t submitted_ = 0, staged_ = 0;
  bool stopping_ = false;
  std::thread thread_;
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
  if (!source.path.empty()) return std::make_unique<CudaFileCopyEngine>(source, g, deviceData, deviceScales, deviceIndex);
  return std::make_unique<CudaCopyEngine>(source, g, deviceData, deviceScales, deviceIndex);
}

}  // namespace engram
