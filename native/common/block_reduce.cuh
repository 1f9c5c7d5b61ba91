// Block-wide reductions shared by the CUDA kernels (one block per row of work).
#pragma once

namespace engram {

// The sum of v over the block; `shared` holds blockDim.x floats. Every thread returns it.
__device__ __forceinline__ float blockSum(float v, float* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  const float total = shared[0];
  __syncthreads();
  return total;
}

}  // namespace engram
