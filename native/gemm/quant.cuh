// Element-level bodies of quantised projection weights, shared by the CPU GEMM's panel
// decoder, the quantisers and CUDA:
//   bf16, f16                 one 16-bit code per weight;
//   e4m3 + UE8M0              fp8 codes, one power-of-two scale per 32 inputs of a row
//                             (DeepSeek's 32x32 block scales are this with the block's
//                             scale repeated on each of its 32 rows);
//   e2m1 + UE8M0 (MXFP4)      4-bit codes, two per byte (even input in the low nibble),
//                             one power-of-two scale per 32 inputs of a row.
// Every code times its scale is exact in fp32, so a GEMM over decoded weights gives the
// bits of the same GEMM over the dequantised fp32 matrix.
#pragma once
#include <cmath>
#include <cstdint>

#include "table/gather.cuh"

namespace engram {

// F32, BF16 and F16 share their codes with TableDtype.
enum class WeightFormat : int { F32 = 0, BF16 = 1, F16 = 2, E4M3 = 3, E2M1 = 4 };
static_assert(static_cast<int>(WeightFormat::BF16) == static_cast<int>(TableDtype::BF16) &&
                  static_cast<int>(WeightFormat::F16) == static_cast<int>(TableDtype::F16),
              "plain weight formats mirror the table dtypes");

constexpr float kE2m1Max = 6.0f;

EK_HD bool weightFormatScaled(WeightFormat f) { return f == WeightFormat::E4M3 || f == WeightFormat::E2M1; }

// Bytes of one row of `k` codes.
EK_HD int64_t weightRowBytes(WeightFormat f, int64_t k) {
  switch (f) {
    case WeightFormat::F32: return 4 * k;
    case WeightFormat::BF16:
    case WeightFormat::F16: return 2 * k;
    case WeightFormat::E4M3: return k;
    default: return (k + 1) / 2;
  }
}

// e2m1: sign, 2 exponent bits (bias 1), 1 mantissa bit; exponent 0 is the subnormal 0.5.
// Magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6; no inf or NaN.
EK_HD float e2m1ToFloat(uint8_t code) {
  const uint32_t exp = (code >> 1) & 0x3u;
  const uint32_t man = code & 0x1u;
  const float magnitude = exp == 0 ? 0.5f * static_cast<float>(man) : floatFromBits(((exp + 126u) << 23) | (man << 22));
  return (code & 0x8u) ? -magnitude : magnitude;
}

// |v| <= 6 (callers scale) -> e2m1 code, round to nearest even (on the code: ties go to
// the even mantissa); NaN -> 0.
EK_HD uint8_t floatToE2m1(float v) {
  if (v != v) return 0;
  const uint8_t sign = v < 0.0f ? 0x8u : 0u;
  const float a = fminf(fabsf(v), kE2m1Max);
  // Code magnitudes 0..7 are increasing: pick the nearest, ties to the even code.
  uint8_t best = 0;
  float bestErr = a;
  for (uint8_t c = 1; c < 8; ++c) {
    const float err = fabsf(a - e2m1ToFloat(c));
    if (err < bestErr || (err == bestErr && (c & 1u) == 0)) {
      best = c;
      bestErr = err;
    }
  }
  return sign | best;
}

// The UE8M0 code of the smallest power of two s with amax / s <= maxCode: nothing is
// clipped (DeepSeek's rule for fp8, applied alike to e2m1 with maxCode 6).
EK_HD uint8_t ue8m0ForMax(float amax, float maxCode) {
  const float ratio = fmaxf(amax, 1e-30f) / maxCode;
  int e;
  const float f = frexpf(ratio, &e);     // ratio = f * 2^e, f in [0.5, 1)
  int exponent = f == 0.5f ? e - 1 : e;  // ceil(log2(ratio))
  exponent = exponent < -127 ? -127 : (exponent > 127 ? 127 : exponent);
  return static_cast<uint8_t>(exponent + 127);
}

// Weight (o, i) of a row-major code matrix [n, k]. Scaled formats: scales
// [ceil(n/blockRows), ceil(k/32)], one per blockRows x 32 block (1: per row, MXFP4;
// 32: DeepSeek's fp8 blocks).
EK_HD float weightElement(WeightFormat f, const uint8_t* codes, const uint8_t* scales, int blockRows, int64_t k,
                          int64_t o, int64_t i) {
  const uint8_t* row = codes + o * weightRowBytes(f, k);
  switch (f) {
    case WeightFormat::F32:
    case WeightFormat::BF16:
    case WeightFormat::F16:  // stored as a table row of the same format (the codes agree)
      return decodeTableElement(static_cast<TableDtype>(f), row, nullptr, static_cast<int>(i));
    default: {
      const float scale = ue8m0ToFloat(scales[(o / blockRows) * ((k + kScaleBlock - 1) / kScaleBlock) + i / kScaleBlock]);
      if (f == WeightFormat::E4M3) return e4m3ToFloat(row[i]) * scale;
      return e2m1ToFloat((row[i / 2] >> (4 * (i & 1))) & 0xfu) * scale;
    }
  }
}

}  // namespace engram
