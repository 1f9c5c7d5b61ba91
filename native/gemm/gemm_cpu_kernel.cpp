// The CPU projection micro-kernel, compiled once per instruction set like the hashing
// loop (EK_CPU_ISA = baseline, avx2 or avx512). GCC/Clang vector types give one source
// for every width, each tile sized to the build's register file: 16 lanes with AVX-512,
// 8 with AVX2/FMA, 4 on the x86-64 baseline.
#include <algorithm>
#include <chrono>
#include <cstring>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "gemm/gemm_ops.hpp"

#ifndef EK_CPU_ISA
#define EK_CPU_ISA baseline
#endif
#include "table/row_decode_cpu.hpp"

namespace engram {
namespace EK_CPU_ISA {

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int kRows = 12;
#elif defined(__AVX2__)
constexpr int kLanes = 8;  // 6 x 16 tile: 12 accumulators of the 16 ymm registers
constexpr int kRows = 6;
#else
constexpr int kLanes = 4;
constexpr int kRows = 6;
#endif
constexpr int kVectors = 2;
constexpr int kWidth = kLanes * kVectors;  // columns per panel
#if defined(__AVX2__) && !defined(__AVX512F__)
// Quantised weights are decoded once per row block: 192 rows halve that work against 96,
// and k blocks of 512 keep the packed block (about 400 KB) within a 512 KB L2.
constexpr int64_t kDepth = 512;
constexpr int64_t kRowBlockTiles = 32;
#else
constexpr int64_t kDepth = 1024;  // k per block: fewer passes over y (measured best)
constexpr int64_t kRowBlockTiles = 16;
#endif
// Packed rows of x lie kRowStride floats apart: not a multiple of 4 KiB, so the kRows
// streams the micro-kernel reads do not all fall into one L1 set.
constexpr int64_t kRowStride = kDepth + 16;
constexpr int64_t kRowBlock = kRows * kRowBlockTiles;  // rows of x packed at a time: stays in L2

using Vec = float __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec loadVec(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storeVec(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }

// acc[r][v] (+)= sum over kc of a[r][k] * b[k][v*kLanes ...]; a is packed [kRows][kRowStride],
// b is the panel slice [kc][kWidth]. `c` holds the running sums between k blocks. R <=
// kRows rows are computed (a tile's live rows, rounded up): each row's sums are the same
// whatever R, so a short tail tile costs its own rows only.
template <int R = kRows>
inline void microTile(const float* __restrict a, const float* __restrict b, int64_t kc, float* __restrict c,
                      int64_t ldc, const float* __restrict start, bool first) {
  Vec acc[R][kVectors];
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < kVectors; ++v) acc[r][v] = loadVec(first ? start + v * kLanes : c + r * ldc + v * kLanes);
  }
  for (int64_t k = 0; k < kc; ++k) {
    const Vec b0 = loadVec(b + k * kWidth);
    const Vec b1 = loadVec(b + k * kWidth + kLanes);
    for (int r = 0; r < R; ++r) {  // row r's k-th input: a constant offset from a + k
      acc[r][0] += b0 * a[r * kRowStride + k];
      acc[r][1] += b1 * a[r * kRowStride + k];
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < kVectors; ++v) storeVec(c + r * ldc + v * kLanes, acc[r][v]);
  }
}

#if defined(__AVX2__) && !defined(__AVX512F__)
// The full 6 x 16 AVX2 tile with its 12 accumulators in named registers. From the generic
// microTile<6> GCC kept one accumulator on the stack (16 ymm registers, 15 needed), which
// chained every k step through a store and a reload: the paper layer's projections ran at
// 44% of the FMA peak. The same fused multiply-adds in the same order: the same bits.
__attribute__((noinline)) void microTile6x16(const float* __restrict a, const float* __restrict b, int64_t kc, float* __restrict c,
                                             int64_t ldc, const float* __restrict start, bool first) {
  static_assert(kRows == 6 && kWidth == 16, "the AVX2 tile is 6 rows x 16 columns");
  const auto init = [&](int r, int v) { return _mm256_loadu_ps(first ? start + 8 * v : c + r * ldc + 8 * v); };
  __m256 c00 = init(0, 0), c01 = init(0, 1), c10 = init(1, 0), c11 = init(1, 1), c20 = init(2, 0), c21 = init(2, 1);
  __m256 c30 = init(3, 0), c31 = init(3, 1), c40 = init(4, 0), c41 = init(4, 1), c50 = init(5, 0), c51 = init(5, 1);
  // fn(row, its low and high accumulators) for the 6 rows, written out (inlined: the
  // registers stay named).
  const auto eachRow = [&](auto&& fn) {
    fn(0, c00, c01);
    fn(1, c10, c11);
    fn(2, c20, c21);
    fn(3, c30, c31);
    fn(4, c40, c41);
    fn(5, c50, c51);
  };
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b + k * kWidth);
    const __m256 b1 = _mm256_loadu_ps(b + k * kWidth + 8);
    eachRow([&](int r, __m256& lo, __m256& hi) {
      const __m256 x = _mm256_broadcast_ss(a + r * kRowStride + k);
      lo = _mm256_fmadd_ps(b0, x, lo);
      hi = _mm256_fmadd_ps(b1, x, hi);
    });
  }
  eachRow([&](int r, __m256& lo, __m256& hi) {
    _mm256_storeu_ps(c + r * ldc, lo);
    _mm256_storeu_ps(c + r * ldc + 8, hi);
  });
}
#endif

