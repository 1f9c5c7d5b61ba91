// Table conversion and seeded initialisation on the CPU (row-parallel; the values of a
// row never depend on the thread split).
#include <vector>

#include "convert.cuh"
#include "convert_ops.hpp"

namespace engram {

void convertTableCpu(const TableView& src, uint8_t* dst, uint8_t* dstScales, TableDtype dstDtype, ThreadPool& pool,
                     int threads) {
  EK_REQUIRE(src.data != nullptr && dst != nullptr, TypeError, "table buffers are missing");
  EK_REQUIRE(src.dtype != TableDtype::F8E4M3 || src.scales != nullptr, TypeError, "fp8 source needs its scales");
  EK_REQUIRE(dstDtype != TableDtype::F8E4M3 || (dstScales != nullptr && src.cols % kScaleBlock == 0), RangeError,
             "fp8 output needs scales and a multiple of 32 channels");
  const int64_t rowBytes = static_cast<int64_t>(src.cols) * tableElementBytes(dstDtype);
  pool.parallelFor(src.rows, threads, [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(src.cols));
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* in = src.rowBytes(r);
      const uint8_t* inScales = src.rowScales(r);
      for (int c = 0; c < src.cols; ++c) row[c] = decodeTableElement(src.dtype, in, inScales, c);
      encodeTableRow(dstDtype, row.data(), src.cols, dst + r * rowBytes,
                     dstScales ? dstScales + r * (src.cols / kScaleBlock) : nullptr);
    }
  });
}

void fillRandomCpu(uint8_t* dst, uint8_t* dstScales, TableDtype dtype, int64_t rows, int cols, uint64_t seed,
                   bool normal, float scale, ThreadPool& pool, int threads) {
  EK_REQUIRE(dst != nullptr && rows >= 0 && cols >= 1, TypeError, "output buffer is missing");
  EK_REQUIRE(dtype != TableDtype::F8E4M3 || (dstScales != nullptr && cols % kScaleBlock == 0), RangeError,
             "fp8 output needs scales and a multiple of 32 channels");
  const int64_t rowBytes = static_cast<int64_t>(cols) * tableElementBytes(dtype);
  pool.parallelFor(rows, threads, [&](int64_t begin, int64_t end) {
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = begin; r < end; ++r) {
      randomRow(seed, static_cast<uint64_t>(r) * cols, cols, normal, scale, row.data());
      encodeTableRow(dtype, row.data(), cols, dst + r * rowBytes, dstScales ? dstScales + r * (cols / kScaleBlock) : nullptr);
    }
  });
}

}  // namespace engram
