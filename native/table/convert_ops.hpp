// Host entry points of table conversion and seeded initialisation.
#pragma once
#include <cstdint>

#include "table/gather.cuh"
#include "gemm/quant.cuh"
#include "common/thread_pool.hpp"

namespace engram {

// Every row of `src` decoded to fp32 and re-encoded as `dstDtype` (round to nearest
// even; fp8 gets a UE8M0 scale per 32 channels into dstScales).
void convertTableCpu(const TableView& src, uint8_t* dst, uint8_t* dstScales, TableDtype dstDtype, ThreadPool& pool,
                     int threads);

// rows x cols of N(0, scale^2) (normal) or U(-scale, scale) values from a counter-based
// stream, encoded as `dtype`.
void fillRandomCpu(uint8_t* dst, uint8_t* dstScales, TableDtype dtype, int64_t rows, int cols, uint64_t seed,
                   bool normal, float scale, ThreadPool& pool, int threads);

// Projection weights w [n, k] (fp32) -> codes in `format` (row-major, see quant.cuh) and,
// for e4m3/e2m1, UE8M0 scales [ceil(n/blockRows), ceil(k/32)]: per block the smallest
// power of two that clips nothing. Round to nearest even.
void quantizeWeightsCpu(const float* w, int64_t n, int64_t k, WeightFormat format, int blockRows, uint8_t* codes,
                        uint8_t* scales, ThreadPool& pool, int threads);

// The inverse: codes (+ scales) -> fp32 [n, k], exact.
void dequantizeWeightsCpu(const uint8_t* codes, const uint8_t* scales, int64_t n, int64_t k, WeightFormat format,
                          int blockRows, float* out, ThreadPool& pool, int threads);

}  // namespace engram
