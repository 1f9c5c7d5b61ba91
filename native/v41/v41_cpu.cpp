// CPU backend of DeepSeek-V4.1's Engram layer, on the row loops it shares with the
// paper's layer (engram_cpu_kernel.cpp) and the packed GEMM.
#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "table/convert_ops.hpp"
#include "engram/engram_cpu_kernel.hpp"
#include "v41/v41_ops.hpp"

namespace engram {

void dequantizeBlockFp8Cpu(const uint8_t* codes, const uint8_t* scales, int64_t out, int64_t in, float* dst,
                           ThreadPool& pool, int threads) {
  EK_REQUIRE(codes != nullptr && scales != nullptr && dst != nullptr, TypeError, "fp8 weight buffers are missing");
  dequantizeWeightsCpu(codes, scales, out, in, WeightFormat::E4M3, kScaleBlock, dst, pool, threads);
}

void validateV41Request(const V41ForwardRequest& r) {
  EK_REQUIRE(r.batch >= 0 && r.seqLen >= 0, RangeError, "shape must be non-negative");
  EK_REQUIRE(r.hc >= 1 && r.hidden >= 1 && r.rowsPerToken >= 1, RangeError, "hcMult, hiddenSize and rowsPerToken must be >= 1");
  EK_REQUIRE(r.table.data != nullptr && r.table.rows >= 1, TypeError, "table is missing");
  EK_REQUIRE(r.table.dtype != TableDtype::F8E4M3 || r.table.scales != nullptr, TypeError, "fp8 table needs its scales");
  EK_REQUIRE(r.wkv != nullptr, TypeError, "wkv is missing");
  const int64_t features = static_cast<int64_t>(r.rowsPerToken) * r.table.cols;
  const int64_t kvWidth = static_cast<int64_t>(r.hc + 1) * r.hidden;
  EK_REQUIRE(r.wkv->n == kvWidth && r.wkv->k == features, RangeError,
             "wkv is [" + std::to_string(r.wkv->n) + ", " + std::to_string(r.wkv->k) + "] but the layer needs [" +
                 std::to_string(kvWidth) + ", " + std::to_string(features) + "]");
  const int64_t tokens = static_cast<int64_t>(r.batch) * r.seqLen;
  EK_REQUIRE(r.qWeight && r.kWeight && (tokens == 0 || (r.hiddenStreams && r.out)), TypeError,
             "a layer weight or buffer is missing");
  const int64_t stride = r.rowIdsStride == 0 ? r.rowsPerToken : r.rowIdsStride;
  EK_REQUIRE(r.rowIdsOffset >= 0 && r.rowIdsOffset + r.rowsPerToken <= stride, RangeError, "rowIds offset/stride do not hold the layer's ids");
  for (int64_t m = 0; m < tokens; ++m) {
    for (int c = 0; c < r.rowsPerToken; ++c) {
      const int64_t i = m * stride + r.rowIdsOffset + c;
      const int64_t id = r.rowIds64 ? static_cast<const int64_t*>(r.rowIds)[i] : static_cast<const int32_t*>(r.rowIds)[i];
      EK_REQUIRE(id >= 0 && id < r.table.rows, RangeError,
                 "rowIds[" + std::to_string(i) + "] = " + std::to_string(id) + " is outside the table's rows [0, " +
                     std::to_string(r.table.rows) + ")");
    }
  }
}

void v41ForwardCpu(const V41ForwardRequest& r, ThreadPool& pool, int threads) {
  EK_REQUIRE(!r.tableOnDevice, Error, "a table in device memory (a CUDA pager's cache) needs the CUDA backend");
  validateV41Request(r);
  const int64_t features = static_cast<int64_t>(r.rowsPerToken) * r.table.cols;
  const int64_t kvWidth = static_cast<int64_t>(r.hc + 1) * r.hidden;
  const int64_t tokens = static_cast<int64_t>(r.batch) * r.seqLen;
  const int64_t stride = r.rowIdsStride == 0 ? r.rowsPerToken : r.rowIdsStride;
  if (tokens == 0) return;

  const EngramRowKernels kernels = engramRowKernels();
  thread_local std::vector<float> scratchKv;
  if (scratchKv.size() < static_cast<size_t>(tokens * kvWidth)) scratchKv.resize(tokens * kvWidth);

  EngramRowArgs g{};
  g.table = r.table;
  g.rowsPerToken = r.rowsPerToken;
  g.rowIds = r.rowIds;
  g.rowIds64 = r.rowIds64;
  g.rowIdsStride = stride;
  g.rowIdsOffset = r.rowIdsOffset;
  g.embeddings = r.rows;
  const auto seconds = [](std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto t0 = std::chrono::steady_clock::now();
  if (r.rows == nullptr) {
    // The rows are gathered (fp8 decoded) inside the wkv GEMM's packing: no [tokens, 6144]
    // fp32 matrix is written and read back. Stage 0 is the threads' packing time.
    const GatheredRows rows{r.table, r.rowIds, r.rowIds64, stride, r.rowIdsOffset, r.rowsPerToken};
    double packSeconds = 0.0;
    linearGatherCpu(rows, tokens, *r.wkv, scratchKv.data(), kvWidth, pool, threads, &packSeconds);
    if (r.stageSeconds) {
      r.stageSeconds[0] = packSeconds;
      r.stageSeconds[1] = std::max(0.0, seconds(t0) - packSeconds);
    }
  } else {
    pool.parallelFor(tokens, threads, [&](int64_t begin, int64_t end) { kernels.gather(g, begin, end); });
    if (r.stageSeconds) r.stageSeconds[0] = seconds(t0);
    t0 = std::chrono::steady_clock::now();
    linearCpu(g.embeddings, tokens, features, *r.wkv, scratchKv.data(), kvWidth, pool, threads);
    if (r.stageSeconds) r.stageSeconds[1] = seconds(t0);
  }

  const V41GateArgs a{scratchKv.data(), kvWidth, r.hiddenStreams, r.qWeight, r.kWeight, r.tokenMask,
                      r.hc, r.hidden, r.eps, r.gates, r.out};
  t0 = std::chrono::steady_clock::now();
  pool.parallelFor(tokens, threads, [&](int64_t begin, int64_t end) { kernels.v41Gate(a, begin, end); });
  if (r.stageSeconds) r.stageSeconds[2] = seconds(t0);
}

}  // namespace engram
