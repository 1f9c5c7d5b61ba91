// Dense projections y = x W^T + b (torch.nn.Linear layout) on the CPU: weights are
// packed once into column panels sized for the build's register tile, then a
// cache-blocked, multi-threaded micro-kernel runs over them.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "table/gather.cuh"
#include "gemm/quant.cuh"
#include "common/thread_pool.hpp"

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
  std::string kernel;          // which CPU build packed it ("avx512", "avx512-bf16", "avx2" or "baseline")
  std::vector<float> panels;   // [ceil(n/nr)][k][nr]
  std::vector<uint16_t> panelsBf16;  // bf16 kernel only
  std::vector<float> bias;     // [n]; zeros when the layer has none
  // Quantised weights (format != F32) stay in their codes, panel by panel: codePanels
  // [ceil(n/nr)][k][weightRowBytes(format, nr)] (e2m1: byte j holds column j in its low
  // nibble and column j + nr/2 in its high one) and, for the scaled formats, scalePanels
  // [ceil(n/nr)][ceil(k/32)][nr] UE8M0 codes. The GEMM decodes one panel slice at a time
  // into an L2-sized fp32 buffer: never a float copy of the matrix.
  WeightFormat format = WeightFormat::F32;
  std::vector<uint8_t> codePanels;
  std::vector<uint8_t> scalePanels;
  // e4m3: whether panel p holds a NaN code (0x7f/0xff), per panel: decoders that would
  // patch NaNs in after an integer conversion skip that step for panels without one.
  std::vector<uint8_t> panelHasNan;
};

// A weight matrix [n, k] in its stored codes: row-major codes (e2m1: ceil(k/2) bytes a
// row, even input in the low nibble) and, for e4m3/e2m1, rowScales [n, ceil(k/32)].
struct WeightCodes {
  WeightFormat format = WeightFormat::F32;
  const uint8_t* codes = nullptr;
  const uint8_t* rowScales = nullptr;
};

// kernel: "auto" (the widest build this CPU runs), "baseline", "avx2" or "avx512". With
// preferBf16, weights that are all exactly bf16 on a CPU with AVX512-BF16 are packed for
// the bf16 kernel (callers promise inputs exact in bf16 too); otherwise fp32.
std::shared_ptr<PackedLinear> packLinear(const float* weight, const float* bias, int64_t n, int64_t k,
                                         const std::string& kernel = "auto", bool preferBf16 = false);

// Packs quantised weights for the fp32 kernels (decoded per panel slice while the GEMM
// runs); results equal packLinear over the dequantised matrix bit for bit. With
// preferBf16, e4m3 weights whose every value is exact in bf16 (scales that keep them
// normal) go to the AVX512-BF16 kernel where the CPU has it, as its bf16 panels decoded
// straight from the codes (packLinear's panels of the dequantised matrix, without it).
std::shared_ptr<PackedLinear> packLinearCodes(const WeightCodes& weight, const float* bias, int64_t n, int64_t k,
                                              const std::string& kernel = "auto", bool preferBf16 = false);

// y[m, ldy] = x[m, lda] W^T + b for rows [0, m). Each output element accumulates bias
// then k in order, whatever the thread count, so results are bit-identical across it.
// With rowIndex (nullable), row i of the product reads x row rowIndex[i]: a gather of the
// input rows fused into the GEMM's packing (MoE experts read their tokens this way).
void linearCpu(const float* x, int64_t m, int64_t lda, const PackedLinear& w, float* y, int64_t ldy,
               ThreadPool& pool, int threads, const int32_t* rowIndex = nullptr);

// The GEMM's input rows gathered from an Engram table as they are packed: row m is the
// concatenation of `rowsPerToken` table rows (ids at rowIds[m * stride + offset + h]) decoded to
// fp32. No [m, rowsPerToken * table.cols] matrix is written. Ids must be valid (callers check).
struct GatheredRows {
  TableView table{};
  const void* rowIds = nullptr;
  bool rowIds64 = false;
  int64_t stride = 0;
  int64_t offset = 0;
  int rowsPerToken = 0;
};

// y = gather(rows) W^T + b for m rows (k = rowsPerToken * table.cols): the same bits as gathering
// the rows first and calling linearCpu on them. *packSeconds (nullable) receives the time
// the threads spent gathering while packing, summed over threads and divided by the
// threads used.
void linearGatherCpu(const GatheredRows& rows, int64_t m, const PackedLinear& w, float* y, int64_t ldy, ThreadPool& pool,
                     int threads, double* packSeconds = nullptr);

