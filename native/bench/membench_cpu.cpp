#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#include "common/common.hpp"
#include "bench/membench_ops.hpp"
#include "common/prefetch.hpp"

namespace engram {

uint64_t readRowsCpu(const uint8_t* base, int64_t rows, int64_t rowBytes, const int32_t* ids, int64_t count,
                     ThreadPool& pool, int threads, const uint8_t* scales, int64_t scaleBytes) {
  EK_REQUIRE(rowBytes % 8 == 0 && rowBytes > 0, RangeError, "row bytes must be a positive multiple of 8");
  for (int64_t i = 0; i < count; ++i) {
    EK_REQUIRE(ids[i] >= 0 && ids[i] < rows, RangeError, "rowIds[" + std::to_string(i) + "] is outside the table");
  }
  std::atomic<uint64_t> fold{0};
  const auto prefetchRow = [&](int64_t i) {
    const uint8_t* row = base + static_cast<int64_t>(ids[i]) * rowBytes;
    for (int64_t b = 0; b < rowBytes; b += 64) prefetchLine(row + b);
    if (scales != nullptr) prefetchLine(scales + static_cast<int64_t>(ids[i]) * scaleBytes);
  };
  pool.parallelFor(count, threads, [&](int64_t begin, int64_t end) {
    uint64_t local = 0;
    // Requested as the gathers request their rows (kPrefetchAheadRows ahead, in groups),
    // so the yardstick reads random rows as fast as this code knows how.
    for (int64_t i = begin; i < std::min(end, begin + kPrefetchAheadRows); ++i) prefetchRow(i);
    for (int64_t g = begin; g < end; g += kPrefetchGroupRows) {
      const int64_t groupEnd = std::min(end, g + kPrefetchGroupRows);
      for (int64_t i = g + kPrefetchAheadRows; i < std::min(end, groupEnd + kPrefetchAheadRows); ++i) prefetchRow(i);
      for (int64_t i = g; i < groupEnd; ++i) {
        const uint8_t* row = base + static_cast<int64_t>(ids[i]) * rowBytes;
        for (int64_t b = 0; b < rowBytes; b += 8) {
          uint64_t v;
          std::memcpy(&v, row + b, 8);
          local ^= v + static_cast<uint64_t>(b);
        }
        if (scales != nullptr) {
          const uint8_t* s = scales + static_cast<int64_t>(ids[i]) * scaleBytes;
          for (int64_t b = 0; b < scaleBytes; ++b) local += s[b];
        }
      }
    }
    fold.fetch_xor(local);
  });
  return fold.load();
}

}  // namespace engram