// One panel row of quantised weights (kWidth codes at `codes`) decoded to fp32 into dst,
// times the per-column scales (scaled formats). The GEMM's two paths share it: decoding a
// panel slice into a buffer (many row tiles), or straight into the FMA loop (one tile).
inline void decodePanelRow(WeightFormat format, const uint8_t* __restrict codes, const float* __restrict scale,
                           float* __restrict dst) {
  switch (format) {
    case WeightFormat::BF16: {
#if defined(__AVX512F__)
      for (int v = 0; v < kWidth; v += 16) {
        const __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 2 * v)));
        _mm512_storeu_ps(dst + v, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
      }
#elif defined(__AVX2__)
      for (int v = 0; v < kWidth; v += 8) {
        const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + 2 * v)));
        _mm256_storeu_ps(dst + v, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
      }
#else
      for (int c = 0; c < kWidth; ++c) {
        uint16_t h;
        std::memcpy(&h, codes + 2 * c, 2);
        dst[c] = bf16ToFloat(h);
      }
#endif
      break;
    }
    case WeightFormat::F16: {
#if defined(__AVX512F__)
      for (int v = 0; v < kWidth; v += 16) {
        _mm512_storeu_ps(dst + v, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 2 * v))));
      }
#elif defined(__AVX2__) && defined(__F16C__)
      for (int v = 0; v < kWidth; v += 8) {
        _mm256_storeu_ps(dst + v, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + 2 * v))));
      }
#else
      for (int c = 0; c < kWidth; ++c) {
        uint16_t h;
        std::memcpy(&h, codes + 2 * c, 2);
        dst[c] = f16ToFloat(h);
      }
#endif
      break;
    }
    case WeightFormat::E4M3: {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
      // e4m3 shifted into fp16 position converts exactly to value * 2^-8 (as the
      // table gather does); the NaN code is patched in.
      const __m256i low7 = _mm256_set1_epi16(0x7f), signBit = _mm256_set1_epi16(0x80);
      const __m512 rebias = _mm512_set1_ps(256.0f), nan = _mm512_set1_ps(floatFromBits(0x7fc00000u));
      for (int v = 0; v < kWidth; v += 16) {
        const __m256i c16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + v)));
        const __m256i magnitude = _mm256_and_si256(c16, low7);
        const __m256i half = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(c16, signBit), 8), _mm256_slli_epi16(magnitude, 7));
        __m512 x = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtph_ps(half), rebias), _mm512_load_ps(scale + v));
        x = _mm512_mask_mov_ps(x, _mm256_cmpeq_epi16_mask(magnitude, low7), nan);
        _mm512_storeu_ps(dst + v, x);
      }
#elif defined(__AVX2__) && defined(__F16C__)
      // The same integer steps 8 codes at a time: e4m3 placed in fp16 position, F16C's
      // exact conversion, then exact power-of-two products; the NaN code patched in.
      const __m128i low7 = _mm_set1_epi16(0x7f), signBit = _mm_set1_epi16(0x80);
      const __m256 rebias = _mm256_set1_ps(256.0f), nan = _mm256_set1_ps(floatFromBits(0x7fc00000u));
      for (int v = 0; v < kWidth; v += 8) {
        const __m128i c16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + v)));
        const __m128i magnitude = _mm_and_si128(c16, low7);
        const __m128i half = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(c16, signBit), 8), _mm_slli_epi16(magnitude, 7));
        const __m256 x = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtph_ps(half), rebias), _mm256_load_ps(scale + v));
        const __m256 isNan = _mm256_castsi256_ps(_mm256_cvtepi16_epi32(_mm_cmpeq_epi16(magnitude, low7)));
        _mm256_storeu_ps(dst + v, _mm256_blendv_ps(x, nan, isNan));
      }
#else
      for (int c = 0; c < kWidth; ++c) dst[c] = e4m3ToFloat(codes[c]) * scale[c];
#endif
      break;
    }
    case WeightFormat::E2M1: {
      constexpr int half = kWidth / 2;
#if defined(__AVX512F__)
      static_assert(half == 16, "the AVX-512 e2m1 decoder reads 16 bytes a row");
      const __m512 lut = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f, -1.0f, -1.5f,
                                        -2.0f, -3.0f, -4.0f, -6.0f);
      const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
      const __m512i low = _mm512_and_si512(bytes, _mm512_set1_epi32(0xf));
      const __m512i high = _mm512_srli_epi32(bytes, 4);
      _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_permutexvar_ps(low, lut), _mm512_load_ps(scale)));
      _mm512_storeu_ps(dst + half, _mm512_mul_ps(_mm512_permutexvar_ps(high, lut), _mm512_load_ps(scale + half)));
#elif defined(__AVX2__)
      // The 8 magnitudes by a lane permute, the sign (bit 3 of the code) moved to bit 31.
      static_assert(half % 8 == 0, "the AVX2 e2m1 decoder reads 8 bytes at a time");
      const __m256 magnitudes = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
      const __m256i seven = _mm256_set1_epi32(7), eight = _mm256_set1_epi32(8);
      const auto decode = [&](__m256i nibbles, const float* s) {
        const __m256 m = _mm256_permutevar8x32_ps(magnitudes, _mm256_and_si256(nibbles, seven));
        const __m256 signed_ = _mm256_or_ps(m, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(nibbles, eight), 28)));
        return _mm256_mul_ps(signed_, _mm256_load_ps(s));
      };
      for (int c = 0; c < half; c += 8) {
        const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + c)));
        _mm256_storeu_ps(dst + c, decode(_mm256_and_si256(bytes, _mm256_set1_epi32(0xf)), scale + c));
        _mm256_storeu_ps(dst + c + half, decode(_mm256_srli_epi32(bytes, 4), scale + c + half));
      }
