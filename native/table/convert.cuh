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

// v -> e4m3 code (|v| clamped to 448), round to nearest even; NaN -> 0x7f, and -0 -> +0.
// Normal results keep the float's top three mantissa bits, rounded in the integer bits, so
// the carry of a round-up lands in the exponent; subnormal steps (of 2^-9) round by adding
// and taking away 2^23 (round to nearest even, as rintf). Both are computed and one is
// selected, without branches, so that a row's loop of it vectorises. Checked against the
// frexpf/ldexpf formulation it replaced on all 2^32 inputs.
EK_HD uint8_t floatToE4m3(float v) {
  const uint32_t raw = bitsFromFloat(v), bits = raw & 0x7fffffffu;
  const uint32_t sign = (raw >> 24) & 0x80u & (0u - static_cast<uint32_t>(bits != 0));  // -0 -> +0
  const uint32_t mag = bits < 0x43e00000u ? bits : 0x43e00000u;  // 448 (inf and NaN too: NaN is patched below)
  const float steps = (floatFromBits(mag) * 512.0f + 8388608.0f) - 8388608.0f;  // |v| / 2^-9, rounded
  const uint32_t subnormal = static_cast<uint32_t>(static_cast<int32_t>(steps));
  const uint32_t rounded = mag + 0x7ffffu + ((mag >> 20) & 1u);
  const uint32_t normal = (rounded >> 20) - (120u << 3);  // exponent bias 127 -> 7
  const uint32_t below = 0u - static_cast<uint32_t>(mag < 0x3c800000u);  // below 2^-6: subnormal
  const uint32_t nan = 0u - static_cast<uint32_t>(bits > 0x7f800000u);
  const uint32_t code = sign | (subnormal & below) | (normal & ~below);
  return static_cast<uint8_t>((code & ~nan) | (0x7fu & nan));
}

// The UE8M0 code of the smallest power of two s with amax / s <= 448 (DeepSeek's rule);
// an all-zero block gets the code of a tiny scale.
EK_HD uint8_t ue8m0ForBlock(float amax) { return ue8m0ForMax(amax, kE4m3Max); }

// Encodes one row of fp32 values into `dtype` (scales: the row's UE8M0 codes for fp8,
// whose rows need a multiple of 32 channels).
EK_HD void encodeTableRow(TableDtype d, const float* src, int cols, uint8_t* row, uint8_t* scales) {
  if (d == TableDtype::F8E4M3) {
    for (int b = 0; b < cols; b += kScaleBlock) {
      // The largest magnitude by its bits (ordered as the values are), NaNs skipped. (An
      // integer maximum vectorises; fmaxf, used before, skipped quiet NaNs but let a
      // signaling one reset the maximum.)
      uint32_t amaxBits = 0;
      for (int i = b; i < b + kScaleBlock; ++i) {
        uint32_t a = bitsFromFloat(src[i]) & 0x7fffffffu;
        a = a > 0x7f800000u ? 0u : a;
        amaxBits = a > amaxBits ? a : amaxBits;
      }
      const uint8_t code = ue8m0ForBlock(floatFromBits(amaxBits));
      scales[b / kScaleBlock] = code;
      // Dividing by a power of two and multiplying by its (exact) reciprocal round the
      // same exact value once: the codes are those of src / scale.
      const float inverse = 1.0f / ue8m0ToFloat(code);
      for (int i = b; i < b + kScaleBlock; ++i) row[i] = floatToE4m3(src[i] * inverse);
    }
    return;
  }
  for (int c = 0; c < cols; ++c) {
    if (d == TableDtype::F32) {
      const uint32_t b = bitsFromFloat(src[c]);
      __builtin_memcpy(row + 4 * c, &b, 4);
    } else {
      const uint16_t b = d == TableDtype::BF16 ? floatToBf16(src[c]) : floatToF16(src[c]);
      __builtin_memcpy(row + 2 * c, &b, 2);
    }
  }
}

// SplitMix64's output mix; splitMix64(x) is the generator's output at state x.
EK_HD uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
EK_HD uint64_t splitMix64(uint64_t x) { return mix64(x + 0x9e3779b97f4a7c15ull); }

// Uniform in (0, 1) from 24 random bits.
EK_HD float unitUniform(uint64_t bits) {
  return (static_cast<float>(static_cast<int32_t>(bits & 0xffffffu)) + 0.5f) * 5.9604644775390625e-8f;  // (int: vectorises)
}

