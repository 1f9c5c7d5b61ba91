// The shared-memory tile product of the CUDA GEMMs (engram.cu's projections, moe.cu's
// grouped expert GEMMs): 64 x 64 output tiles, k in steps of 16, 256 threads each
// accumulating a 4 x 4 block. Callers load As[k][row] and Ws[k][col] their own way.
#pragma once

namespace engram {

constexpr int kTile = 64, kTileDepth = 16, kPer = 4;

// acc[i][j] += sum over the kTileDepth k of As[k][ty * kPer + i] * Ws[k][tx * kPer + j].
__device__ __forceinline__ void accumulateTile(const float (*As)[kTile + 1], const float (*Ws)[kTile + 1], int tx, int ty,
                                               float (&acc)[kPer][kPer]) {
  for (int kk = 0; kk < kTileDepth; ++kk) {
    float a[kPer], w[kPer];
    for (int i = 0; i < kPer; ++i) a[i] = As[kk][ty * kPer + i];
    for (int j = 0; j < kPer; ++j) w[j] = Ws[kk][tx * kPer + j];
    for (int i = 0; i < kPer; ++i)
      for (int j = 0; j < kPer; ++j) acc[i][j] += a[i] * w[j];
  }
}

}  // namespace engram