#else
      for (int c = 0; c < half; ++c) {
        dst[c] = e2m1ToFloat(codes[c] & 0xfu) * scale[c];
        dst[c + half] = e2m1ToFloat(codes[c] >> 4) * scale[c + half];
      }
#endif
      break;
    }
    default: break;  // F32 weights are read from w.panels
  }
}

// Where panel p's codes and its column scales' codes start (scales: nullptr if unscaled).
inline const uint8_t* panelCodes(const PackedLinear& w, int64_t p, int64_t k0) {
  return w.codePanels.data() + (p * w.k + k0) * weightRowBytes(w.format, kWidth);
}
inline const uint8_t* panelScaleCodes(const PackedLinear& w, int64_t p) {
  const int64_t blocks = (w.k + kScaleBlock - 1) / kScaleBlock;
  return w.scalePanels.empty() ? nullptr : w.scalePanels.data() + p * blocks * kWidth;
}
// The column scales of row kAbs of k, when it starts a 32-row block (or is the first row).
inline void refreshScales(const uint8_t* scaleCodes, int64_t kk, int64_t kAbs, float* scale) {
  if (scaleCodes != nullptr && (kk == 0 || kAbs % kScaleBlock == 0)) {
    for (int c = 0; c < kWidth; ++c) scale[c] = ue8m0ToFloat(scaleCodes[(kAbs / kScaleBlock) * kWidth + c]);
  }
}

// Walks rows [k0, k0 + kc) of panel p: refreshes the column scales every 32 rows of k and
// hands each decoded row to `use(kk, row)`.
template <typename Use>
inline void forEachPanelRow(const PackedLinear& w, int64_t p, int64_t k0, int64_t kc, Use use) {
  const int64_t rowBytes = weightRowBytes(w.format, kWidth);
  const uint8_t* codes = panelCodes(w, p, k0);
  const uint8_t* scaleCodes = panelScaleCodes(w, p);
  alignas(64) float scale[kWidth];
  alignas(64) float row[kWidth];
  for (int64_t kk = 0; kk < kc; ++kk, codes += rowBytes) {
    refreshScales(scaleCodes, kk, k0 + kk, scale);
    decodePanelRow(w.format, codes, scale, row);
    use(kk, row);
  }
}

// The e4m3 rows of decodePanelRow, a whole row of codes at once and kept in registers for
// the FMA loop (no store and reload of a row buffer): the same integer steps, the same
// fp16 conversion and the same two products per element in the same order, so the same
// bits. At decode sizes (about one token per expert) the decode is most of the work: on
// the AVX2 build this takes about 20 instructions a row where the row buffer took about
// 34. Panels without NaN codes (kNan false) skip the NaN patch, which changes nothing there.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define EK_FUSED_E4M3_ROWS 1
static_assert(kWidth == 32, "the fused AVX-512 e4m3 decoder reads 32 codes a row");
template <bool kNan>
inline void decodeE4m3RowFused(const uint8_t* codes, const float* scale, Vec& b0, Vec& b1) {
  const __m512i low7 = _mm512_set1_epi16(0x7f), signBit = _mm512_set1_epi16(0x80);
  const __m512 rebias = _mm512_set1_ps(256.0f);
  const __m512i c16 = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes)));
  const __m512i magnitude = _mm512_and_si512(c16, low7);
  const __m512i half = _mm512_or_si512(_mm512_slli_epi16(_mm512_and_si512(c16, signBit), 8), _mm512_slli_epi16(magnitude, 7));
  __m512 x0 = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(half)), rebias), _mm512_load_ps(scale));
  __m512 x1 = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(half, 1)), rebias), _mm512_load_ps(scale + 16));
  if constexpr (kNan) {
    const __m512 nan = _mm512_set1_ps(floatFromBits(0x7fc00000u));
    const __mmask32 isNan = _mm512_cmpeq_epi16_mask(magnitude, low7);
    x0 = _mm512_mask_mov_ps(x0, static_cast<__mmask16>(isNan), nan);
    x1 = _mm512_mask_mov_ps(x1, static_cast<__mmask16>(isNan >> 16), nan);
  }
  std::memcpy(&b0, &x0, sizeof b0);
  std::memcpy(&b1, &x1, sizeof b1);
}
#elif defined(__AVX2__) && defined(__F16C__)
#define EK_FUSED_E4M3_ROWS 1
static_assert(kWidth == 16, "the fused AVX2 e4m3 decoder reads 16 codes a row");
template <bool kNan>
inline void decodeE4m3RowFused(const uint8_t* codes, const float* scale, Vec& b0, Vec& b1) {
  const __m256i low7 = _mm256_set1_epi16(0x7f), signBit = _mm256_set1_epi16(0x80);
  const __m256 rebias = _mm256_set1_ps(256.0f);
  const __m256i c16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
  const __m256i magnitude = _mm256_and_si256(c16, low7);
  const __m256i half = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(c16, signBit), 8), _mm256_slli_epi16(magnitude, 7));
  __m256 x0 = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(half)), rebias), _mm256_load_ps(scale));
  __m256 x1 = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(half, 1)), rebias), _mm256_load_ps(scale + 8));
  if constexpr (kNan) {
    const __m256 nan = _mm256_set1_ps(floatFromBits(0x7fc00000u));
    const __m256i isNan = _mm256_cmpeq_epi16(magnitude, low7);
    x0 = _mm256_blendv_ps(x0, nan, _mm256_castsi256_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(isNan))));
    x1 = _mm256_blendv_ps(x1, nan, _mm256_castsi256_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(isNan, 1))));
  }
  std::memcpy(&b0, &x0, sizeof b0);
  std::memcpy(&b1, &x1, sizeof b1);
}
#endif

