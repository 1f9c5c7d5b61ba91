// The CPU projection micro-kernel, compiled once per instruction set like the hashing
// loop (EK_CPU_ISA = baseline or avx512). GCC/Clang vector types give one source for
// both widths: 16 lanes x (12 rows, 2 vectors) with AVX-512, 4 lanes x (6 rows, 2
// vectors) on the x86-64 baseline, each sized to the build's register file.
#include <algorithm>
#include <cstring>

#include "gemm_ops.hpp"

#ifndef EK_CPU_ISA
#define EK_CPU_ISA baseline
#endif

namespace engram {
namespace EK_CPU_ISA {

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int kRows = 12;
#else
constexpr int kLanes = 4;
constexpr int kRows = 6;
#endif
constexpr int kVectors = 2;
constexpr int kWidth = kLanes * kVectors;  // columns per panel
constexpr int64_t kDepth = 1024;           // k per block: fewer passes over y (measured best)
constexpr int64_t kRowBlock = kRows * 16;  // rows of x packed at a time: stays in L2

using Vec = float __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec loadVec(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storeVec(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }

// acc[r][v] (+)= sum over kc of a[k][r] * b[k][v*kLanes ...]; a is packed [kc][kRows],
// b is the panel slice [kc][kWidth]. `c` holds the running sums between k blocks.
inline void microTile(const float* __restrict a, const float* __restrict b, int64_t kc, float* __restrict c,
                      int64_t ldc, const float* __restrict start, bool first) {
  Vec acc[kRows][kVectors];
  for (int r = 0; r < kRows; ++r) {
    for (int v = 0; v < kVectors; ++v) acc[r][v] = loadVec(first ? start + v * kLanes : c + r * ldc + v * kLanes);
  }
  for (int64_t k = 0; k < kc; ++k) {
    const Vec b0 = loadVec(b + k * kWidth);
    const Vec b1 = loadVec(b + k * kWidth + kLanes);
    const float* const ak = a + k * kRows;
    for (int r = 0; r < kRows; ++r) {
      acc[r][0] += b0 * ak[r];
      acc[r][1] += b1 * ak[r];
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int v = 0; v < kVectors; ++v) storeVec(c + r * ldc + v * kLanes, acc[r][v]);
  }
}

}  // namespace

int linearTileWidth() { return kWidth; }

// The machine's FMA peak, measured: 12 independent accumulator chains (enough to cover
// FMA latency on two pipes) of the build's vector width; returns flops performed.
double fmaPeakLoop(int64_t iterations, float* sink) {
  constexpr int kChains = 12;
  Vec acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = Vec{} + static_cast<float>(c);
  const Vec mul = Vec{} + 0.999999f, add = Vec{} + 1e-7f;
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * mul + add;
  }
  Vec total = Vec{};
  for (int c = 0; c < kChains; ++c) total += acc[c];
  *sink = total[0];
  return static_cast<double>(iterations) * kChains * kLanes * 2.0;
}

// Rows [rowBegin, rowEnd) x panels [panelBegin, panelEnd) of y = x W^T + b.
void linearTiles(const float* x, int64_t lda, const PackedLinear& w, float* y, int64_t ldy, int64_t rowBegin,
                 int64_t rowEnd, int64_t panelBegin, int64_t panelEnd) {
  const int64_t k = w.k;
  const int64_t blockRows = std::min<int64_t>(kRowBlock, rowEnd - rowBegin);
  const int64_t tiles = (blockRows + kRows - 1) / kRows;
  // One packing buffer per thread, reused across calls (no page faults per call).
  thread_local std::vector<float> packed;
  packed.resize(std::max(packed.size(), static_cast<size_t>(tiles) * kRows * kDepth));
  float edge[kRows * kWidth] = {};  // tiles that overhang the output are computed here
  float bias[kWidth];
  for (int64_t r0 = rowBegin; r0 < rowEnd; r0 += kRowBlock) {
    const int64_t rows = std::min<int64_t>(kRowBlock, rowEnd - r0);
    for (int64_t k0 = 0; k0 < k; k0 += kDepth) {
      const int64_t kc = std::min<int64_t>(kDepth, k - k0);
      // Pack x[r0 .. r0+rows, k0 .. k0+kc) as [tile][kc][kRows], zero rows past the end.
      for (int64_t t = 0; t * kRows < rows; ++t) {
        float* const dst = packed.data() + t * kRows * kDepth;
        for (int r = 0; r < kRows; ++r) {
          const int64_t row = t * kRows + r;
          if (row < rows) {
            const float* const src = x + (r0 + row) * lda + k0;
            for (int64_t kk = 0; kk < kc; ++kk) dst[kk * kRows + r] = src[kk];
          } else {
            for (int64_t kk = 0; kk < kc; ++kk) dst[kk * kRows + r] = 0.0f;
          }
        }
      }
      const bool first = k0 == 0;
      for (int64_t p = panelBegin; p < panelEnd; ++p) {
        const float* const panel = w.panels.data() + (p * k + k0) * kWidth;
        const int64_t col0 = p * kWidth;
        const int64_t cols = std::min<int64_t>(kWidth, w.n - col0);
        for (int c = 0; c < kWidth; ++c) bias[c] = c < cols ? w.bias[col0 + c] : 0.0f;
        for (int64_t t = 0; t * kRows < rows; ++t) {
          const int64_t row0 = r0 + t * kRows;
          const bool full = row0 + kRows <= rowEnd && cols == kWidth;
          float* const out = full ? y + row0 * ldy + col0 : edge;
          const int64_t ldo = full ? ldy : kWidth;
          const int64_t live = std::min<int64_t>(kRows, rowEnd - row0);
          if (!full && !first) {  // bring the running sums of the overhanging tile in
            for (int64_t r = 0; r < live; ++r) std::memcpy(edge + r * kWidth, y + (row0 + r) * ldy + col0, cols * sizeof(float));
          }
          microTile(packed.data() + t * kRows * kDepth, panel, kc, out, ldo, bias, first);
          if (!full) {
            for (int64_t r = 0; r < live; ++r) std::memcpy(y + (row0 + r) * ldy + col0, edge + r * kWidth, cols * sizeof(float));
          }
        }
      }
    }
  }
}

}  // namespace EK_CPU_ISA
}  // namespace engram
