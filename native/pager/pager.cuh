// Element-level body of paged gathers: where a table row lives in the cache. Shared by
// the CPU translation loop and CUDA kernels that read the page table on the device.
//
// Cache layout: `slots` page slots of `pageRows` rows each, then the hot rows (resident
// for good). A row of an absent page has no cache row: callers never translate one (the
// pager pins every page of a batch before translating it).
#pragma once
#include <cstdint>

#include "common/common.hpp"

namespace engram {

// Row `row` of the table as a row of the cache: hotIndex >= 0 when the row is resident
// in the hot region, else in `slot`, the slot the page table gives its page.
EK_HD int64_t pagedCacheRow(int64_t row, int64_t pageRows, int32_t slot, int64_t slots, int64_t hotIndex) {
  if (hotIndex >= 0) return slots * pageRows + hotIndex;
  return static_cast<int64_t>(slot) * pageRows + row % pageRows;
}

// Open-addressing lookup of the hot rows (keys -1 = empty; capacity a power of two).
EK_HD int64_t hotRowIndex(int64_t row, const int64_t* keys, const int32_t* values, int64_t capacity) {
  if (capacity == 0) return -1;
  uint64_t h = static_cast<uint64_t>(row) * 0x9e3779b97f4a7c15ull;
  for (int64_t probe = 0; probe < capacity; ++probe) {
    const int64_t at = static_cast<int64_t>((h >> 17) + static_cast<uint64_t>(probe)) & (capacity - 1);
    if (keys[at] == row) return values[at];
    if (keys[at] < 0) return -1;
  }
  return -1;
}

}  // namespace engram