#if defined(EK_FUSED_E4M3_ROWS)
template <bool kNan, typename Use>
inline void forEachE4m3RowFused(const PackedLinear& w, int64_t p, int64_t k0, int64_t kc, Use use) {
  const uint8_t* codes = panelCodes(w, p, k0);
  const uint8_t* scaleCodes = panelScaleCodes(w, p);
  alignas(64) float scale[kWidth];
  for (int64_t kk = 0; kk < kc; ++kk, codes += kWidth) {
    // The codes stream from memory once per decode step: asked for 1 KiB ahead, a line at
    // a time, which the hardware prefetcher alone did not keep up with (AVX2, MoE decode of
    // 8 tokens: 1.07 ms against 1.24-1.36 without it).
    if ((kk * kWidth) % 64 == 0) _mm_prefetch(reinterpret_cast<const char*>(codes + 1024), _MM_HINT_T0);
    refreshScales(scaleCodes, kk, k0 + kk, scale);
    Vec b0, b1;
    decodeE4m3RowFused<kNan>(codes, scale, b0, b1);
    use(kk, b0, b1);
  }
}
#endif

// Panel p's e4m3 rows through the build's fused decoder, without the NaN patch where
// packing found no NaN code in the panel. False where this build has none (the caller
// decodes row by row).
template <typename Use>
inline bool forEachE4m3PanelRowFused(const PackedLinear& w, int64_t p, int64_t k0, int64_t kc, Use use) {
#if defined(EK_FUSED_E4M3_ROWS)
  if (w.panelHasNan.empty() || w.panelHasNan[static_cast<size_t>(p)] != 0) forEachE4m3RowFused<true>(w, p, k0, kc, use);
  else forEachE4m3RowFused<false>(w, p, k0, kc, use);
  return true;
#else
  (void)w, (void)p, (void)k0, (void)kc, (void)use;
  return false;
#endif
}

// Rows [k0, k0 + kc) of panel p decoded to fp32 [kc][kWidth] (w.format != F32).
void decodePanel(const PackedLinear& w, int64_t p, int64_t k0, int64_t kc, float* __restrict dst) {
  if (w.format == WeightFormat::E4M3) {  // a row's codes in registers; NaN-free panels skip the patch
    const auto store = [&](int64_t kk, Vec b0, Vec b1) {
      storeVec(dst + kk * kWidth, b0);
      storeVec(dst + kk * kWidth + kLanes, b1);
    };
    if (forEachE4m3PanelRowFused(w, p, k0, kc, store)) return;
  }
  forEachPanelRow(w, p, k0, kc, [&](int64_t kk, const float* row) { std::memcpy(dst + kk * kWidth, row, sizeof(float) * kWidth); });
}

// microTile over quantised weights decoded row by row into the FMA loop: for a row block
// of one tile (decode steps), where a decoded slice would be read only once. Same values,
// same order of operations as microTile over decodePanel's slice: the same bits.
template <int R = kRows>
void microTileCodes(const float* __restrict a, const PackedLinear& w, int64_t p, int64_t k0, int64_t kc,
                    float* __restrict c, int64_t ldc, const float* __restrict start, bool first) {
  Vec acc[R][kVectors];
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < kVectors; ++v) acc[r][v] = loadVec(first ? start + v * kLanes : c + r * ldc + v * kLanes);
  }
  const auto fma = [&](int64_t k, Vec b0, Vec b1) {
    for (int r = 0; r < R; ++r) {  // row r's k-th input: a constant offset from a + k
      acc[r][0] += b0 * a[r * kRowStride + k];
      acc[r][1] += b1 * a[r * kRowStride + k];
    }
  };
  if (w.format != WeightFormat::E4M3 || !forEachE4m3PanelRowFused(w, p, k0, kc, fma)) {
    forEachPanelRow(w, p, k0, kc, [&](int64_t k, const float* row) { fma(k, loadVec(row), loadVec(row + kLanes)); });
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < kVectors; ++v) storeVec(c + r * ldc + v * kLanes, acc[r][v]);
  }
}

// The table rows of gathered rows [r0, r0 + rows), heads [h0, h1), resolved to addresses
// in one pass: a split table's segment lookups then run back to back, independent of one
// another, instead of in the chain of each row's reads.
inline const TableView::RowRef* resolveBlockRows(const GatheredRows& g, int64_t r0, int64_t rows, int h0, int h1) {
  thread_local std::vector<TableView::RowRef> refs;
  const int heads = h1 - h0;
  const int64_t n = rows * heads;
  if (refs.size() < static_cast<size_t>(n)) refs.resize(static_cast<size_t>(n));
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t base = (r0 + row) * g.stride + g.offset;
    for (int h = h0; h < h1; ++h) {
      const int64_t id = g.rowIds64 ? static_cast<const int64_t*>(g.rowIds)[base + h] : static_cast<const int32_t*>(g.rowIds)[base + h];
      refs[row * heads + (h - h0)] = g.table.row(id);
    }
  }
  return refs.data();
}

