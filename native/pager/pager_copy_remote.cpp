#include "pager/pager_copy_remote.hpp"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "common/common.hpp"
#include "common/crc32c.hpp"

namespace engram {

RemoteCopyEngine::RemoteCopyEngine(const PagerGeometry& g, uint8_t* cacheData, uint8_t* cacheScales)
    : g_(g), cacheData_(cacheData), cacheScales_(cacheScales), jsThread_(std::this_thread::get_id()) {}

uint64_t RemoteCopyEngine::submit(std::vector<RowCopy> copies) {
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t id = ++submitted_;
  pending_.push_back(Job{id, std::move(copies)});
  return id;
}

std::vector<RemoteCopyEngine::Job> RemoteCopyEngine::takeJobs() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<Job> out;
  out.swap(pending_);
  for (const Job& j : out) {
    std::vector<RowCopy> sorted = j.copies;
    std::sort(sorted.begin(), sorted.end(), [](const RowCopy& a, const RowCopy& b) { return a.dstRow < b.dstRow; });
    inFlight_.emplace(j.id, std::move(sorted));
  }
  return out;
}

bool RemoteCopyEngine::insideJob(const std::vector<RowCopy>& sorted, int64_t dstRow, int64_t rows) const {
  // The last copy starting at or before dstRow must hold the whole piece.
  auto it = std::upper_bound(sorted.begin(), sorted.end(), dstRow, [](int64_t r, const RowCopy& c) { return r < c.dstRow; });
  if (it == sorted.begin()) return false;
  --it;
  return rows > 0 && dstRow + rows <= it->dstRow + it->rows;
}

void RemoteCopyEngine::wait(uint64_t, const std::vector<uint64_t>& jobs) {
  std::unique_lock<std::mutex> lock(mutex_);
  const auto allDone = [&] {
    for (uint64_t j : jobs) {
      if (!doneLocked(j)) return false;
    }
    return true;
  };
  if (!allDone() && std::this_thread::get_id() == jsThread_) {
    // JS is the one fetching: blocking it would never end. The jobs are abandoned (later
    // fills are dropped, so no slot is written after the pager reuses it) and fail.
    const std::string why =
        "the remote tier is still fetching this batch's pages: a synchronous wait cannot take them (use forwardAsync or "
        "waitAsync, or await the prefetch's pages first)";
    for (uint64_t j : jobs) {
      if (doneLocked(j)) continue;
      for (auto it = pending_.begin(); it != pending_.end(); ++it) {
        if (it->id == j) {
          pending_.erase(it);
          break;
        }
      }
      inFlight_.erase(j);
      done_.insert(j);
      failures_.emplace(j, why);
    }
    doneCv_.notify_all();
  }
  doneCv_.wait(lock, allDone);
  for (uint64_t j : jobs) {
    const auto it = failures_.find(j);
    if (it != failures_.end()) EK_THROW(Error, it->second);
  }
}

bool RemoteCopyEngine::fill(uint64_t job, int64_t dstRow, int64_t rows, const uint8_t* data, size_t dataBytes, const uint8_t* scales, size_t scaleBytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = inFlight_.find(job);
  if (it == inFlight_.end()) {
    EK_REQUIRE(job <= submitted_, RangeError, "job " + std::to_string(job) + " was never submitted");
    return false;  // abandoned or already complete
  }
  // Only rows this job is to fill: a store answering with the wrong rows cannot write
  // anywhere else in the cache.
  EK_REQUIRE(insideJob(it->second, dstRow, rows), RangeError, "cache rows " + std::to_string(dstRow) + ".." + std::to_string(dstRow + rows - 1) + " are not job " + std::to_string(job) + "'s");
  EK_REQUIRE(dataBytes == static_cast<size_t>(rows * g_.rowBytes), RangeError,
             "data holds " + std::to_string(dataBytes) + " bytes, " + std::to_string(rows) + " rows need " + std::to_string(rows * g_.rowBytes));
  EK_REQUIRE(scaleBytes == static_cast<size_t>(rows * g_.scaleRowBytes), RangeError,
             "scales hold " + std::to_string(scaleBytes) + " bytes, " + std::to_string(rows) + " rows need " + std::to_string(rows * g_.scaleRowBytes));
  std::memcpy(cacheData_ + dstRow * g_.rowBytes, data, dataBytes);
  if (scaleBytes > 0) std::memcpy(cacheScales_ + dstRow * g_.scaleRowBytes, scales, scaleBytes);
  return true;
}

namespace {
// The stored page header (page-format.ts writes it): little-endian fields at these offsets.
constexpr size_t kHeaderBytes = 32;
constexpr uint32_t kPageMagic = 0x47504b45;  // "EKPG"
constexpr uint16_t kPageFormatVersion = 1;
template <typename T>
T readLe(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // the hosts we build for are little-endian
  return v;
}
}  // namespace

