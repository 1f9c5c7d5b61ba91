// Element-level bodies of the Engram gate (the paper's context-aware gating), shared by
// the CUDA kernel and the CPU backend.
//
//   gate = sigmoid(ssqrt( <RMSNorm(k) * w1, RMSNorm(q) * w2> / sqrt(hidden) ))
//   ssqrt(s) = sign(s) * sqrt(max(|s|, 1e-6))
//
// RMSNorm(x) * w = x * w / sqrt(mean(x^2) + eps), so the dot product is
// sum(k*w1*q*w2) / (rms(k) * rms(q)): one pass over the row, no normalised copies.
#pragma once
#include <cmath>

#include "common/common.hpp"
#include "table/gather.cuh"  // floatFromBits / bitsFromFloat

namespace engram {

constexpr float kGateClamp = 1e-6f;

// exp(x) to about 2 ulp without a library call, so the CPU loops that use it vectorise
// (Cody-Waite reduction by ln 2, Cephes' degree-5 polynomial, exponent by bit
// arithmetic). Inputs are clamped to [-86, 88], where the callers' 1 + exp(.) no longer
// changes; NaN stays NaN.
EK_HD float expApprox(float x) {
  // Selects, not fminf/fmaxf: those are library calls that keep loops from vectorising.
  const float xc = x < -86.0f ? -86.0f : (x > 88.0f ? 88.0f : x);
  const float n = rintf(xc * 1.44269504088896341f);
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = (p * r) * r + r + 1.0f;
  const float scaled = floatFromBits(bitsFromFloat(y) + (static_cast<uint32_t>(static_cast<int32_t>(n)) << 23));
  return x != x ? x : scaled;
}

EK_HD float sigmoidf(float x) { return 1.0f / (1.0f + expApprox(-x)); }

EK_HD float signedSqrt(float s) {
  const float r = sqrtf(fmaxf(fabsf(s), kGateClamp));
  return s > 0.0f ? r : (s < 0.0f ? -r : (s == 0.0f ? 0.0f : s));  // sign(0) = 0, NaN stays NaN
}

// The gate from the three sums of one (token, branch) row.
EK_HD float gateFromSums(float keySquares, float querySquares, float weightedDot, int hidden, float eps) {
  const float n = static_cast<float>(hidden);
  const float rk = 1.0f / sqrtf(keySquares / n + eps);
  const float rq = 1.0f / sqrtf(querySquares / n + eps);
  return sigmoidf(signedSqrt(weightedDot * rk * rq / sqrtf(n)));
}

// Channels [begin, end) of a row's three sums (the CUDA kernel splits a row over a
// block's threads; the CPU takes the whole row).
struct GateSums {
  float keySquares;
  float querySquares;
  float weightedDot;
};

EK_HD GateSums gateSums(const float* key, const float* query, const float* w1, const float* w2, int begin, int end,
                        int step) {
  GateSums s{0.0f, 0.0f, 0.0f};
  for (int j = begin; j < end; j += step) {
    s.keySquares += key[j] * key[j];
    s.querySquares += query[j] * query[j];
    s.weightedDot += (key[j] * w1[j]) * (query[j] * w2[j]);
  }
  return s;
}

EK_HD float silu(float y) { return y / (1.0f + expApprox(-y)); }

}  // namespace engram
