// The CPU backend's copy engine: one thread copies pages from the home tier (RAM, a
// mapping, or a file read with pread) into the cache, job by job in submission order.
// An optional rate cap makes it behave like a PCIe link of that bandwidth.
#include "common/mapped_guard.hpp"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <thread>

#include "common/common.hpp"
#include "pager/pager.hpp"
#include "pager/uring_reader.hpp"
#include "common/thread_pool.hpp"

namespace engram {

namespace {

using Clock = std::chrono::steady_clock;

class CpuCopyEngine final : public CopyEngine {
 public:
  CpuCopyEngine(const PageSource& source, const PagerGeometry& g, uint8_t* cacheData, uint8_t* cacheScales, double bytesPerSecond,
                int readers)
      : source_(source), g_(g), files_(source, g), cacheData_(cacheData), cacheScales_(cacheScales), rate_(bytesPerSecond), readers_(std::max(1, readers)) {
    // Several readers keep a disk's queue busy: one synchronous pread at a time waits a
    // full device latency per row.
    if (readers_ > 1) readerPool_ = std::make_unique<ThreadPool>(readers_ - 1, "ek-read");
    // A file-tier home is read through io_uring where the kernel allows it: a job's reads
    // go in one submission, kRingDepth at a time. ENGRAM_FILE_READS=pread keeps the pread
    // readers (and measures them).
    const char* method = std::getenv("ENGRAM_FILE_READS");
    if (source_.inFiles() && !(method != nullptr && std::strcmp(method, "pread") == 0)) {
      const size_t rows = static_cast<size_t>(g_.cacheRows());
      uring_ = UringReader::create(kRingDepth, {{cacheData_, rows * static_cast<size_t>(g_.rowBytes)},
                                                 {cacheScales_, cacheScales_ == nullptr ? 0 : rows * static_cast<size_t>(g_.scaleRowBytes)}});
    }
    thread_ = std::thread([this] {
      setThreadName("ek-pager-copy");
      run();
    });
  }

  ~CpuCopyEngine() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
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

  const char* readMethod() const override {
    if (!source_.inFiles()) return "memory";
    return uring_ != nullptr && !uring_->broken() ? "io_uring" : "pread";
  }

 private:
  void copyOne(const RowCopy& c) {
    source_.forEachRange(c, [&](const SourcePart& p, size_t i, int64_t row, int64_t dstRow, int64_t n) {
      files_.readRows(p, i, row, n, cacheData_ + dstRow * g_.rowBytes, g_.scaleRowBytes > 0 ? cacheScales_ + dstRow * g_.scaleRowBytes : nullptr);
    });
  }

  // The job's reads (each page's rows and, apart, their scales; cut at file boundaries)
  // through the ring, all submitted together.
  void readWithRing(const std::vector<RowCopy>& copies) {
    ringReads_.clear();
    for (const RowCopy& c : copies) {
      source_.forEachRange(c, [&](const SourcePart& p, size_t i, int64_t row, int64_t dstRow, int64_t n) {
        ringReads_.push_back(FileRead{files_.fd(i), cacheData_ + dstRow * g_.rowBytes, p.dataOffset + row * g_.rowBytes, n * g_.rowBytes, &p.path});
        if (g_.scaleRowBytes > 0) {
          ringReads_.push_back(
              FileRead{files_.fd(i), cacheScales_ + dstRow * g_.scaleRowBytes, p.scalesOffset + row * g_.scaleRowBytes, n * g_.scaleRowBytes, &p.path});
        }
      });
    }
    uring_->readAll(ringReads_);
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
        // A host-tier table mapped from a file that shrinks: the job fails (its pages are
        // not made resident) rather than caching zeros.
        const MappedReadGuard guard;  // cheap when the thread holds one already
        const uint64_t faultsBefore = mappedFaultCount();
        const std::vector<RowCopy>& copies = job.second;
        if (uring_ != nullptr && !uring_->broken()) {
          readWithRing(copies);
          for (const RowCopy& c : copies) bytes += c.rows * (g_.rowBytes + g_.scaleRowBytes);
          if (rate_ > 0) std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(bytes / rate_)));
        } else if (readerPool_ && copies.size() > 1) {
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
        throwIfMappingsFaulted(faultsBefore);
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
  SourceFiles files_;
  uint8_t* cacheData_;
  uint8_t* cacheScales_;
  double rate_;
  int readers_;
  std::unique_ptr<ThreadPool> readerPool_;
  static constexpr unsigned kRingDepth = 128;  // reads in flight: more than a disk's queue
  std::unique_ptr<UringReader> uring_;
  std::vector<FileRead> ringReads_;  // the job's reads (copy thread only)
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

size_t PageSource::partOf(int64_t row) const {
  const auto it = std::upper_bound(parts.begin(), parts.end(), row, [](int64_t r, const SourcePart& p) { return r < p.firstRow; });
  return it == parts.begin() ? 0 : static_cast<size_t>(it - parts.begin() - 1);
}

SourceFiles::SourceFiles(const PageSource& source, const PagerGeometry& g) : g_(g) {
  if (!source.inFiles()) return;
  try {
    for (const SourcePart& p : source.parts) {
      const int fd = ::open(p.path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
      EK_REQUIRE(fd >= 0, Error, "cannot open table file '" + p.path + "': " + std::strerror(errno));
      fds_.push_back(fd);
      struct stat st {};
      EK_REQUIRE(::fstat(fd, &st) == 0, Error, "cannot stat table file '" + p.path + "'");
      EK_REQUIRE(S_ISREG(st.st_mode), TypeError, "table file '" + p.path + "' is not a regular file");
      // Opened non-blocking only so that a FIFO could not hang the open; reads of a regular
      // file should wait for the disk (io_uring would answer EAGAIN instead).
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      const int64_t needData = p.dataOffset + p.rows * g.rowBytes;
      const int64_t needScales = g.scaleRowBytes > 0 ? p.scalesOffset + p.rows * g.scaleRowBytes : 0;
      const int64_t need = std::max(needData, needScales);
      EK_REQUIRE(st.st_size >= need, RangeError,
                 "table file '" + p.path + "' is truncated: " + std::to_string(st.st_size) + " bytes, its rows need " + std::to_string(need));
      // Hashed rows are random reads: read-ahead would only fetch bytes nobody asked for.
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
    }
  } catch (...) {
    for (int fd : fds_) ::close(fd);
    throw;
  }
}

SourceFiles::~SourceFiles() {
  for (int fd : fds_) ::close(fd);
}

void SourceFiles::readRows(const SourcePart& p, size_t i, int64_t row, int64_t rows, uint8_t* data, uint8_t* scales) const {
  const int64_t dataBytes = rows * g_.rowBytes, scaleBytes = rows * g_.scaleRowBytes;
  if (!fds_.empty()) {
    preadFully(fds_[i], data, p.dataOffset + row * g_.rowBytes, dataBytes, p.path);
    if (scales != nullptr) preadFully(fds_[i], scales, p.scalesOffset + row * g_.scaleRowBytes, scaleBytes, p.path);
    return;
  }
  std::memcpy(data, p.data + row * g_.rowBytes, static_cast<size_t>(dataBytes));
  if (scales != nullptr) std::memcpy(scales, p.scales + row * g_.scaleRowBytes, static_cast<size_t>(scaleBytes));
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
