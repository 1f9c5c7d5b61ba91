// Element-level bodies of the table gather: decoding one stored element of an Engram
// table to fp32. Shared by the CUDA gather kernel and the CPU backend.
//
// Storage formats (the `TableDtype` codes the TS layer passes):
//   f32, bf16, f16              plain rows;
//   f8e4m3 + UE8M0 scales       DeepSeek-V4.1's rows: one e4m3 code per channel and one
//                               power-of-two scale code per 32 channels of a row.
#pragma once
#include <cstdint>

#include "common/common.hpp"

namespace engram {

enum class TableDtype : int { F32 = 0, BF16 = 1, F16 = 2, F8E4M3 = 3 };

constexpr int kScaleBlock = 32;  // channels per UE8M0 scale

// Host-side name of a table format, for messages ("f32", "bf16", "f16", "f8e4m3").
inline const char* tableDtypeName(TableDtype d) {
  return d == TableDtype::F32 ? "f32" : d == TableDtype::BF16 ? "bf16" : d == TableDtype::F16 ? "f16" : "f8e4m3";
}

EK_HD int tableElementBytes(TableDtype d) {
  return d == TableDtype::F32 ? 4 : (d == TableDtype::F8E4M3 ? 1 : 2);
}

EK_HD float floatFromBits(uint32_t bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float f;
  __builtin_memcpy(&f, &bits, sizeof f);
  return f;
#endif
}

EK_HD uint32_t bitsFromFloat(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t b;
  __builtin_memcpy(&b, &f, sizeof b);
  return b;
#endif
}

EK_HD float bf16ToFloat(uint16_t h) { return floatFromBits(static_cast<uint32_t>(h) << 16); }

// IEEE binary16 -> binary32, exact for every code (subnormals, inf, NaN).
EK_HD float f16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0x1fu) return floatFromBits(sign | 0x7f800000u | (man << 13));
  if (exp != 0) return floatFromBits(sign | ((exp + 112u) << 23) | (man << 13));
  const float magnitude = static_cast<float>(man) * 5.9604644775390625e-8f;  // man * 2^-24, exact
  return sign ? -magnitude : magnitude;
}

// OCP fp8 e4m3 ("fn": no infinities, S.1111.111 is NaN) -> binary32, exact.
EK_HD float e4m3ToFloat(uint8_t c) {
  const uint32_t sign = static_cast<uint32_t>(c & 0x80u) << 24;
  const uint32_t exp = (c >> 3) & 0xfu;
  const uint32_t man = c & 0x7u;
  if (exp == 0xfu && man == 0x7u) return floatFromBits(sign | 0x7fc00000u);
  if (exp != 0) return floatFromBits(sign | ((exp + 120u) << 23) | (man << 20));
  const float magnitude = static_cast<float>(man) * 0.001953125f;  // man * 2^-9, exact
  return sign ? -magnitude : magnitude;
}

// UE8M0 scale code -> 2^(code - 127); code 255 is NaN.
EK_HD float ue8m0ToFloat(uint8_t c) {
  if (c == 0xffu) return floatFromBits(0x7fc00000u);
  if (c == 0) return floatFromBits(0x00400000u);  // 2^-127, a float subnormal
  return floatFromBits(static_cast<uint32_t>(c) << 23);
}

// Channel `c` of a stored row (`row` points at the row's first byte; `scales` at the
// row's scale codes, fp8 only).
EK_HD float decodeTableElement(TableDtype d, const uint8_t* row, const uint8_t* scales, int c) {
  switch (d) {
    case TableDtype::F32: {
      uint32_t bits;
      __builtin_memcpy(&bits, row + 4 * c, 4);
      return floatFromBits(bits);
    }
    case TableDtype::BF16: {
      uint16_t v;
      __builtin_memcpy(&v, row + 2 * c, 2);
      return bf16ToFloat(v);
    }
    case TableDtype::F16: {
      uint16_t v;
      __builtin_memcpy(&v, row + 2 * c, 2);
      return f16ToFloat(v);
    }
    default:
      return e4m3ToFloat(row[c]) * ue8m0ToFloat(scales[c / kScaleBlock]);
  }
}

// Most row ranges one table may be split into (a checkpoint's model-parallel shards, each
// memory-mapped where it lies). Inline, so a view stays a plain value with no owner.
constexpr int kMaxTableSegments = 64;

// Rows firstRow.. of a split table: their bytes (and fp8 scales) start at data (scales).
struct TableSegment {
  int64_t firstRow;
  const uint8_t* data;
  const uint8_t* scales;
};

// A table as the kernels see it: `rows` x `cols`, row-major, `data` in `dtype`; `scales`
// [rows][cols / 32] for fp8 (null otherwise). Row offsets are 64-bit: a table may hold
// more than 2^31 elements. With segmentCount > 0 the rows lie in several regions
// (segments, by firstRow; data/scales then name the first); device copies are always one.
struct TableView {
  const uint8_t* data;
  const uint8_t* scales;
  TableDtype dtype;
  int64_t rows;
  int cols;
  int segmentCount;
  TableSegment segments[kMaxTableSegments];
  EK_HD int64_t rowStride() const { return static_cast<int64_t>(cols) * tableElementBytes(dtype); }
  // The segment holding row r: the last one starting at or before it. A binary search
  // whose steps depend only on segmentCount (the comparison picks by conditional move):
  // hashed rows land in random segments, where a branch would mispredict half the time.
  EK_HD int segmentOf(int64_t r) const {
    int lo = 0;
    for (int n = segmentCount; n > 1;) {
      const int half = n / 2;
      lo = segments[lo + half].firstRow <= r ? lo + half : lo;
      n -= half;
    }
    return lo;
  }
  struct RowRef {
    const uint8_t* data;
    const uint8_t* scales;  // null unless fp8
  };
  // Row r's bytes and (fp8) scales, with one segment lookup.
  EK_HD RowRef row(int64_t r) const {
    const int64_t scaleRow = cols / kScaleBlock;
    if (segmentCount == 0) return {data + r * rowStride(), scales == nullptr ? nullptr : scales + r * scaleRow};
    const TableSegment& s = segments[segmentOf(r)];
    const int64_t local = r - s.firstRow;
    return {s.data + local * rowStride(), s.scales == nullptr ? nullptr : s.scales + local * scaleRow};
  }
  EK_HD const uint8_t* rowBytes(int64_t r) const { return row(r).data; }
  EK_HD const uint8_t* rowScales(int64_t r) const { return row(r).scales; }
  // Rows of segment i (the whole table when it is one region).
  EK_HD int64_t segmentRows(int i) const {
    if (segmentCount == 0) return rows;
    return (i + 1 < segmentCount ? segments[i + 1].firstRow : rows) - segments[i].firstRow;
  }
};

}  // namespace engram