int64_t RemoteCopyEngine::fillPages(uint64_t job, size_t count, const double* pages, const uint8_t* const* values, const size_t* lengths,
                                    const uint8_t tableTag[8]) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (inFlight_.count(job) == 0) {
      EK_REQUIRE(job <= submitted_, RangeError, "job " + std::to_string(job) + " was never submitted");
      return kJobAbandoned;
    }
  }
  // The checks need no lock: they read only the values (the checksums are most of the time).
  const int64_t fullRow = g_.rowBytes + g_.scaleRowBytes;
  std::vector<std::pair<int64_t, size_t>> byPage(count);  // (page, value index), sorted by page
  for (size_t i = 0; i < count; ++i) {
    const double pd = pages[i];
    EK_REQUIRE(pd >= 0 && pd < static_cast<double>(g_.pages()) && pd == static_cast<double>(static_cast<int64_t>(pd)), RangeError,
               "pages[" + std::to_string(i) + "] must be a page of the table (0.." + std::to_string(g_.pages() - 1) + "), got " + std::to_string(pd));
    const auto page = static_cast<int64_t>(pd);
    const uint8_t* v = values[i];
    const int64_t pageRows = std::min(g_.pageRows, g_.rows - page * g_.pageRows);
    const auto payload = static_cast<size_t>(pageRows * fullRow);
    if (v == nullptr || lengths[i] != kHeaderBytes + payload) return static_cast<int64_t>(i);
    if (readLe<uint32_t>(v) != kPageMagic || readLe<uint16_t>(v + 4) != kPageFormatVersion || std::memcmp(v + 8, tableTag, 8) != 0 ||
        readLe<uint32_t>(v + 16) != static_cast<uint64_t>(page) || readLe<uint32_t>(v + 20) != static_cast<uint64_t>(pageRows) ||
        readLe<uint32_t>(v + 24) != payload || crc32c(v + kHeaderBytes, payload) != readLe<uint32_t>(v + 28)) {
      return static_cast<int64_t>(i);
    }
    byPage[i] = {page, i};
  }
  std::sort(byPage.begin(), byPage.end());
  const auto valueOf = [&](int64_t page) -> const uint8_t* {
    const auto it = std::lower_bound(byPage.begin(), byPage.end(), std::make_pair(page, size_t{0}));
    EK_REQUIRE(it != byPage.end() && it->first == page, RangeError, "job " + std::to_string(job) + " needs page " + std::to_string(page) + ", which was not given");
    return values[it->second];
  };
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = inFlight_.find(job);
  if (it == inFlight_.end()) return kJobAbandoned;  // abandoned while the pages were checked
  // Every page first, so that a missing one throws before a row is written.
  for (const RowCopy& c : it->second) {
    for (int64_t p = c.srcRow / g_.pageRows; p <= (c.srcRow + c.rows - 1) / g_.pageRows; ++p) valueOf(p);
  }
  for (const RowCopy& c : it->second) {
    for (int64_t r = c.srcRow; r < c.srcRow + c.rows;) {
      const int64_t page = r / g_.pageRows;
      const int64_t within = r - page * g_.pageRows;
      const int64_t inPage = std::min(g_.pageRows, g_.rows - page * g_.pageRows);
      const int64_t n = std::min(c.srcRow + c.rows - r, inPage - within);
      const uint8_t* payload = valueOf(page) + kHeaderBytes;
      const int64_t dst = c.dstRow + (r - c.srcRow);
      std::memcpy(cacheData_ + dst * g_.rowBytes, payload + within * g_.rowBytes, static_cast<size_t>(n * g_.rowBytes));
      if (g_.scaleRowBytes > 0) {
        std::memcpy(cacheScales_ + dst * g_.scaleRowBytes, payload + inPage * g_.rowBytes + within * g_.scaleRowBytes, static_cast<size_t>(n * g_.scaleRowBytes));
      }
      r += n;
    }
  }
  return kPagesWritten;
}

void RemoteCopyEngine::complete(uint64_t job, const std::string& failure, double seconds) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (inFlight_.erase(job) == 0) return;  // abandoned meanwhile: its failure stands
    busy_ += seconds;
    done_.insert(job);
    if (!failure.empty()) failures_.emplace(job, failure);
    // Tickets may wait on a job long after it ended (a page another ticket filled): ids
    // up to settledUpTo_ with no job still open before them count as done, so done_ only
    // holds the ones after. Failures are kept until their ticket settles them.
    const uint64_t firstOpen = std::min(inFlight_.empty() ? submitted_ + 1 : inFlight_.begin()->first,
                                        pending_.empty() ? submitted_ + 1 : pending_.front().id);
    while (!done_.empty() && *done_.begin() < firstOpen) {
      settledUpTo_ = std::max(settledUpTo_, *done_.begin());
      done_.erase(done_.begin());
    }
  }
  doneCv_.notify_all();
}

double RemoteCopyEngine::busySeconds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return busy_;
}

}  // namespace engram
