#include "pager/pager_copy_remote.hpp"

#include <algorithm>
#include <cstring>

#include "common/common.hpp"

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

bool RemoteCopyEngine::fillMany(uint64_t job, size_t count, const double* dstRows, const double* rows, const double* dataOffsets,
                                const double* scaleOffsets, const uint8_t* data, size_t dataBytes, const uint8_t* scales, size_t scaleBytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = inFlight_.find(job);
  if (it == inFlight_.end()) {
    EK_REQUIRE(job <= submitted_, RangeError, "job " + std::to_string(job) + " was never submitted");
    return false;
  }
  const auto whole = [](double v) { return v >= 0 && v <= 9007199254740991.0 && v == static_cast<double>(static_cast<int64_t>(v)); };
  for (size_t i = 0; i < count; ++i) {
    EK_REQUIRE(whole(dstRows[i]) && whole(rows[i]) && whole(dataOffsets[i]) && (scaleOffsets == nullptr || whole(scaleOffsets[i])), RangeError,
               "piece " + std::to_string(i) + ": rows and offsets must be integers >= 0");
    const auto dst = static_cast<int64_t>(dstRows[i]);
    const auto n = static_cast<int64_t>(rows[i]);
    EK_REQUIRE(insideJob(it->second, dst, n), RangeError, "piece " + std::to_string(i) + ": cache rows " + std::to_string(dst) + ".." + std::to_string(dst + n - 1) + " are not job " + std::to_string(job) + "'s");
    EK_REQUIRE(static_cast<uint64_t>(dataOffsets[i]) + static_cast<uint64_t>(n * g_.rowBytes) <= dataBytes, RangeError, "piece " + std::to_string(i) + " runs past data");
    if (g_.scaleRowBytes > 0) {
      EK_REQUIRE(scales != nullptr && scaleOffsets != nullptr && static_cast<uint64_t>(scaleOffsets[i]) + static_cast<uint64_t>(n * g_.scaleRowBytes) <= scaleBytes, RangeError,
                 "piece " + std::to_string(i) + " runs past scales");
    }
  }
  for (size_t i = 0; i < count; ++i) {
    const auto dst = static_cast<int64_t>(dstRows[i]);
    const auto n = static_cast<int64_t>(rows[i]);
    std::memcpy(cacheData_ + dst * g_.rowBytes, data + static_cast<size_t>(dataOffsets[i]), static_cast<size_t>(n * g_.rowBytes));
    if (g_.scaleRowBytes > 0) std::memcpy(cacheScales_ + dst * g_.scaleRowBytes, scales + static_cast<size_t>(scaleOffsets[i]), static_cast<size_t>(n * g_.scaleRowBytes));
  }
  return true;
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