// -2 ln(u) for u in (0, 1]: u = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s)
// with s = (m - 1) / (m + 1), |s| < 0.172, by its odd series to s^9 (relative error below
// 1e-8 before rounding). Plain arithmetic, no libm: the same bits on every build, and a
// loop of it vectorises.
EK_HD float minusTwoLog(float u) {
  const uint32_t bits = bitsFromFloat(u);
  const uint32_t high = ((bits & 0x7fffffu) + 0x4afb0cu) >> 23;  // 1 when the mantissa is above sqrt(2)'s
  const float m = floatFromBits((bits & 0x7fffffu) | ((127u - high) << 23));
  const float e = static_cast<float>(static_cast<int>(bits >> 23) - 127 + static_cast<int>(high));
  const float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
  const float series = t * (2.0f + t2 * (0.6666666666666666f + t2 * (0.4f + t2 * (0.2857142857142857f + t2 * 0.2222222222222222f))));
  return -2.0f * (e * 0.6931471805599453f + series);
}

// cos and sin of 2 pi u for u in [0, 1]: the nearest quarter turn q, then Taylor series on
// the rest x in [-pi/4, pi/4] (to x^9 and x^8: errors below 4e-8), swapped and negated by q.
EK_HD void sinCosTurn(float u, float* cosOut, float* sinOut) {
  const float quarters = u * 4.0f;
  const float q = static_cast<float>(static_cast<int>(quarters + 0.5f));
  const float x = (quarters - q) * 1.5707963267948966f, x2 = x * x;
  const float s = x * (1.0f + x2 * (-1.6666666666666666e-1f + x2 * (8.333333333333333e-3f + x2 * (-1.984126984126984e-4f + x2 * 2.7557319223985893e-6f))));
  const float c = 1.0f + x2 * (-0.5f + x2 * (4.1666666666666664e-2f + x2 * (-1.388888888888889e-3f + x2 * 2.48015873015873e-5f)));
  // Selects and sign flips on the bits, not branches, so that a loop of it vectorises.
  const uint32_t turn = static_cast<uint32_t>(static_cast<int>(q)) & 3u;
  const uint32_t swap = 0u - (turn & 1u), sb = bitsFromFloat(s), cb = bitsFromFloat(c);
  const uint32_t cosBits = (sb & swap) | (cb & ~swap), sinBits = (cb & swap) | (sb & ~swap);
  *cosOut = floatFromBits(cosBits ^ ((((turn + 1u) >> 1) & 1u) << 31));  // turns 1 and 2: negative
  *sinOut = floatFromBits(sinBits ^ ((turn >> 1) << 31));                 // turns 2 and 3
}

// The 64 random bits of normal pair `pair` of a stream: SplitMix64 at state key + pair
// steps, where key = splitMix64(seed) (a counter-based generator: any split of the work
// gives the same values).
EK_HD uint64_t pairBits(uint64_t key, uint64_t pair) { return mix64(key + (pair + 1) * 0x9e3779b97f4a7c15ull); }

// The two N(0, scale^2) values of pair `pair` (Box-Muller from 24 + 24 of its bits).
EK_HD void normalPair(uint64_t key, uint64_t pair, float scale, float* even, float* odd) {
  const uint64_t r = pairBits(key, pair);
  const float radius = sqrtf(minusTwoLog(unitUniform(r >> 40))) * scale;
  float c, s;
  sinCosTurn(unitUniform(r >> 16), &c, &s);
  *even = radius * c;
  *odd = radius * s;
}

// Element i of a seeded N(0, scale^2) stream (elements 2k and 2k+1 are the cosine and sine
// halves of pair k) or U(-scale, scale) stream.
EK_HD float randomElement(uint64_t seed, uint64_t i, bool normal, float scale) {
  if (!normal) return (2.0f * unitUniform(splitMix64(seed * 0x100000001b3ull ^ splitMix64(i)) >> 40) - 1.0f) * scale;
  float even, odd;
  normalPair(splitMix64(seed), i >> 1, scale, &even, &odd);
  return (i & 1) ? odd : even;
}

// Elements [first, first + n) of the stream. The normal path's whole pairs go in chunks:
// their random bits first, then the arithmetic, as a loop without branches or calls that
// the compiler vectorises.
EK_HD void randomRow(uint64_t seed, uint64_t first, int n, bool normal, float scale, float* out) {
  int c = 0;
  if (normal && (first & 1)) out[c++] = randomElement(seed, first, true, scale);
  if (normal) {
    constexpr int kChunk = 64;
    const uint64_t key = splitMix64(seed);
    float u1[kChunk], u2[kChunk];
    for (int pairs = (n - c) / 2; pairs > 0;) {
      const int m = pairs < kChunk ? pairs : kChunk;
      const uint64_t pair0 = (first + c) >> 1;
      for (int p = 0; p < m; ++p) {
        const uint64_t r = pairBits(key, pair0 + p);
        u1[p] = unitUniform(r >> 40);
        u2[p] = unitUniform(r >> 16);
      }
      float* dst = out + c;
      for (int p = 0; p < m; ++p) {
        const float radius = sqrtf(minusTwoLog(u1[p])) * scale;
        float cosv, sinv;
        sinCosTurn(u2[p], &cosv, &sinv);
        dst[2 * p] = radius * cosv;
        dst[2 * p + 1] = radius * sinv;
      }
      c += 2 * m;
      pairs -= m;
    }
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
