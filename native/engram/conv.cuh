// Element-level bodies of the Engram ShortConv, shared by the CUDA kernel and the CPU
// backend: per hc branch RMSNorm, a depthwise causal conv (kernel K, dilation D, no
// bias), SiLU, added to its input:  out = v + SiLU(conv(RMSNorm(v))).
#pragma once
#include <cstdint>

#include "common/common.hpp"
#include "engram/gating.cuh"

namespace engram {

// One sequence's conv input: the gated values [seqLen][hc][hidden] (`tokenStride`
// floats from one token to the next, so they may sit inside a wider buffer), their inverse RMS
// per (t, branch), and the normalised rows of the `historyLen` positions before this
// chunk ([historyLen][hc][hidden], oldest first; null: zeros, i.e. the sequence start).
struct ConvSequence {
  const float* value;
  const float* inverseRms;
  const float* history;
  int64_t tokenStride;
  int seqLen;
  int historyLen;
  int hc;
  int hidden;
};

// RMSNorm(v)[t, g, j] * w, reaching into the history for t < 0.
EK_HD float convInput(const ConvSequence& s, const float* normWeight, int t, int g, int j) {
  if (t >= 0) {
    const float v = s.value[t * s.tokenStride + static_cast<int64_t>(g) * s.hidden + j];
    return v * s.inverseRms[static_cast<int64_t>(t) * s.hc + g] * normWeight[g * s.hidden + j];
  }
  const int h = s.historyLen + t;
  if (s.history == nullptr || h < 0) return 0.0f;
  return s.history[(static_cast<int64_t>(h) * s.hc + g) * s.hidden + j];
}

// Output channel (g, j) at position t: v + SiLU(sum_i w[i] * x[t - (K-1-i) * D]).
EK_HD float shortConvOutput(const ConvSequence& s, const float* normWeight, const float* convWeight, int kernelSize,
                            int dilation, int t, int g, int j) {
  const float* w = convWeight + (static_cast<int64_t>(g) * s.hidden + j) * kernelSize;
  float y = 0.0f;
  for (int i = 0; i < kernelSize; ++i) y += w[i] * convInput(s, normWeight, t - (kernelSize - 1 - i) * dilation, g, j);
  const float v = s.value[t * s.tokenStride + static_cast<int64_t>(g) * s.hidden + j];
  return v + silu(y);
}

}  // namespace engram