// Visits the table rows of gathered rows [r0, r0 + rows), heads [h0, h1), in order,
// visit(row, head, address), calling done(row) after each gathered row: one burst of
// random reads, before the GEMM work that uses them.
template <typename Visit, typename Done>
inline void forEachGatheredRow(const GatheredRows& g, int64_t r0, int64_t rows, int h0, int h1, Visit visit, Done done) {
  const int heads = h1 - h0;
  const TableView::RowRef* refs = resolveBlockRows(g, r0, rows, h0, h1);
  // Random rows of a large table (often a TLB miss each): requested kPrefetchAheadRows
  // table rows ahead, a group of kPrefetchGroupRows at a time.
  const int64_t total = rows * heads;
  for (int64_t q = 0; q < std::min(total, kPrefetchAheadRows); ++q) prefetchTableRow(g.table, refs[q]);
  int64_t requested = std::min(total, kPrefetchAheadRows);
  for (int64_t row = 0; row < rows; ++row) {
    for (int h = 0; h < heads; ++h) {
      const int64_t q = row * heads + h;
      if (q % kPrefetchGroupRows == 0) {
        for (const int64_t end = std::min(total, q + kPrefetchGroupRows + kPrefetchAheadRows); requested < end; ++requested) prefetchTableRow(g.table, refs[requested]);
      }
      visit(row, h0 + h, refs[q]);
    }
    done(row);
  }
}

int64_t nanosSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int linearTileWidth() { return kWidth; }

int64_t gatheredBlockRows() { return kRowBlock; }
int64_t gatheredBlockFloats(int64_t) { return kRowBlock * kRowStride; }
int64_t gatheredKBlocks(int64_t k) { return (k + kDepth - 1) / kDepth; }

void packGatheredBlock(const GatheredRows& g, int64_t r0, int64_t rows, int64_t k, int64_t kBlock, float* gathered) {
  // gathered holds gatheredBlockFloats(): never more rows than this build's block.
  EK_REQUIRE(rows >= 0 && rows <= kRowBlock, RangeError, "a gathered block of " + std::to_string(rows) + " rows is over this build's " + std::to_string(kRowBlock));
  // k block b: inputs [k0, kEnd), of heads [h0, h1), gathered just before the GEMM uses
  // them (a block of rows that stays in L2, not the whole row block's inputs).
  const int64_t k0 = kBlock * kDepth, kEnd = std::min(k, k0 + kDepth);
  const int cols = g.table.cols;
  const int h0 = static_cast<int>(k0 / cols), h1 = static_cast<int>((kEnd + cols - 1) / cols);
  thread_local std::vector<float> cut;  // a table row the block boundary cuts
  if (cut.size() < static_cast<size_t>(cols)) cut.resize(static_cast<size_t>(cols));
  forEachGatheredRow(
      g, r0, rows, h0, h1,
      [&](int64_t row, int h, TableView::RowRef ref) {
        const int64_t base = static_cast<int64_t>(h) * cols, from = std::max(base, k0), to = std::min(base + cols, kEnd);
        float* dst = gathered + row * kRowStride + (from - k0);
        if (from == base && to == base + cols) {
          decodeTableRow(g.table, ref, dst);
        } else {
          decodeTableRow(g.table, ref, cut.data());
          std::memcpy(dst, cut.data() + (from - base), static_cast<size_t>(to - from) * sizeof(float));
        }
      },
      [](int64_t) {});
}

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

