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

#include "common/thread_pool.hpp"
#include "common/cuda_check.cuh"
#include "common/device.hpp"
#include "pager/pager.hpp"

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

// cudaHostRegister pins a range once per process: registering it again fails ("already
// registered"), and unregistering it while another pager still copies from it turns that
// pager's copies pageable under it. Pagers over the same host table (two layers' models,
// a pager re-created) share one registration per range, counted.
class PinnedRanges {
 public:
  // True when [p, p + bytes) is pinned (now, or by an earlier holder of the same range).
  bool acquire(const void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = ranges_.find(p);
    if (it != ranges_.end()) {
      if (it->second.bytes != bytes) return false;  // overlapping, not equal: copied unpinned
      ++it->second.holders;
      return true;
    }
    if (cudaHostRegister(const_cast<void*>(p), bytes, cudaHostRegisterReadOnly) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    ranges_.emplace(p, Range{bytes, 1});
    return true;
  }
  void release(const void* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = ranges_.find(p);
    if (it == ranges_.end() || --it->second.holders > 0) return;
    cudaHostUnregister(const_cast<void*>(p));
    ranges_.erase(it);
  }

 private:
  struct Range {
    size_t bytes;
    int holders;
  };
  std::mutex mutex_;
  std::map<const void*, Range> ranges_;
};

PinnedRanges& pinnedRanges() {
  static PinnedRanges* ranges = new PinnedRanges();  // never destroyed: pagers may outlive static teardown
  return *ranges;
}

class CudaCopyEngine final : public CopyEngine {
 public:
  CudaCopyEngine(const PageSource& source, const PagerGeometry& g, uint8_t* deviceData, uint8_t* deviceScales, int device)
      : source_(source), g_(g), data_(deviceData), scales_(deviceScales), device_(device) {
    DeviceGuard guard(device);
    EK_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    // Page-locked source: async copies run at full PCIe rate and overlap compute.
    // Best effort: a part that cannot be registered is still copied, more slowly.
    for (const SourcePart& p : source.parts) {
      pin(p.data, p.rows * g.rowBytes);
      if (p.scales != nullptr) pin(p.scales, p.rows * g.scaleRowBytes);
    }
  }

  ~CudaCopyEngine() override {
    DeviceGuard guard(device_);
    cudaStreamSynchronize(stream_);  // no copy reads the pinned ranges after this
    cudaStreamDestroy(stream_);
    for (const uint8_t* p : registered_) pinnedRanges().release(p);
  }

  uint64_t submit(std::vector<RowCopy> copies) override {
    std::lock_guard<std::mutex> lock(mutex_);
    DeviceGuard guard(device_);
    for (const RowCopy& c : copies) {
      source_.forEachRange(c, [&](const SourcePart& p, size_t, int64_t row, int64_t dstRow, int64_t n) {
        EK_CUDA_CHECK(cudaMemcpyAsync(data_ + dstRow * g_.rowBytes, p.data + row * g_.rowBytes, static_cast<size_t>(n * g_.rowBytes),
                                      cudaMemcpyHostToDevice, stream_));
        if (g_.scaleRowBytes > 0) {
          EK_CUDA_CHECK(cudaMemcpyAsync(scales_ + dstRow * g_.scaleRowBytes, p.scales + row * g_.scaleRowBytes,
                                        static_cast<size_t>(n * g_.scaleRowBytes), cudaMemcpyHostToDevice, stream_));
        }
      });
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
  void pin(const uint8_t* p, int64_t bytes) {
    if (bytes > 0 && pinnedRanges().acquire(p, static_cast<size_t>(bytes))) registered_.push_back(p);
  }

  PageSource source_;
  PagerGeometry g_;
  uint8_t* data_;
  uint8_t* scales_;
  int device_;
  cudaStream_t stream_ = nullptr;
  std::vector<const uint8_t*> registered_;
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
      : source_(source), g_(g), files_(source, g), data_(deviceData), scales_(deviceScales), device_(device) {
    DeviceGuard guard(device);
    EK_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    thread_ = std::thread([this] {
      setThreadName("ek-cuda-copy");
      run();
    });
  }

  ~CudaFileCopyEngine() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
    DeviceGuard guard(device_);
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
    if (staging_ != nullptr) cudaFreeHost(staging_);
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
          source_.forEachRange(c, [&](const SourcePart& p, size_t i, int64_t row, int64_t dstRow, int64_t n) {
            const int64_t dataBytes = n * g_.rowBytes, scaleBytes = n * g_.scaleRowBytes;
            uint8_t* stagedScales = scaleBytes > 0 ? staging_ + at + dataBytes : nullptr;
            files_.readRows(p, i, row, n, staging_ + at, stagedScales);
            EK_CUDA_CHECK(cudaMemcpyAsync(data_ + dstRow * g_.rowBytes, staging_ + at, static_cast<size_t>(dataBytes), cudaMemcpyHostToDevice, stream_));
            if (stagedScales != nullptr) {
              EK_CUDA_CHECK(cudaMemcpyAsync(scales_ + dstRow * g_.scaleRowBytes, stagedScales, static_cast<size_t>(scaleBytes), cudaMemcpyHostToDevice, stream_));
            }
            at += dataBytes + scaleBytes;
          });
        }
        EK_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
        EK_CUDA_CHECK(cudaEventRecord(ev, stream_));
      } catch (const std::exception& e) {
        failure = e.what();
        // Copies queued before the failure still read the staging buffer: let them finish
        // before the next job frees or overwrites it (`previous` is this job's null event).
        cudaStreamSynchronize(stream_);
        cudaGetLastError();
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
  SourceFiles files_;
  uint8_t* data_;
  uint8_t* scales_;
  int device_;
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
  DeviceGuard guard(deviceIndex);
  void* ptr = nullptr;
  EK_CUDA_CHECK(cudaMalloc(&ptr, bytes));
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(ptr), [deviceIndex](uint8_t* p) {
    DeviceGuard freeing(deviceIndex);
    cudaFree(p);
  });
}

std::unique_ptr<CopyEngine> makeCudaCopyEngine(const PageSource& source, const PagerGeometry& g, uint8_t* deviceData, uint8_t* deviceScales,
                                               int deviceIndex) {
  if (source.inFiles()) return std::make_unique<CudaFileCopyEngine>(source, g, deviceData, deviceScales, deviceIndex);
  return std::make_unique<CudaCopyEngine>(source, g, deviceData, deviceScales, deviceIndex);
}

}  // namespace engram
