// Table conversion and seeded initialisation on the CPU (row-parallel; the values of a
// row never depend on the thread split).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/cpu_features.hpp"
#include "table/convert.cuh"
#include "table/convert_cpu_kernel.hpp"
#include "table/convert_ops.hpp"

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
  // The widest build of the row loop this CPU runs (ENGRAM_CPU_KERNEL caps it); all write
  // the same bytes.
  CpuFillKernel kernel = baseline::fillRandomRows;
#if defined(EK_HAVE_AVX2_KERNEL)
  if (cpuHasAvx2()) kernel = avx2::fillRandomRows;
#endif
#if defined(EK_HAVE_AVX512_KERNEL)
  if (cpuHasAvx512()) kernel = avx512::fillRandomRows;
#endif
  pool.parallelFor(rows, threads, [&](int64_t begin, int64_t end) {
    kernel(dst, dstScales, dtype, begin, end, cols, seed, normal, scale);
  });
}

static void checkWeightArgs(int64_t n, int64_t k, WeightFormat format, int blockRows, const void* codes,
                            const uint8_t* scales) {
  EK_REQUIRE(n >= 1 && k >= 1, RangeError, "weights need n >= 1 and k >= 1");
  EK_REQUIRE(codes != nullptr, TypeError, "weight codes are missing");
  EK_REQUIRE(format != WeightFormat::E2M1 || k % 2 == 0, RangeError, "e2m1 weights need an even k, got " + std::to_string(k));
  EK_REQUIRE(!weightFormatScaled(format) || (scales != nullptr && blockRows >= 1), TypeError,
             "e4m3 and e2m1 weights need scales and blockRows >= 1");
}

void quantizeWeightsCpu(const float* w, int64_t n, int64_t k, WeightFormat format, int blockRows, uint8_t* codes,
                        uint8_t* scales, ThreadPool& pool, int threads) {
  checkWeightArgs(n, k, format, blockRows, codes, scales);
  EK_REQUIRE(w != nullptr, TypeError, "weights are missing");
  const bool scaled = weightFormatScaled(format);
  const int64_t blocks = (k + kScaleBlock - 1) / kScaleBlock;
  const int64_t groups = scaled ? (n + blockRows - 1) / blockRows : n;
  const int64_t groupRows = scaled ? blockRows : 1;
  const float maxCode = format == WeightFormat::E4M3 ? kE4m3Max : kE2m1Max;
  // A group of rows shares its scales: each group is quantised by one thread.
  pool.parallelFor(groups, threads, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const int64_t r0 = g * groupRows, r1 = std::min<int64_t>(n, r0 + groupRows);
      if (scaled) {
        for (int64_t b = 0; b < blocks; ++b) {
          float amax = 0.0f;
          for (int64_t r = r0; r < r1; ++r) {
            for (int64_t i = b * kScaleBlock; i < std::min<int64_t>(k, (b + 1) * kScaleBlock); ++i) {
              amax = fmaxf(amax, fabsf(w[r * k + i]));
            }
          }
          scales[g * blocks + b] = ue8m0ForMax(amax, maxCode);
        }
      }
      for (int64_t r = r0; r < r1; ++r) encodeWeightRow(format, w, scales, blockRows, k, r, codes);
    }
  });
}

void dequantizeWeightsCpu(const uint8_t* codes, const uint8_t* scales, int64_t n, int64_t k, WeightFormat format,
                          int blockRows, float* out, ThreadPool& pool, int threads) {
  checkWeightArgs(n, k, format, blockRows, codes, scales);
  EK_REQUIRE(out != nullptr, TypeError, "output buffer is missing");
  pool.parallelFor(n, threads, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      for (int64_t i = 0; i < k; ++i) out[o * k + i] = weightElement(format, codes, scales, blockRows, k, o, i);
    }
  });
}

}  // namespace engram
