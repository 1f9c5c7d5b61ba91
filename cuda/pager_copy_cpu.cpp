// The CPU backend's copy engine: one thread copies pages from the home tier (RAM, a
// mapping, or a file read with pread) into the cache, job by job in submission order.
// An optional rate cap makes it behave like a PCIe link of that bandwidth.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <thread>

#include "common.hpp"
#include "pager.hpp"
#include "thread_pool.hpp"

namespace engram {

namespace {

using Clock = std::chrono::steady_clock;

class CpuCopyEngine final : public CopyEngine {
 public:
  CpuCopyEngine(const PageSource& source, const PagerGeometry& g, uint8_t* cacheData, uint8_t* cacheScales, double bytesPerSecond,
                int readers)
      : source_(source), g_(g), cacheData_(cacheData), cacheScales_(cacheScales), rate_(bytesPerSecond), readers_(std::max(1, readers)) {
    // Several readers keep a disk's queue busy: one synchronous pread at a time waits a
    // full device latency per row.
    if (readers_ > 1) readerPool_ = std::make_unique<ThreadPool>(readers_ - 1);
    if (!source.path.empty()) fd_ = openTableFile(source, g);
    thread_ = std::thread([this] { run(); });
  }

  ~CpuCopyEngine() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }

  uint64_t submit(std::vector<RowCopy> copies) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t id = ++submitted_;
    queue_.emplace_back(id, std::move(copies));
    wake_.notify_all();
    return id;
  }

  void wait(uint64_t job, const std::vector<uint64_t>& jobs) override {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return completed_ >= job; });
    for (uint64_t j : jobs) {
      const auto it = failures_.find(j);
      if (it != failures_.end()) EK_THROW(Error, it->second);
    }
  }

  double busySeconds() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return busy_;
  }

 private:
  void readFile(uint8_t* dst, int64_t offset, int64_t bytes) { preadFully(fd_, dst, offset, bytes, source_.path); }

  void copyOne(const RowCopy& c) {
    const int64_t dataBytes = c.rows * g_.rowBytes;
    const int64_t scaleBytes = c.rows * g_.scaleRowBytes;
    uint8_t* dst = cacheData_ + c.dstRow * g_.rowBytes;
    uint8_t* dstScales = scaleBytes > 0 ? cacheScales_ + c.dstRow * g_.scaleRowBytes : nullptr;
    if (fd_ >= 0) {
      readFile(dst, source_.dataOffset + c.srcRow * g_.rowBytes, dataBytes);
      if (dstScales) readFile(dstScales, source_.scalesOffset + c.srcRow * g_.scaleRowBytes, scaleBytes);
    } else {
      std::memcpy(dst, source_.data + c.srcRow * g_.rowBytes, static_cast<size_t>(dataBytes));
      if (dstScales) std::memcpy(dstScales, source_.scales + c.srcRow * g_.scaleRowBytes, static_cast<size_t>(scaleBytes));
    }
  }

  void run() {
    for (;;) {
      std::pair<uint64_t, std::vector<RowCopy>> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, nothing left
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      const auto start = Clock::now();
      std::string failure;
      int64_t bytes = 0;
      try {
        const std::vector<RowCopy>& copies = job.second;
        if (readerPool_ && copies.size() > 1) {
          readerPool_->parallelFor(static_cast<int64_t>(copies.size()), readers_, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) copyOne(copies[i]);
          });
          for (const RowCopy& c : copies) bytes += c.rows * (g_.rowBytes + g_.scaleRowBytes);
          if (rate_ > 0) std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(bytes / rate_)));
        } else {
          for (const RowCopy& c : copies) {
            copyOne(c);
            bytes += c.rows * (g_.rowBytes + g_.scaleRowBytes);
            if (rate_ > 0) {
              // Never faster than the emulated link: sleep until the bytes "arrived".
              const auto due = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(bytes / rate_));
              std::this_thread::sleep_until(due);
            }
          }
        }
      } catch (const std::exception& e) {
        failure = e.what();
      }
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        busy_ += seconds;
        if (!failure.empty()) failures_.emplace(job.first, failure);
        completed_ = job.first;
      }
      done_.notify_all();
    }
  }

  PageSource source_;
  PagerGeometry g_;
  uint8_t* cacheData_;
  uint8_t* cacheScales_;
  double rate_;
  int readers_;
  std::unique_ptr<ThreadPool> readerPool_;
  int fd_ = -1;
  mutable std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::deque<std::pair<uint64_t, std::vector<RowCopy>>> queue_;
  std::map<uint64_t, std::string> failures_;
  uint64_t submitted_ = 0, completed_ = 0;
  double busy_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

class NullCopyEngine final : public CopyEngine {
 public:
  uint64_t submit(std::vector<RowCopy>) override { return ++submitted_; }
  void wait(uint64_t, const std::vector<uint64_t>&) override {}
  double busySeconds() const override { return 0; }

 private:
  uint64_t submitted_ = 0;
};

}  // namespace

std::unique_ptr<CopyEngine> makeCpuCopyEngine(const PageSource& source, const PagerGeometry& g, uint8_t* cacheData, uint8_t* cacheScales,
                                              double bytesPerSecond, int readers) {
  return std::make_unique<CpuCopyEngine>(source, g, cacheData, cacheScales, bytesPerSecond, readers);
}

std::unique_ptr<CopyEngine> makeNullCopyEngine() { return std::make_unique<NullCopyEngine>(); }

int openTableFile(const PageSource& source, const PagerGeometry& g) {
  const int fd = ::open(source.path.c_str(), O_RDONLY | O_CLOEXEC);
  EK_REQUIRE(fd >= 0, Error, "cannot open table file '" + source.path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    EK_THROW(Error, "cannot stat table file '" + source.path + "'");
  }
  const int64_t needData = source.dataOffset + g.rows * g.rowBytes;
  const int64_t needScales = g.scaleRowBytes > 0 ? source.scalesOffset + g.rows * g.scaleRowBytes : 0;
  const int64_t need = std::max(needData, needScales);
  if (st.st_size < need) {
    ::close(fd);
    EK_THROW(RangeError, "table file '" + source.path + "' is truncated: " + std::to_string(st.st_size) + " bytes, the table needs " +
                             std::to_string(need));
  }
  // Hashed rows are random reads: read-ahead would only fetch bytes nobody asked for.
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
  return fd;
}

void preadFully(int fd, uint8_t* dst, int64_t offset, int64_t bytes, const std::string& path) {
  while (bytes > 0) {
    const ssize_t n = ::pread(fd, dst, static_cast<size_t>(bytes), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error("reading table file '" + path + "' failed: " + std::strerror(errno));
    if (n == 0) throw std::runtime_error("table file '" + path + "' ended early (truncated while in use?)");
    dst += n;
    offset += n;
    bytes -= n;
  }
}

}  // namespace engram
