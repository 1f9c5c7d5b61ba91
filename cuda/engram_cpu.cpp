// CPU backend of the paper's Engram layer: the element bodies of gather.cuh, gating.cuh
// and conv.cuh over the thread pool, with the projections on the packed GEMM.
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "conv.cuh"
#include "engram_ops.hpp"
#include "gating.cuh"

namespace engram {

namespace {

int64_t rowIdAt(const void* ids, bool ids64, int64_t i) {
  return ids64 ? static_cast<const int64_t*>(ids)[i] : static_cast<const int32_t*>(ids)[i];
}

// Ids of `tokens` tokens, `heads` each, starting `offset` into each token's `stride`.
void checkRowIds(const TableView& table, const void* rowIds, bool rowIds64, int64_t tokens, int heads, int64_t stride,
                 int64_t offset) {
  for (int64_t m = 0; m < tokens; ++m) {
    for (int h = 0; h < heads; ++h) {
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

void gatherUnchecked(const TableView& table, const void* rowIds, bool rowIds64, int64_t tokens, int heads,
                     int64_t stride, int64_t offset, float* out, ThreadPool& pool, int threads) {
  const int cols = table.cols;
  pool.parallelFor(tokens, threads, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      for (int h = 0; h < heads; ++h) {
        const int64_t r = rowIdAt(rowIds, rowIds64, m * stride + offset + h);
        const uint8_t* row = table.rowBytes(r);
        const uint8_t* scales = table.rowScales(r);
        float* dst = out + (m * heads + h) * cols;
        switch (table.dtype) {  // one switch per row, so each loop below is a plain decode
          case TableDtype::F32:
            for (int c = 0; c < cols; ++c) dst[c] = decodeTableElement(TableDtype::F32, row, scales, c);
            break;
          case TableDtype::BF16:
            for (int c = 0; c < cols; ++c) dst[c] = decodeTableElement(TableDtype::BF16, row, scales, c);
            break;
          case TableDtype::F16:
            for (int c = 0; c < cols; ++c) dst[c] = decodeTableElement(TableDtype::F16, row, scales, c);
            break;
          default:
            for (int c = 0; c < cols; ++c) dst[c] = decodeTableElement(TableDtype::F8E4M3, row, scales, c);
        }
      }
    }
  });
}

double secondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void gatherRowsCpu(const TableView& table, const void* rowIds, bool rowIds64, int64_t tokens, int heads, float* out,
                   ThreadPool& pool, int threads) {
  checkTable(table);
  checkRowIds(table, rowIds, rowIds64, tokens, heads, heads, 0);
  gatherUnchecked(table, rowIds, rowIds64, tokens, heads, heads, 0, out, pool, threads);
}

void engramForwardCpu(const EngramForwardRequest& r, ThreadPool& pool, int threads) {
  EK_REQUIRE(r.batch >= 0 && r.seqLen >= 0, RangeError, "shape must be non-negative");
  EK_REQUIRE(r.hc >= 1 && r.hidden >= 1 && r.heads >= 1, RangeError, "hcMult, hiddenSize and heads must be >= 1");
  EK_REQUIRE(r.kernelSize >= 1 && r.dilation >= 1, RangeError, "kernelSize and dilation must be >= 1");
  checkTable(r.table);
  EK_REQUIRE(r.keyValue != nullptr, TypeError, "key/value projection is missing");
  const int64_t features = static_cast<int64_t>(r.heads) * r.table.cols;
  const int64_t kvWidth = static_cast<int64_t>(r.hc + 1) * r.hidden;
  EK_REQUIRE(r.keyValue->k == features && r.keyValue->n == kvWidth, RangeError,
             "key/value projection is [" + std::to_string(r.keyValue->n) + ", " + std::to_string(r.keyValue->k) +
                 "] but the layer needs [" + std::to_string(kvWidth) + ", " + std::to_string(features) + "]");
  const int64_t tokens = static_cast<int64_t>(r.batch) * r.seqLen;
  EK_REQUIRE(r.norm1 && r.norm2 && r.convNorm && r.convWeight && (tokens == 0 || (r.hiddenStates && r.out)), TypeError,
             "a layer weight or buffer is missing");
  const int64_t idStride = r.rowIdsStride == 0 ? r.heads : r.rowIdsStride;
  EK_REQUIRE(r.rowIdsOffset >= 0 && r.rowIdsOffset + r.heads <= idStride, RangeError,
             "rowIds offset/stride do not hold this layer's ids");
  checkRowIds(r.table, r.rowIds, r.rowIds64, tokens, r.heads, idStride, r.rowIdsOffset);
  if (tokens == 0) {
    // An empty chunk leaves the conv history as it was.
    const int64_t hist = static_cast<int64_t>(r.batch) * (r.kernelSize - 1) * r.dilation * r.hc * r.hidden;
    if (r.convHistoryOut != nullptr) {
      for (int64_t i = 0; i < hist; ++i) r.convHistoryOut[i] = r.convHistory ? r.convHistory[i] : 0.0f;
    }
    return;
  }

  const int hc = r.hc, hidden = r.hidden;
  double* const stage = r.stageSeconds;
  auto t0 = std::chrono::steady_clock::now();

  // 1. Gather e [tokens, features].
  std::vector<float> scratchE;
  float* e = r.embeddings;
  if (e == nullptr) {
    scratchE.resize(static_cast<size_t>(tokens * features));
    e = scratchE.data();
  }
  gatherUnchecked(r.table, r.rowIds, r.rowIds64, tokens, r.heads, idStride, r.rowIdsOffset, e, pool, threads);
  if (stage) stage[0] = secondsSince(t0);

  // 2. Every branch's key and the value in one GEMM: kv [tokens, (hc + 1) * hidden].
  t0 = std::chrono::steady_clock::now();
  std::vector<float> kv(static_cast<size_t>(tokens * kvWidth));
  linearCpu(e, tokens, features, *r.keyValue, kv.data(), kvWidth, pool, threads);
  if (stage) stage[1] = secondsSince(t0);

  // 3. Gates; each branch's key slot is overwritten with its gated value, and the
  //    inverse RMS of that value (the conv norm) is kept per (token, branch).
  t0 = std::chrono::steady_clock::now();
  std::vector<float> inverseRms(static_cast<size_t>(tokens * hc));
  pool.parallelFor(tokens, threads, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      float* const row = kv.data() + m * kvWidth;
      const float* const value = row + static_cast<int64_t>(hc) * hidden;
      for (int g = 0; g < hc; ++g) {
        float* const key = row + static_cast<int64_t>(g) * hidden;
        const float* const query = r.hiddenStates + (m * hc + g) * hidden;
        const GateSums s = gateSums(key, query, r.norm1 + g * hidden, r.norm2 + g * hidden, 0, hidden, 1);
        const float gate = gateFromSums(s.keySquares, s.querySquares, s.weightedDot, hidden, r.gateEps);
        if (r.gates != nullptr) r.gates[m * hc + g] = gate;
        float squares = 0.0f;
        for (int j = 0; j < hidden; ++j) {
          key[j] = gate * value[j];
          squares += key[j] * key[j];
        }
        inverseRms[m * hc + g] = 1.0f / sqrtf(squares / static_cast<float>(hidden) + r.convEps);
      }
    }
  });
  if (stage) stage[2] = secondsSince(t0);

