// Dense projections y = x W^T + b (torch.nn.Linear layout) on the CPU: weights are
// packed once into column panels sized for the build's register tile, then a
// cache-blocked, multi-threaded micro-kernel runs over them.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "thread_pool.hpp"

namespace engram {

// W [n, k] repacked as ceil(n / nr) panels of [k][nr] floats (zero-padded columns), so
// the micro-kernel streams one panel row per k. nr is the kernel build's tile width.
//
// With `bf16` (weights that are exactly bf16, e.g. fp8 x power-of-two scale, and inputs
// that are too), the panels hold bf16 pairs [ceil(n/nr)][ceil(k/2)][nr][2] for the
// AVX512-BF16 dot-product kernel: exact products at twice the fp32 rate, half the bytes.
struct PackedLinear {
  int64_t n = 0;
  int64_t k = 0;
  int nr = 0;
  std::string kernel;          // which CPU build packed it ("avx512", "avx512-bf16" or "baseline")
  std::vector<float> panels;   // [ceil(n/nr)][k][nr]
  std::vector<uint16_t> panelsBf16;  // bf16 kernel only
  std::vector<float> bias;     // [n]; zeros when the layer has none
};

// kernel: "auto" (the widest build this CPU runs), "baseline" or "avx512". With
// preferBf16, weights that are all exactly bf16 on a CPU with AVX512-BF16 are packed for
// the bf16 kernel (callers promise inputs exact in bf16 too); otherwise fp32.
std::shared_ptr<PackedLinear> packLinear(const float* weight, const float* bias, int64_t n, int64_t k,
                                         const std::string& kernel = "auto", bool preferBf16 = false);

// y[m, ldy] = x[m, lda] W^T + b for rows [0, m). Each output element accumulates bias
// then k in order, whatever the thread count, so results are bit-identical across it.
// With rowIndex (nullable), row i of the product reads x row rowIndex[i]: a gather of the
// input rows fused into the GEMM's packing (MoE experts read their tokens this way).
void linearCpu(const float* x, int64_t m, int64_t lda, const PackedLinear& w, float* y, int64_t ldy,
               ThreadPool& pool, int threads, const int32_t* rowIndex = nullptr);

// GFLOP/s of the build's FMA loop on `threads` threads for about `seconds`.
double fmaPeakGflops(ThreadPool& pool, int threads, double seconds, const std::string& kernel = "auto");

namespace baseline {
double fmaPeakLoop(int64_t iterations, float* sink);
int linearTileWidth();
void linearTiles(const float* x, int64_t lda, const PackedLinear& w, float* y, int64_t ldy, int64_t rowBegin,
                 int64_t rowEnd, int64_t panelBegin, int64_t panelEnd, const int32_t* rowIndex);
}  // namespace baseline
namespace avx512 {
void linearTilesBf16(const float* x, int64_t lda, const PackedLinear& w, float* y, int64_t ldy, int64_t rowBegin,
                     int64_t rowEnd, int64_t panelBegin, int64_t panelEnd, const int32_t* rowIndex);
double fmaPeakLoop(int64_t iterations, float* sink);
int linearTileWidth();
void linearTiles(const float* x, int64_t lda, const PackedLinear& w, float* y, int64_t ldy, int64_t rowBegin,
                 int64_t rowEnd, int64_t panelBegin, int64_t panelEnd, const int32_t* rowIndex);
}  // namespace avx512

}  // namespace engram