// The gather of linearGatherCpu alone: m gathered rows decoded and packed as the GEMM
// packs them (per thread, a row block's k block at a time, into a reused L2-sized buffer), for
// `kernel`'s layout ("avx512-bf16", "avx512" or "baseline"), with no GEMM after it. What the
// benchmarks compare with random-row reads.
void gatherPackedCpu(const GatheredRows& rows, int64_t m, const std::string& kernel, ThreadPool& pool, int threads);

// GFLOP/s of the build's FMA loop on `threads` threads for about `seconds`.
double fmaPeakGflops(ThreadPool& pool, int threads, double seconds, const std::string& kernel = "auto");

namespace baseline {
// The GEMM gathers a row block (at most gatheredBlockRows() rows, this build's) one k
// block at a time: the floats of one such block, how many blocks k makes, and the packing
// of block kBlock.
int64_t gatheredBlockRows();
int64_t gatheredBlockFloats(int64_t k);
int64_t gatheredKBlocks(int64_t k);
void packGatheredBlock(const GatheredRows& g, int64_t r0, int64_t rows, int64_t k, int64_t kBlock, float* gathered);
double fmaPeakLoop(int64_t iterations, float* sink);
int linearTileWidth();
void linearTiles(const float* x, int64_t lda, const PackedLinear& w, float* y, int64_t ldy, int64_t rowBegin,
                 int64_t rowEnd, int64_t panelBegin, int64_t panelEnd, const int32_t* rowIndex,
                 const GatheredRows* gather, int64_t* packNanos);
}  // namespace baseline
namespace avx2 {
// The GEMM gathers a row block (at most gatheredBlockRows() rows, this build's) one k
// block at a time: the floats of one such block, how many blocks k makes, and the packing
// of block kBlock.
int64_t gatheredBlockRows();
int64_t gatheredBlockFloats(int64_t k);
int64_t gatheredKBlocks(int64_t k);
void packGatheredBlock(const GatheredRows& g, int64_t r0, int64_t rows, int64_t k, int64_t kBlock, float* gathered);
double fmaPeakLoop(int64_t iterations, float* sink);
int linearTileWidth();
void linearTiles(const float* x, int64_t lda, const PackedLinear& w, float* y, int64_t ldy, int64_t rowBegin,
                 int64_t rowEnd, int64_t panelBegin, int64_t panelEnd, const int32_t* rowIndex,
                 const GatheredRows* gather, int64_t* packNanos);
}  // namespace avx2
namespace avx512 {
// The GEMM gathers a row block (at most gatheredBlockRows() rows, this build's) one k
// block at a time: the floats of one such block, how many blocks k makes, and the packing
// of block kBlock.
int64_t gatheredBlockRows();
int64_t gatheredBlockFloats(int64_t k);
int64_t gatheredKBlocks(int64_t k);
void packGatheredBlock(const GatheredRows& g, int64_t r0, int64_t rows, int64_t k, int64_t kBlock, float* gathered);
// The bf16 GEMM gathers a row block one pair block (its share of the k inputs) at a time:
// the uint32 pairs of one such block, and how many blocks k makes.
int64_t gatheredBlockPairs(int64_t k);
int64_t gatheredPairBlocks(int64_t k);
void packGatheredBlockBf16(const GatheredRows& g, int64_t r0, int64_t rows, int64_t k, int64_t pairBlock, uint32_t* gathered);
void linearTilesBf16(const float* x, int64_t lda, const PackedLinear& w, float* y, int64_t ldy, int64_t rowBegin,
                     int64_t rowEnd, int64_t panelBegin, int64_t panelEnd, const int32_t* rowIndex,
                 const GatheredRows* gather, int64_t* packNanos);
double fmaPeakLoop(int64_t iterations, float* sink);
int linearTileWidth();
void linearTiles(const float* x, int64_t lda, const PackedLinear& w, float* y, int64_t ldy, int64_t rowBegin,
                 int64_t rowEnd, int64_t panelBegin, int64_t panelEnd, const int32_t* rowIndex,
                 const GatheredRows* gather, int64_t* packNanos);
}  // namespace avx512

}  // namespace engram
