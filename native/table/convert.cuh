// Element-level bodies of table conversion: fp32 -> bf16 / f16 / fp8-e4m3 with UE8M0
// block scales (round to nearest even everywhere), and a counter-based random source
// for deterministic initialisation. The decoders live in gather.cuh.
#pragma once
#include <cmath>
#include <cstdint>

#include "table/gather.cuh"
#include "gemm/quant.cuh"

namespace engram {

EK_HD uint16_t floatToBf16(float f) {
  const uint32_t bits = bitsFromFloat(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

EK_HD uint16_t floatToF16(float f) {
  const uint32_t bits = bitsFromFloat(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;               // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;              // rounds to >= 65536: inf
  if (abs < 0x38800000u) {                                    // below 2^-14: f16 subnormal
    const float magnitude = floatFromBits(abs) * 16777216.0f;  // in units of 2^-24, exact
    return sign | static_cast<uint16_t>(rintf(magnitude));     // rint rounds half to even
  }
  const uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
  return sign | static_cast<uint16_t>((rounded - 0x38000000u) >> 13);
}

constexpr float kE4m3Max = 448.0f;

// |v| <= 448 (callers clamp) -> e4m3 code, round to nearest even.
EK_HD uint8_t floatToE4m3(float v) {
  if (v != v) return 0x7fu;
  const uint8_t sign = v < 0.0f ? 0x80u : 0u;
  float a = fminf(fabsf(v), kE4m3Max);
  if (a < 0.015625f) return sign | static_cast<uint8_t>(rintf(a * 512.0f));  // subnormal steps of 2^-9 (8 -> 2^-6)
  int e;
  frexpf(a, &e);  // a = f * 2^e, f in [0.5, 1): the leading bit has weight 2^(e-1)
  const float step = ldexpf(1.0f, e - 4);  // three mantissa bits below the leading one
  int q = static_cast<int>(rintf(a / step));  // in [8, 16]
  int exponent = e - 1;
  if (q == 16) {
    q = 8;
    ++exponent;
  }
  return sign | static_cast<uint8_t>(((exponent + 7) << 3) | (q - 8));
}

// The UE8M0 code of the smallest power of two s with amax / s <= 448 (DeepSeek's rule);
// an all-zero block gets the code of a tiny scale.
EK_HD uint8_t ue8m0ForBlock(float amax) { return ue8m0ForMax(amax, kE4m3Max); }

// Encodes one row of fp32 values into `dtype` (scales: the row's UE8M0 codes for fp8).
EK_HD void encodeTableRow(TableDtype d, const float* src, int cols, uint8_t* row, uint8_t* scales) {
  for (int c = 0; c < cols; ++c) {
    switch (d) {
      case TableDtype::F32: {
        const uint32_t b = bitsFromFloat(src[c]);
        __builtin_memcpy(row + 4 * c, &b, 4);
        break;
      }
      case TableDtype::BF16: {
        const uint16_t b = floatToBf16(src[c]);
        __builtin_memcpy(row + 2 * c, &b, 2);
        break;
      }
      case TableDtype::F16: {
        const uint16_t b = floatToF16(src[c]);
        __builtin_memcpy(row + 2 * c, &b, 2);
        break;
      }
      default: {
        if (c % kScaleBlock == 0) {
          float amax = 0.0f;
          for (int i = c; i < c + kScaleBlock; ++i) amax = fmaxf(amax, fabsf(src[i]));
          scales[c / kScaleBlock] = ue8m0ForBlock(amax);
        }
        row[c] = floatToE4m3(src[c] / ue8m0ToFloat(scales[c / kScaleBlock]));
      }
    }
  }
}

// SplitMix64: element i of stream `seed` (so any thread split gives the same values).
EK_HD uint64_t splitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in (0, 1) from 24 random bits.
EK_HD float unitUniform(uint64_t bits) { return (static_cast<float>(bits >> 40) + 0.5f) * 5.9604644775390625e-8f; }

// Element i of a seeded N(0, std^2) (Box-Muller; elements 2k and 2k+1 are the cosine and
// sine halves of one pair) or U(-bound, bound) stream.
EK_HD float randomElement(uint64_t seed, uint64_t i, bool normal, float scale) {
  if (!normal) return (2.0f * unitUniform(splitMix64(seed * 0x100000001b3ull ^ splitMix64(i))) - 1.0f) * scale;
  const uint64_t r = splitMix64(seed * 0x100000001b3ull ^ splitMix64(i >> 1));
  const float u1 = unitUniform(r), u2 = unitUniform(splitMix64(r));
  const float radius = sqrtf(-2.0f * logf(u1)) * scale;
  const float angle = 6.283185307179586f * u2;
  return (i & 1) ? radius * sinf(angle) : radius * cosf(angle);
}

// A row of the stream: the pairs share their logarithm and square root.
EK_HD void randomRow(uint64_t seed, uint64_t first, int n, bool normal, float scale, float* out) {
  int c = 0;
  if (normal && (first & 1)) out[c++] = randomElement(seed, first, true, scale);
  for (; normal && c + 1 < n; c += 2) {
    const uint64_t r = splitMix64(seed * 0x100000001b3ull ^ splitMix64((first + c) >> 1));
    const float u1 = unitUniform(r), u2 = unitUniform(splitMix64(r));
    const float radius = sqrtf(-2.0f * logf(u1)) * scale;
    const float angle = 6.283185307179586f * u2;
    out[c] = radius * cosf(angle);
    out[c + 1] = radius * sinf(angle);
  }
  for (; c < n; ++c) out[c] = randomElement(seed, first + c, normal, scale);
}

// Encodes weight row o of w [n, k] (fp32) into `format`; the block's scale codes must be
// set already (quantizeWeightsCpu chooses them from the block's amax).
EK_HD void encodeWeightRow(WeightFormat f, const float* w, const uint8_t* scales, int blockRows, int64_t k, int64_t o,
                           uint8_t* codes) {
  uint8_t* row = codes + o * weightRowBytes(f, k);
  const int64_t blocks = (k + kScaleBlock - 1) / kScaleBlock;
  for (int64_t i = 0; i < k; ++i) {
    const float v = w[o * k + i];
    switch (f) {
      case WeightFormat::F32: {
        const uint32_t b = bitsFromFloat(v);
        __builtin_memcpy(row + 4 * i, &b, 4);
        break;
      }
      case WeightFormat::BF16:
      case WeightFormat::F16: {
        const uint16_t b = f == WeightFormat::BF16 ? floatToBf16(v) : floatToF16(v);
        __builtin_memcpy(row + 2 * i, &b, 2);
        break;
      }
      default: {
        const float scale = ue8m0ToFloat(scales[(o / blockRows) * blocks + i / kScaleBlock]);
        if (f == WeightFormat::E4M3) {
          row[i] = floatToE4m3(v / scale);
        } else {
          const uint8_t code = floatToE2m1(v / scale);
          row[i / 2] = (i & 1) ? static_cast<uint8_t>((row[i / 2] & 0x0fu) | (code << 4)) : code;
        }
      }
    }
  }
}

}  // namespace engram
