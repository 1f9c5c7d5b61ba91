// The layers' projection on CUDA: C = A W^T + bias in fp32 tiles (tile_gemm.cuh).
#pragma once
#include "common/common.hpp"
#include "common/cuda_check.cuh"
#include "gemm/tile_gemm.cuh"

namespace engram {
namespace {

// C[m, n] = bias[n] + sum_k A[m, k] W[n, k]: 64 x 64 tiles, 16 x 16 threads of 4 x 4.
__global__ void linearKernel(const float* __restrict__ A, int64_t M, int64_t K, const float* __restrict__ W,
                             const float* __restrict__ bias, int64_t N, float* __restrict__ C) {
  __shared__ float As[kTileDepth][kTile + 1];
  __shared__ float Ws[kTileDepth][kTile + 1];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kTile, col0 = static_cast<int64_t>(blockIdx.y) * kTile;
  float acc[kPer][kPer] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kTileDepth) {
    for (int i = threadIdx.x; i < kTile * kTileDepth; i += blockDim.x) {
      const int r = i / kTileDepth, kk = i % kTileDepth;
      As[kk][r] = (row0 + r < M && k0 + kk < K) ? A[(row0 + r) * K + k0 + kk] : 0.0f;
      Ws[kk][r] = (col0 + r < N && k0 + kk < K) ? W[(col0 + r) * K + k0 + kk] : 0.0f;
    }
    __syncthreads();
    accumulateTile(As, Ws, tx, ty, acc);
    __syncthreads();
  }
  for (int i = 0; i < kPer; ++i) {
    for (int j = 0; j < kPer; ++j) {
      const int64_t r = row0 + ty * kPer + i, c = col0 + tx * kPer + j;
      if (r < M && c < N) C[r * N + c] = bias[c] + acc[i][j];
    }
  }
}

// Row tiles on x, whose limit (2^31 - 1) no token count reaches; column tiles on y, whose
// limit (65535) bounds N at 4,194,240, far above any layer's width.
void launchLinear(const float* A, int64_t M, int64_t K, const float* W, const float* bias, int64_t N, float* C, cudaStream_t s) {
  const int64_t rowTiles = (M + kTile - 1) / kTile, colTiles = (N + kTile - 1) / kTile;
  EK_REQUIRE(colTiles <= 65535, RangeError, "projection width " + std::to_string(N) + " is over the CUDA kernel's limit of " + std::to_string(65535 * kTile));
  EK_REQUIRE(rowTiles <= 0x7fffffff, RangeError, "too many tokens for one CUDA projection: " + std::to_string(M));
  linearKernel<<<dim3(static_cast<unsigned>(rowTiles), static_cast<unsigned>(colTiles)), 256, 0, s>>>(A, M, K, W, bias, N, C);
}

}  // namespace
}  // namespace engram