// Rows [rowBegin, rowEnd) x panels [panelBegin, panelEnd) of y = x W^T + b (x row
// rowIndex[i] for product row i when rowIndex is given).
void linearTiles(const float* x, int64_t lda, const PackedLinear& w, float* y, int64_t ldy, int64_t rowBegin,
                 int64_t rowEnd, int64_t panelBegin, int64_t panelEnd, const int32_t* rowIndex,
                 const GatheredRows* gather, int64_t* packNanos) {
  const int64_t k = w.k;
  const int64_t blockRows = std::min<int64_t>(kRowBlock, rowEnd - rowBegin);
  const int64_t tiles = (blockRows + kRows - 1) / kRows;
  // One packing buffer per thread, reused across calls (no page faults per call).
  thread_local std::vector<float> packed;
  packed.resize(std::max(packed.size(), static_cast<size_t>(tiles) * kRows * kRowStride));
  thread_local std::vector<float> decoded;  // one panel slice of quantised weights
  if (w.format != WeightFormat::F32) decoded.resize(std::max(decoded.size(), static_cast<size_t>(kDepth * kWidth)));
  float edge[kRows * kWidth] = {};  // tiles that overhang the output are computed here
  float bias[kWidth];
  // Gathered rows: one k block of the row block at a time, [row][kRowStride], gathered
  // just before its panels run.
  thread_local std::vector<float> gathered;
  if (gather != nullptr) gathered.resize(std::max(gathered.size(), static_cast<size_t>(kRowBlock * kRowStride)));
  for (int64_t r0 = rowBegin; r0 < rowEnd; r0 += kRowBlock) {
    const int64_t rows = std::min<int64_t>(kRowBlock, rowEnd - r0);
    for (int64_t k0 = 0; k0 < k; k0 += kDepth) {
      const int64_t kc = std::min<int64_t>(kDepth, k - k0);
      // Pack x[r0 .. r0+rows, k0 .. k0+kc) as [tile][kRows][kRowStride]: each row a contiguous
      // copy (the micro-kernel broadcasts from kRows streams at constant offsets). Rows past
      // the end keep whatever the buffer held: each row's sums are independent of the
      // others and the overhanging rows' results are never stored.
      const float* blockA = packed.data();
      if (gather != nullptr) {
        const auto packStart = std::chrono::steady_clock::now();
        packGatheredBlock(*gather, r0, rows, k, k0 / kDepth, gathered.data());
        if (packNanos != nullptr) *packNanos += nanosSince(packStart);
        blockA = gathered.data();
      } else {
        const auto packStart = std::chrono::steady_clock::now();
        for (int64_t row = 0; row < rows; ++row) {
          const int64_t xr = rowIndex != nullptr ? rowIndex[r0 + row] : r0 + row;
          std::memcpy(packed.data() + row * kRowStride, x + xr * lda + k0, static_cast<size_t>(kc) * sizeof(float));
        }
        if (packNanos != nullptr) *packNanos += nanosSince(packStart);
      }
      const bool first = k0 == 0;
      for (int64_t p = panelBegin; p < panelEnd; ++p) {
        const float* panel = nullptr;
        const bool fused = w.format != WeightFormat::F32 && rows <= kRows;  // one tile: decode into the FMA loop
        if (w.format == WeightFormat::F32) {
          panel = w.panels.data() + (p * k + k0) * kWidth;
        } else if (!fused) {  // decoded once per row block, then read by every tile of it
          decodePanel(w, p, k0, kc, decoded.data());
          panel = decoded.data();
        }
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
          const float* const tileA = blockA + t * kRows * kRowStride;
          // The tile's live rows, rounded up to a kernel instance.
          if (fused) {
            if (live <= 1) microTileCodes<1>(tileA, w, p, k0, kc, out, ldo, bias, first);
            else if (live <= 4) microTileCodes<4>(tileA, w, p, k0, kc, out, ldo, bias, first);
            else microTileCodes<kRows>(tileA, w, p, k0, kc, out, ldo, bias, first);
          } else {
            if (live <= 1) microTile<1>(tileA, panel, kc, out, ldo, bias, first);
            else if (live <= 4) microTile<4>(tileA, panel, kc, out, ldo, bias, first);
            else {
#if defined(__AVX2__) && !defined(__AVX512F__)
              microTile6x16(tileA, panel, kc, out, ldo, bias, first);
#else
              microTile<kRows>(tileA, panel, kc, out, ldo, bias, first);
#endif
            }
          }
          if (!full) {
            for (int64_t r = 0; r < live; ++r) std::memcpy(y + (row0 + r) * ldy + col0, edge + r * kWidth, cols * sizeof(float));
          }
        }
      }
    }
  }
}

#if defined(__AVX512F__)
// The bf16 dot-product kernel: 12 rows x 32 columns, each vdpbf16ps adding two exact
// products per lane. x rows are converted to bf16 by truncation while packed, which is
// exact for the inputs callers promise (values that are bf16 already).
namespace {
constexpr int kBfRows = 12;
constexpr int kBfWidth = 32;
constexpr int64_t kBfPairs = 512;  // k pairs per block
constexpr int64_t kBfRowStride = kBfPairs + 16;  // packed row stride (see kRowStride)

__attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) inline void microTileBf16(
    const uint32_t* __restrict a, const uint16_t* __restrict b, int64_t pairs, float* __restrict c, int64_t ldc,
    const float* __restrict start, bool first) {
  __m512 acc[kBfRows][2];
  for (int r = 0; r < kBfRows; ++r) {
    acc[r][0] = first ? _mm512_loadu_ps(start) : _mm512_loadu_ps(c + r * ldc);
    acc[r][1] = first ? _mm512_loadu_ps(start + 16) : _mm512_loadu_ps(c + r * ldc + 16);
  }
  for (int64_t p = 0; p < pairs; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * kBfWidth * 2);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + p * kBfWidth * 2 + 32);
    for (int r = 0; r < kBfRows; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r * kBfRowStride + p]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
    }
  }
  for (int r = 0; r < kBfRows; ++r) {
    _mm512_storeu_ps(c + r * ldc, acc[r][0]);
    _mm512_storeu_ps(c + r * ldc + 16, acc[r][1]);
  }
}
}  // namespace

// Inputs src[0, count) as `pairs` bf16 pairs (zero past count): 32 at a time by
// vcvtne2ps2bf16, whose rounding is exact for the bf16 values callers promise.
static __attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) void packBf16Row(const float* src, int64_t count,
                                                                                 int64_t pairs, uint32_t* dst) {
  auto bf16Bits = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u >> 16;
  };
  int64_t p = 0;
  for (; p + 16 <= pairs && 2 * (p + 16) <= count; p += 16) {
    const __m512 lo = _mm512_loadu_ps(src + 2 * p);
    const __m512 hi = _mm512_loadu_ps(src + 2 * p + 16);
    _mm512_storeu_si512(dst + p, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
  }
  for (; p < pairs; ++p) {
    const uint32_t lo = 2 * p < count ? bf16Bits(src[2 * p]) : 0;
    const uint32_t hi = 2 * p + 1 < count ? bf16Bits(src[2 * p + 1]) : 0;
    dst[p] = lo | (hi << 16);
  }
}