  // 4. ShortConv over each sequence, reading the gated values in place in kv.
  t0 = std::chrono::steady_clock::now();
  const int historyLen = (r.kernelSize - 1) * r.dilation;
  pool.parallelFor(tokens, threads, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      const int64_t b = m / r.seqLen;
      const int t = static_cast<int>(m - b * r.seqLen);
      const ConvSequence seq{kv.data() + b * r.seqLen * kvWidth, inverseRms.data() + b * r.seqLen * hc,
                             r.convHistory ? r.convHistory + b * historyLen * hc * hidden : nullptr, kvWidth,
                             r.seqLen, historyLen, hc, hidden};
      for (int g = 0; g < hc; ++g) {
        float* const dst = r.out + (m * hc + g) * hidden;
        for (int j = 0; j < hidden; ++j) dst[j] = shortConvOutput(seq, r.convNorm, r.convWeight, r.kernelSize, r.dilation, t, g, j);
      }
    }
  });
  // The normalised rows the next chunk's conv looks back on.
  if (r.convHistoryOut != nullptr && historyLen > 0) {
    for (int b = 0; b < r.batch; ++b) {
      const ConvSequence seq{kv.data() + static_cast<int64_t>(b) * r.seqLen * kvWidth,
                             inverseRms.data() + static_cast<int64_t>(b) * r.seqLen * hc,
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
