// Measuring sticks for the benchmarks: what this machine's memory gives a row gather.
#pragma once
#include <cstdint>

#include "common/thread_pool.hpp"

namespace engram {

// Reads `count` rows of `rowBytes` bytes at ids[i] * rowBytes from `base` (8-byte loads
// XOR-folded so nothing is optimised away) and returns the fold. With `scales`, each row's
// `scaleBytes` bytes at ids[i] * scaleBytes are read too: an fp8 row as stored (its codes
// and, in another tensor, its UE8M0 scales).
uint64_t readRowsCpu(const uint8_t* base, int64_t rows, int64_t rowBytes, const int32_t* ids, int64_t count,
                     ThreadPool& pool, int threads, const uint8_t* scales = nullptr, int64_t scaleBytes = 0);

}  // namespace engram
