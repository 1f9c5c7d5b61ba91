// Decoding one stored Engram table row to fp32 on the CPU, vectorised per instruction
// set: included by each kernel build (EK_CPU_ISA = baseline, avx2 or avx512) that reads table
// rows, so the layer's gather and the GEMM's gathered packing decode alike.
#pragma once
#include <cstdint>
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define EK_FP8_VECTOR_DECODE 1
#elif defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#define EK_FP8_AVX2_DECODE 1
#endif

#include "table/gather.cuh"
#include "common/prefetch.hpp"

#ifndef EK_CPU_ISA
#error "define EK_CPU_ISA before including row_decode_cpu.hpp"
#endif

namespace engram {
namespace EK_CPU_ISA {
namespace {

#if defined(EK_FP8_VECTOR_DECODE)
// 16 e4m3 codes times a UE8M0 scale, as fp32. e4m3 is fp16 with 3 fewer exponent and 7
// fewer mantissa bits: shifting the code into fp16 position and converting with vcvtph2ps
// gives value * 2^-8 exactly (subnormals included), so the scale is applied as
// x 256 x 2^(s-127). Same values as e4m3ToFloat (tested on every code); the NaN code is
// patched in.
inline __m512 fp8x16ToFloat(const uint8_t* codes16, uint8_t scaleCode) {
  const __m256i low7 = _mm256_set1_epi16(0x7f), signBit = _mm256_set1_epi16(0x80);
  const __m256i codes = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes16)));
  const __m256i magnitude = _mm256_and_si256(codes, low7);
  const __m256i half = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(codes, signBit), 8), _mm256_slli_epi16(magnitude, 7));
  const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtph_ps(half), _mm512_set1_ps(256.0f)), _mm512_set1_ps(ue8m0ToFloat(scaleCode)));
  return _mm512_mask_mov_ps(v, _mm256_cmpeq_epi16_mask(magnitude, low7), _mm512_set1_ps(floatFromBits(0x7fc00000u)));
}
#endif

#if defined(EK_FP8_AVX2_DECODE)
// The same steps 8 codes at a time with AVX2 and F16C.
inline __m256 fp8x8ToFloat(const uint8_t* codes8, float scale) {
  const __m128i low7 = _mm_set1_epi16(0x7f), signBit = _mm_set1_epi16(0x80);
  const __m128i codes = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes8)));
  const __m128i magnitude = _mm_and_si128(codes, low7);
  const __m128i half = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(codes, signBit), 8), _mm_slli_epi16(magnitude, 7));
  const __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtph_ps(half), _mm256_set1_ps(256.0f)), _mm256_set1_ps(scale));
  const __m256 isNan = _mm256_castsi256_ps(_mm256_cvtepi16_epi32(_mm_cmpeq_epi16(magnitude, low7)));
  return _mm256_blendv_ps(v, _mm256_set1_ps(floatFromBits(0x7fc00000u)), isNan);
}
#endif

template <TableDtype D>
void decodeRow(const uint8_t* row, const uint8_t* scales, int cols, float* __restrict dst) {
  if constexpr (D == TableDtype::F8E4M3) {
#if defined(EK_FP8_VECTOR_DECODE)
    for (int c0 = 0; c0 < cols; c0 += 16) _mm512_storeu_ps(dst + c0, fp8x16ToFloat(row + c0, scales[c0 / kScaleBlock]));
    return;
#elif defined(EK_FP8_AVX2_DECODE)
    // cols is a multiple of 32 for fp8 tables (one scale per 32 channels).
    for (int c0 = 0; c0 < cols; c0 += kScaleBlock) {
      const float scale = ue8m0ToFloat(scales[c0 / kScaleBlock]);
      for (int c = c0; c < c0 + kScaleBlock; c += 8) _mm256_storeu_ps(dst + c, fp8x8ToFloat(row + c, scale));
    }
    return;
#endif
    // One scale per 32 channels, decoded once; the codes then vectorise.
    for (int c0 = 0; c0 < cols; c0 += kScaleBlock) {
      const float scale = ue8m0ToFloat(scales[c0 / kScaleBlock]);
      for (int c = c0; c < c0 + kScaleBlock; ++c) dst[c] = e4m3ToFloat(row[c]) * scale;
    }
  } else {
#if defined(EK_FP8_AVX2_DECODE)
    if constexpr (D == TableDtype::F16 || D == TableDtype::BF16) {
      int c = 0;
      for (; c + 8 <= cols; c += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * c));
        const __m256 v = D == TableDtype::F16 ? _mm256_cvtph_ps(h) : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        _mm256_storeu_ps(dst + c, v);
      }
      for (; c < cols; ++c) dst[c] = decodeTableElement(D, row, scales, c);
      return;
    }
#endif
    for (int c = 0; c < cols; ++c) dst[c] = decodeTableElement(D, row, scales, c);
  }
}

// Requests a table row (and its fp8 scales) into the cache ahead of its decoding.
inline void prefetchTableRow(const TableView& t, TableView::RowRef row) {
  const int64_t bytes = t.rowStride();
  for (int64_t b = 0; b < bytes; b += 64) prefetchLine(row.data + b);
  if (row.scales != nullptr) prefetchLine(row.scales);  // fp8: the scales live apart
}
inline void prefetchTableRow(const TableView& t, int64_t r) { prefetchTableRow(t, t.row(r)); }

// A table row decoded to fp32 [t.cols] (exact for every format).
inline void decodeTableRow(const TableView& t, TableView::RowRef row, float* __restrict dst) {
  switch (t.dtype) {
    case TableDtype::F32: decodeRow<TableDtype::F32>(row.data, nullptr, t.cols, dst); break;
    case TableDtype::BF16: decodeRow<TableDtype::BF16>(row.data, nullptr, t.cols, dst); break;
    case TableDtype::F16: decodeRow<TableDtype::F16>(row.data, nullptr, t.cols, dst); break;
    default: decodeRow<TableDtype::F8E4M3>(row.data, row.scales, t.cols, dst);
  }
}
inline void decodeTableRow(const TableView& t, int64_t r, float* __restrict dst) { decodeTableRow(t, t.row(r), dst); }

}  // namespace
}  // namespace EK_CPU_ISA
}  // namespace engram
