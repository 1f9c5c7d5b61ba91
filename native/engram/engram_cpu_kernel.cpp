// The Engram layer's row loops (see engram_cpu_kernel.hpp), written so each inner loop
// over channels vectorises: reductions keep 16 lane sums (summed in a fixed order, so
// results never depend on the thread split) and exp is expApprox, not a library call.
#include <cmath>

#include "engram/engram_cpu_kernel.hpp"
#include "engram/gating.cuh"

#ifndef EK_CPU_ISA
#define EK_CPU_ISA baseline
#endif
#include "table/row_decode_cpu.hpp"

namespace engram {
namespace EK_CPU_ISA {

namespace {

constexpr int kLanes = 16;
constexpr int64_t kPrefetchRows = kPrefetchAheadRows;
constexpr int64_t kPrefetchGroup = kPrefetchGroupRows;

inline int64_t rowIdAt(const EngramRowArgs& a, int64_t m, int h) {
  const int64_t i = m * a.rowIdsStride + a.rowIdsOffset + h;
  return a.rowIds64 ? static_cast<const int64_t*>(a.rowIds)[i] : static_cast<const int32_t*>(a.rowIds)[i];
}

// sum of x[j] * y[j] over j < n with kLanes partial sums.
struct LaneSums {
  float lane[kLanes];
  float total() const {
    float s = 0.0f;
    for (int l = 0; l < kLanes; ++l) s += lane[l];
    return s;
  }
};

// gateFromSums over one (token, branch) row, the three sums kept in kLanes partial sums
// (the paper's gate with w1/w2 = norm1/norm2; V4.1's with k_weight/q_weight).
float gateFromLanes(const float* key, const float* query, const float* w1, const float* w2, int hidden, float eps) {
  const int body = hidden - hidden % kLanes;
  LaneSums kk{}, qq{}, kq{};
  for (int j0 = 0; j0 < body; j0 += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const int j = j0 + l;
      kk.lane[l] += key[j] * key[j];
      qq.lane[l] += query[j] * query[j];
      kq.lane[l] += (key[j] * w1[j]) * (query[j] * w2[j]);
    }
  }
  for (int j = body; j < hidden; ++j) {
    kk.lane[j % kLanes] += key[j] * key[j];
    qq.lane[j % kLanes] += query[j] * query[j];
    kq.lane[j % kLanes] += (key[j] * w1[j]) * (query[j] * w2[j]);
  }
  return gateFromSums(kk.total(), qq.total(), kq.total(), hidden, eps);
}

}  // namespace

void gatherTokens(const EngramRowArgs& a, int64_t begin, int64_t end) {
  const TableView& t = a.table;
  const int rowsPerToken = a.rowsPerToken;
  const int64_t first = begin * rowsPerToken, last = end * rowsPerToken;
  const auto rowAt = [&](int64_t q) { return rowIdAt(a, q / rowsPerToken, static_cast<int>(q % rowsPerToken)); };
  // Random rows of a large table: requested kPrefetchRows ahead, a group at a time.
  for (int64_t q = first; q < std::min(last, first + kPrefetchRows); ++q) prefetchTableRow(t, rowAt(q));
  for (int64_t g = first; g < last; g += kPrefetchGroup) {
    const int64_t groupEnd = std::min(last, g + kPrefetchGroup);
    for (int64_t q = g + kPrefetchRows; q < std::min(last, groupEnd + kPrefetchRows); ++q) prefetchTableRow(t, rowAt(q));
    for (int64_t q = g; q < groupEnd; ++q) decodeTableRow(t, rowAt(q), a.embeddings + q * t.cols);
  }
}

void gateTokens(const EngramRowArgs& a, int64_t begin, int64_t end) {
  const int hidden = a.hidden;
  const int body = hidden - hidden % kLanes;
  for (int64_t m = begin; m < end; ++m) {
    float* const row = a.kv + m * a.kvWidth;
    const float* const value = row + static_cast<int64_t>(a.hc) * hidden;
    for (int g = 0; g < a.hc; ++g) {
      float* const key = row + static_cast<int64_t>(g) * hidden;
      const float* const query = a.hiddenStates + (m * a.hc + g) * hidden;
      const float* const w1 = a.norm1 + static_cast<int64_t>(g) * hidden;
      const float* const w2 = a.norm2 + static_cast<int64_t>(g) * hidden;
      const float gate = gateFromLanes(key, query, w1, w2, hidden, a.gateEps);
      if (a.gates != nullptr) a.gates[m * a.hc + g] = gate;
      LaneSums vv{};
      for (int j0 = 0; j0 < body; j0 += kLanes) {
        for (int l = 0; l < kLanes; ++l) {
          const float v = gate * value[j0 + l];
          key[j0 + l] = v;
          vv.lane[l] += v * v;
        }
      }
      for (int j = body; j < hidden; ++j) {
        key[j] = gate * value[j];
        vv.lane[j % kLanes] += key[j] * key[j];
      }
      a.inverseRms[m * a.hc + g] = 1.0f / sqrtf(vv.total() / static_cast<float>(hidden) + a.convEps);
    }
  }
}

void v41GateTokens(const V41GateArgs& a, int64_t begin, int64_t end) {
  const int hidden = a.hidden;
  for (int64_t m = begin; m < end; ++m) {
    const float* const row = a.kv + m * a.kvWidth;
    const float* const value = row + static_cast<int64_t>(a.hc) * hidden;
    const bool live = a.tokenMask == nullptr || a.tokenMask[m] != 0;
    for (int g = 0; g < a.hc; ++g) {
      const float* const key = row + static_cast<int64_t>(g) * hidden;
      const float* const h = a.hiddenStreams + (m * a.hc + g) * hidden;
      const float* const kw = a.kWeight + static_cast<int64_t>(g) * hidden;
      const float* const qw = a.qWeight + static_cast<int64_t>(g) * hidden;
      float gate = 0.0f;
      if (live) {
        gate = gateFromLanes(key, h, kw, qw, hidden, a.eps);
      }
      if (a.gates != nullptr) a.gates[m * a.hc + g] = gate;
      float* const dst = a.out + (m * a.hc + g) * static_cast<int64_t>(hidden);
      for (int j = 0; j < hidden; ++j) dst[j] = h[j] + gate * value[j];
    }
  }
}

void convTokens(const EngramRowArgs& a, int64_t begin, int64_t end) {
  const int hidden = a.hidden;
  const int64_t channels = static_cast<int64_t>(a.hc) * hidden;
  float acc[4096];
  for (int64_t m = begin; m < end; ++m) {
    const int64_t b = m / a.seqLen;
    const int t = static_cast<int>(m - b * a.seqLen);
    for (int g = 0; g < a.hc; ++g) {
      for (int j0 = 0; j0 < hidden; j0 += 4096) {
        const int n = hidden - j0 < 4096 ? hidden - j0 : 4096;
        const float* const normW = a.convNorm + static_cast<int64_t>(g) * hidden + j0;
        for (int j = 0; j < n; ++j) acc[j] = 0.0f;
        for (int i = 0; i < a.kernelSize; ++i) {
          const float* const w = a.convWeightT + i * channels + static_cast<int64_t>(g) * hidden + j0;
          const int ts = t - (a.kernelSize - 1 - i) * a.dilation;
          if (ts >= 0) {
            const int64_t src = b * a.seqLen + ts;
            const float* const x = a.kv + src * a.kvWidth + static_cast<int64_t>(g) * hidden + j0;
            const float r = a.inverseRms[src * a.hc + g];
            for (int j = 0; j < n; ++j) acc[j] += w[j] * (x[j] * r * normW[j]);
          } else if (a.convHistory != nullptr && a.historyLen + ts >= 0) {
            const float* const x =
                a.convHistory + ((b * a.historyLen + a.historyLen + ts) * a.hc + g) * static_cast<int64_t>(hidden) + j0;
            for (int j = 0; j < n; ++j) acc[j] += w[j] * x[j];
          }
        }
        const float* const v = a.kv + m * a.kvWidth + static_cast<int64_t>(g) * hidden + j0;
        float* const dst = a.out + (m * a.hc + g) * static_cast<int64_t>(hidden) + j0;
        for (int j = 0; j < n; ++j) dst[j] = v[j] + silu(acc[j]);
      }
    }
  }
}

}  // namespace EK_CPU_ISA
}  // namespace engram