#if defined(EK_FP8_VECTOR_DECODE)
// bf16 bits of the 128 e4m3 magnitudes (scale 1; code 0x7f is NaN), the table the
// integer decode below looks codes up in: 4 registers of 32 words.
struct Fp8Bf16Table {
  __m512i part[4];
  Fp8Bf16Table() {
    alignas(64) uint16_t bits[128];
    for (int m = 0; m < 128; ++m) {
      const float v = m == 0x7f ? floatFromBits(0x7fc00000u) : e4m3ToFloat(static_cast<uint8_t>(m));
      uint32_t u;
      std::memcpy(&u, &v, 4);
      bits[m] = static_cast<uint16_t>(u >> 16);  // exact: e4m3 values have 4 significant bits
    }
    for (int i = 0; i < 4; ++i) part[i] = _mm512_load_si512(bits + 32 * i);
  }
};

// 32 codes of one scale block as bf16 bits, by integer steps: the magnitude's bf16 bits
// from the table, the scale 2^(s-127) added to their exponent field, the sign or-ed in.
// The same bits as decoding to fp32 and rounding (values exact in bf16) wherever the
// result is a normal number, which scale codes in [10, 246] guarantee; NaN codes give
// the positive quiet NaN as the fp32 decode does.
static inline __m512i fp8x32ToBf16(const uint8_t* codes32, uint8_t scaleCode, const Fp8Bf16Table& t) {
  const __m512i codes = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes32)));
  const __m512i mag = _mm512_and_si512(codes, _mm512_set1_epi16(0x7f));
  const __m512i low = _mm512_permutex2var_epi16(t.part[0], mag, t.part[1]);
  const __m512i high = _mm512_permutex2var_epi16(t.part[2], mag, t.part[3]);
  __m512i bits = _mm512_mask_blend_epi16(_mm512_test_epi16_mask(mag, _mm512_set1_epi16(0x40)), low, high);
  const __mmask32 finite = _mm512_cmpneq_epi16_mask(mag, _mm512_set1_epi16(0x7f));
  const __mmask32 scaled = _mm512_mask_cmpneq_epi16_mask(finite, mag, _mm512_setzero_si512());
  bits = _mm512_mask_add_epi16(bits, scaled, bits, _mm512_set1_epi16(static_cast<int16_t>((scaleCode - 127) * 128)));
  const __m512i sign = _mm512_slli_epi16(_mm512_and_si512(codes, _mm512_set1_epi16(0x80)), 8);
  return _mm512_or_si512(bits, _mm512_maskz_mov_epi16(finite, sign));
}

// Codes [c0, c1) of one fp8 table row (input k0 + c at code c) as bf16 into a packed row
// whose pair 0 is input kFirst: pairs are consecutive inputs, so the bf16 values lie in
// input order. A scale block whose scale could make a value subnormal or overflow (code
// outside [10, 246]) goes through fp32 and rounding instead.
static __attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) void packFp8RowBf16(TableView::RowRef ref, int c0, int c1,
                                                                                    int64_t k0, int64_t kFirst, uint32_t* row) {
  static const Fp8Bf16Table table;
  for (int c = c0; c < c1; c += kScaleBlock) {
    const uint8_t s = ref.scales[c / kScaleBlock];
    uint32_t* dst = row + (k0 + c - kFirst) / 2;
    if (s >= 10 && s <= 246) {
      _mm512_storeu_si512(dst, fp8x32ToBf16(ref.data + c, s, table));
    } else {
      for (int h = 0; h < kScaleBlock; h += 16) {
        const __m256bh bf = _mm512_cvtneps_pbh(fp8x16ToFloat(ref.data + c + h, s));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + h / 2), (__m256i)bf);
      }
    }
  }
}
#endif

int64_t gatheredBlockPairs(int64_t) { return kRowBlock * kBfRowStride; }
int64_t gatheredPairBlocks(int64_t k) { return ((k + 1) / 2 + kBfPairs - 1) / kBfPairs; }

__attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) void packGatheredBlockBf16(
    const GatheredRows& g, int64_t r0, int64_t rows, int64_t k, int64_t pairBlock, uint32_t* gathered) {
  EK_REQUIRE(rows >= 0 && rows <= kRowBlock, RangeError, "a gathered block of " + std::to_string(rows) + " rows is over this build's " + std::to_string(kRowBlock));
  // Pair block b: inputs [kFirst, kEnd), of heads [h0, h1), gathered just before the
  // GEMM uses them (a block of rows that stays in L2, not the whole row block's inputs).
  const int64_t kPairs = (k + 1) / 2;
  const int64_t p0 = pairBlock * kBfPairs, pc = std::min<int64_t>(kBfPairs, kPairs - p0);
  const int64_t kFirst = 2 * p0, kEnd = std::min(k, 2 * (p0 + pc));
  const int cols = g.table.cols;
  const int h0 = static_cast<int>(kFirst / cols), h1 = static_cast<int>((kEnd + cols - 1) / cols);
  const auto codeRange = [&](int h) {
    const int64_t base = static_cast<int64_t>(h) * cols;
    return std::make_pair(static_cast<int>(std::max(kFirst, base) - base), static_cast<int>(std::min(kEnd, base + cols) - base));
  };
#if defined(EK_FP8_VECTOR_DECODE)
  if (g.table.dtype == TableDtype::F8E4M3 && kFirst % 16 == 0) {
    // fp8 rows decoded straight into the bf16 block (no fp32 row in between): a block
    // boundary (2 * kBfPairs inputs) and a row (a multiple of 32 codes) never cut 16 codes.
    forEachGatheredRow(
        g, r0, rows, h0, h1,
        [&](int64_t row, int h, TableView::RowRef ref) {
          const auto [c0, c1] = codeRange(h);
          packFp8RowBf16(ref, c0, c1, static_cast<int64_t>(h) * cols, kFirst, gathered + row * kBfRowStride);
        },
        [](int64_t) {});
    return;
  }
#endif
  thread_local std::vector<float> part;
  const int64_t width = static_cast<int64_t>(h1 - h0) * cols;
  if (part.size() < static_cast<size_t>(width)) part.resize(static_cast<size_t>(width));
  forEachGatheredRow(
      g, r0, rows, h0, h1, [&](int64_t, int h, TableView::RowRef ref) { decodeTableRow(g.table, ref, part.data() + static_cast<int64_t>(h - h0) * cols); },
      [&](int64_t row) { packBf16Row(part.data() + (kFirst - static_cast<int64_t>(h0) * cols), kEnd - kFirst, pc, gathered + row * kBfRowStride); });
}

__attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) void linearTilesBf16(
    const float* x, int64_t lda, const PackedLinear& w, float* y, int64_t ldy, int64_t rowBegin, int64_t rowEnd,
    int64_t panelBegin, int64_t panelEnd, const int32_t* rowIndex, const GatheredRows* gather, int64_t* packNanos) {
  const int64_t k = w.k;
  const int64_t kPairs = (k + 1) / 2;
  thread_local std::vector<uint32_t> packed;
  packed.resize(std::max<size_t>(packed.size(), static_cast<size_t>(kRowBlock / kBfRows + 1) * kBfRows * kBfRowStride));
  float edge[kBfRows * kBfWidth] = {};
  float bias[kBfWidth];
  // Gathered rows: one pair block of the row block at a time, [row][kBfRowStride],
  // gathered just before its panels run.
  thread_local std::vector<uint32_t> gathered;
  if (gather != nullptr) gathered.resize(std::max(gathered.size(), static_cast<size_t>(kRowBlock * kBfRowStride)));

  for (int64_t r0 = rowBegin; r0 < rowEnd; r0 += kRowBlock) {
    const int64_t rows = std::min<int64_t>(kRowBlock, rowEnd - r0);
    for (int64_t p0 = 0; p0 < kPairs; p0 += kBfPairs) {
      const int64_t pc = std::min<int64_t>(kBfPairs, kPairs - p0);
      // [tile][kBfRows][kBfPairs] bf16 pairs, each row packed contiguously; rows past the
      // end are left as they were (see linearTiles).
      const int64_t kFirst = 2 * p0, kCount = std::min(2 * pc, k - kFirst);
      const uint32_t* blockA = packed.data();
      if (gather != nullptr) {
        const auto packStart = std::chrono::steady_clock::now();
        packGatheredBlockBf16(*gather, r0, rows, k, p0 / kBfPairs, gathered.data());
        if (packNanos != nullptr) *packNanos += nanosSince(packStart);
        blockA = gathered.data();
      } else {
        const auto packStart = std::chrono::steady_clock::now();
        for (int64_t row = 0; row < rows; ++row) {
          packBf16Row(x + (rowIndex != nullptr ? rowIndex[r0 + row] : r0 + row) * lda + kFirst, kCount, pc,
                      packed.data() + row * kBfRowStride);
        }
        if (packNanos != nullptr) *packNanos += nanosSince(packStart);
      }
      const bool first = p0 == 0;
      for (int64_t p = panelBegin; p < panelEnd; ++p) {
        const uint16_t* panel = w.panelsBf16.data() + (p * kPairs + p0) * kBfWidth * 2;
        const int64_t col0 = p * kBfWidth;
        const int64_t cols = std::min<int64_t>(kBfWidth, w.n - col0);
        for (int c = 0; c < kBfWidth; ++c) bias[c] = c < cols ? w.bias[col0 + c] : 0.0f;
        for (int64_t t = 0; t * kBfRows < rows; ++t) {
          const int64_t row0 = r0 + t * kBfRows;
          const bool full = row0 + kBfRows <= rowEnd && cols == kBfWidth;
          float* out = full ? y + row0 * ldy + col0 : edge;
          const int64_t ldo = full ? ldy : kBfWidth;
          const int64_t live = std::min<int64_t>(kBfRows, rowEnd - row0);
          if (!full && !first) {
            for (int64_t r = 0; r < live; ++r) std::memcpy(edge + r * kBfWidth, y + (row0 + r) * ldy + col0, cols * sizeof(float));
          }
          microTileBf16(blockA + t * kBfRows * kBfRowStride, panel, pc, out, ldo, bias, first);
          if (!full) {
            for (int64_t r = 0; r < live; ++r) std::memcpy(y + (row0 + r) * ldy + col0, edge + r * kBfWidth, cols * sizeof(float));
          }
        }
      }
    }
  }
}
#endif

}  // namespace EK_CPU_ISA
}  // namespace engram
