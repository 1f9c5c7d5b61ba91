// CPU backend of the paper's Engram layer: the element bodies of gather.cuh, gating.cuh
// and conv.cuh over the thread pool, with the projections on the packed GEMM.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "engram/conv.cuh"
#include "common/cpu_features.hpp"
#include "engram/engram_cpu_kernel.hpp"
#include "engram/engram_ops.hpp"
#include "engram/gating.cuh"

namespace engram {

EngramRowKernels engramRowKernels() {
  if (cpuHasAvx512()) {
#if defined(EK_HAVE_AVX512_KERNEL)
    return {"avx512", avx512::gatherTokens, avx512::gateTokens, avx512::convTokens, avx512::v41GateTokens};
#endif
  }
  if (cpuHasAvx2()) {
#if defined(EK_HAVE_AVX2_KERNEL)
    return {"avx2", avx2::gatherTokens, avx2::gateTokens, avx2::convTokens, avx2::v41GateTokens};
#endif
  }
  return {"baseline", baseline::gatherTokens, baseline::gateTokens, baseline::convTokens, baseline::v41GateTokens};
}

namespace {

int64_t rowIdAt(const void* ids, bool ids64, int64_t i) {
  return ids64 ? static_cast<const int64_t*>(ids)[i] : static_cast<const int32_t*>(ids)[i];
}

// Ids of `tokens` tokens, `rowsPerToken` each, starting `offset` into each token's `stride`.
void checkRowIds(const TableView& table, const void* rowIds, bool rowIds64, int64_t tokens, int rowsPerToken, int64_t stride,
                 int64_t offset) {
  for (int64_t m = 0; m < tokens; ++m) {
    for (int h = 0; h < rowsPerToken; ++h) {
    const int64_t i = m * stride + offset + h;
    const int64_t r = rowIdAt(rowIds, rowIds64, i);
    EK_REQUIRE(r >= 0 && r < table.rows, RangeError,
               "rowIds[" + std::to_string(i) + "] = " + std::to_string(r) + " is outside the table's rows [0, " +
                   std::to_string(table.rows) + ")");
    }
  }
}

void checkTable(const TableView& t) {
  EK_REQUIRE(t.data != nullptr && t.rows >= 1 && t.cols >= 1, TypeError, "table is missing or empty");
  if (t.dtype == TableDtype::F8E4M3) {
    EK_REQUIRE(t.cols % kScaleBlock == 0, RangeError,
               "fp8 table rows need a multiple of 32 channels, got " + std::to_string(t.cols));
    EK_REQUIRE(t.scales != nullptr, TypeError, "fp8 table needs its UE8M0 scales");
  }
}

EngramRowKernels rowKernels() { return engramRowKernels(); }

void gatherUnchecked(const TableView& table, const void* rowIds, bool rowIds64, int64_t tokens, int rowsPerToken,
                     int64_t stride, int64_t offset, float* out, ThreadPool& pool, int threads) {
  EngramRowArgs a{};
  a.table = table;
  a.rowsPerToken = rowsPerToken;
  a.rowIds = rowIds;
  a.rowIds64 = rowIds64;
  a.rowIdsStride = stride;
  a.rowIdsOffset = offset;
  a.embeddings = out;
  const EngramRowFn gather = rowKernels().gather;
  pool.parallelFor(tokens, threads, [&](int64_t begin, int64_t end) { gather(a, begin, end); });
}

// Scratch of the calling thread, reused across calls: fresh multi-MB buffers per call
// would cost a page fault per 4 KiB on every forward.
// 64-byte aligned, so rows can be written with full-line streaming stores.
template <typename T>
T* scratch(std::vector<T>& buffer, size_t n) {
  const size_t pad = 64 / sizeof(T);
  if (buffer.size() < n + pad) buffer.resize(n + pad);
  const uintptr_t at = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + ((64 - (at & 63)) & 63) / sizeof(T);
}

double secondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void gatherRowsCpu(const TableView& table, const void* rowIds, bool rowIds64, int64_t tokens, int rowsPerToken, float* out,
                   ThreadPool& pool, int threads) {
  checkTable(table);
  checkRowIds(table, rowIds, rowIds64, tokens, rowsPerToken, rowsPerToken, 0);
  gatherUnchecked(table, rowIds, rowIds64, tokens, rowsPerToken, rowsPerToken, 0, out, pool, threads);
}

void validateEngramRequest(const EngramForwardRequest& r) {
  EK_REQUIRE(r.batch >= 0 && r.seqLen >= 0, RangeError, "shape must be non-negative");
  EK_REQUIRE(r.hc >= 1 && r.hidden >= 1 && r.rowsPerToken >= 1, RangeError, "hcMult, hiddenSize and rowsPerToken must be >= 1");
  EK_REQUIRE(r.kernelSize >= 1 && r.dilation >= 1, RangeError, "kernelSize and dilation must be >= 1");
  checkTable(r.table);
  EK_REQUIRE(r.keyValue != nullptr, TypeError, "key/value projection is missing");
  const int64_t features = static_cast<int64_t>(r.rowsPerToken) * r.table.cols;
  const int64_t kvWidth = static_cast<int64_t>(r.hc + 1) * r.hidden;
  EK_REQUIRE(r.keyValue->k == features && r.keyValue->n == kvWidth, RangeError,
             "key/value projection is [" + std::to_string(r.keyValue->n) + ", " + std::to_string(r.keyValue->k) +
                 "] but the layer needs [" + std::to_string(kvWidth) + ", " + std::to_string(features) + "]");
  const int64_t tokens = static_cast<int64_t>(r.batch) * r.seqLen;
  EK_REQUIRE(r.norm1 && r.norm2 && r.convNorm && r.convWeight && (tokens == 0 || (r.hiddenStates && r.out)), TypeError,
             "a layer weight or buffer is missing");
  const int64_t idStride = r.rowIdsStride == 0 ? r.rowsPerToken : r.rowIdsStride;
  EK_REQUIRE(r.rowIdsOffset >= 0 && r.rowIdsOffset + r.rowsPerToken <= idStride, RangeError,
             "rowIds offset/stride do not hold this layer's ids");
  checkRowIds(r.table, r.rowIds, r.rowIds64, tokens, r.rowsPerToken, idStride, r.rowIdsOffset);
}

void copyHistoryUnchanged(const EngramForwardRequest& r) {
  // An empty chunk leaves the conv history as it was.
  const int64_t hist = static_cast<int64_t>(r.batch) * (r.kernelSize - 1) * r.dilation * r.hc * r.hidden;
  if (r.convHistoryOut != nullptr) {
    for (int64_t i = 0; i < hist; ++i) r.convHistoryOut[i] = r.convHistory ? r.convHistory[i] : 0.0f;
  }
}

void engramForwardCpu(const EngramForwardRequest& r, ThreadPool& pool, int threads) {
  EK_REQUIRE(!r.tableOnDevice, Error, "a table in device memory (a CUDA pager's cache) needs the CUDA backend");
  validateEngramRequest(r);
  const int64_t tokens = static_cast<int64_t>(r.batch) * r.seqLen;
  const int64_t features = static_cast<int64_t>(r.rowsPerToken) * r.table.cols;
  const int64_t kvWidth = static_cast<int64_t>(r.hc + 1) * r.hidden;
  const int64_t idStride = r.rowIdsStride == 0 ? r.rowsPerToken : r.rowIdsStride;
  if (tokens == 0) {
    copyHistoryUnchanged(r);
    return;
  }

  const int hc = r.hc, hidden = r.hidden;
  double* const stage = r.stageSeconds;
  const EngramRowKernels kernels = rowKernels();
  thread_local std::vector<float> scratchE, scratchKv, scratchRms, scratchConvT;
  const int historyLen = (r.kernelSize - 1) * r.dilation;

  EngramRowArgs a{};
  a.seqLen = r.seqLen;
  a.hc = hc;
  a.hidden = hidden;
  a.rowsPerToken = r.rowsPerToken;
  a.kernelSize = r.kernelSize;
  a.dilation = r.dilation;
  a.historyLen = historyLen;
  a.gateEps = r.gateEps;
  a.convEps = r.convEps;
  a.table = r.table;
  a.rowIds = r.rowIds;
  a.rowIds64 = r.rowIds64;
  a.rowIdsStride = idStride;
  a.rowIdsOffset = r.rowIdsOffset;
  // Without a caller's buffer for e, the rows are gathered inside the GEMM's packing.
  const bool fusedGather = r.embeddings == nullptr;
  a.embeddings = fusedGather ? nullptr : r.embeddings;
  a.kv = scratch(scratchKv, static_cast<size_t>(tokens * kvWidth));
  a.kvWidth = kvWidth;
  a.hiddenStates = r.hiddenStates;
  a.norm1 = r.norm1;
  a.norm2 = r.norm2;
  a.gates = r.gates;
  a.inverseRms = scratch(scratchRms, static_cast<size_t>(tokens * hc));
  a.convNorm = r.convNorm;
  a.convHistory = r.convHistory;
  a.out = r.out;
  // Conv weights tap-major ([K][channels]) so the loop over channels is contiguous.
  const int64_t channels = static_cast<int64_t>(hc) * hidden;
  float* convT = scratch(scratchConvT, static_cast<size_t>(channels * r.kernelSize));
  for (int64_t c = 0; c < channels; ++c) {
    for (int i = 0; i < r.kernelSize; ++i) convT[i * channels + c] = r.convWeight[c * r.kernelSize + i];
  }
  a.convWeightT = convT;

  // 1-2. Gather e [tokens, features], and every branch's key and the value in one GEMM:
  //      kv [tokens, (hc + 1) * hidden]. Unless the caller wants e, the GEMM gathers the
  //      rows itself while packing them (stage 0 is then the threads' packing time).
  auto t0 = std::chrono::steady_clock::now();
  if (fusedGather) {
    const GatheredRows rows{r.table, r.rowIds, r.rowIds64, idStride, r.rowIdsOffset, r.rowsPerToken};
    double packSeconds = 0.0;
    linearGatherCpu(rows, tokens, *r.keyValue, a.kv, kvWidth, pool, threads, &packSeconds);
    if (stage) {
      stage[0] = packSeconds;
      stage[1] = std::max(0.0, secondsSince(t0) - packSeconds);
    }
  } else {
    pool.parallelFor(tokens, threads, [&](int64_t begin, int64_t end) { kernels.gather(a, begin, end); });
    if (stage) stage[0] = secondsSince(t0);
    t0 = std::chrono::steady_clock::now();
    linearCpu(a.embeddings, tokens, features, *r.keyValue, a.kv, kvWidth, pool, threads);
    if (stage) stage[1] = secondsSince(t0);
  }

  // 3. Gates; each branch's key slot is overwritten with its gated value, and the
  //    inverse RMS of that value (the conv norm) is kept per (token, branch).
  t0 = std::chrono::steady_clock::now();
  waitForInput(r.hiddenReady);
  pool.parallelFor(tokens, threads, [&](int64_t begin, int64_t end) { kernels.gate(a, begin, end); });
  if (stage) stage[2] = secondsSince(t0);

  // 4. ShortConv over each sequence, reading the gated values in place in kv.
  t0 = std::chrono::steady_clock::now();
  pool.parallelFor(tokens, threads, [&](int64_t begin, int64_t end) { kernels.conv(a, begin, end); });
  const float* kvData = a.kv;
  const float* rmsData = a.inverseRms;
  // The normalised rows the next chunk's conv looks back on.
  if (r.convHistoryOut != nullptr && historyLen > 0) {
    for (int b = 0; b < r.batch; ++b) {
      const ConvSequence seq{kvData + static_cast<int64_t>(b) * r.seqLen * kvWidth,
                             rmsData + static_cast<int64_t>(b) * r.seqLen * hc,
                             r.convHistory ? r.convHistory + static_cast<int64_t>(b) * historyLen * hc * hidden : nullptr,
                             kvWidth, r.seqLen, historyLen, hc, hidden};
      float* const dst = r.convHistoryOut + static_cast<int64_t>(b) * historyLen * hc * hidden;
      for (int i = 0; i < historyLen; ++i) {
        const int t = r.seqLen - historyLen + i;
        for (int g = 0; g < hc; ++g) {
          for (int j = 0; j < hidden; ++j) dst[(static_cast<int64_t>(i) * hc + g) * hidden + j] = convInput(seq, r.convNorm, t, g, j);
        }
      }
    }
  }
  if (stage) stage[3] = secondsSince(t0);
}

}  // namespace engram
