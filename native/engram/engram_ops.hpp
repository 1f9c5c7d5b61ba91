// Host entry points of the paper's Engram layer (gather -> key/value projections ->
// gate -> ShortConv). Plain pointers and sizes only: no N-API here.
#pragma once
#include <cstdint>
#include <memory>

#include "table/gather.cuh"
#include "gemm/gemm_ops.hpp"
#include "common/input_latch.hpp"
#include "common/thread_pool.hpp"

namespace engram {

struct EngramForwardRequest {
  int batch = 0;
  int seqLen = 0;
  int hc = 0;      // hyper-connection branches
  int hidden = 0;  // hidden size
  int rowsPerToken = 0;   // (maxNgram - 1) * nHeadPerNgram row ids per token
  const float* hiddenStates = nullptr;  // [B, T, hc, hidden]
  const InputLatch* hiddenReady = nullptr;  // set: wait on it before reading hiddenStates
  const void* rowIds = nullptr;         // [B, T, rowIdsStride] global rows, int32 or int64
  bool rowIds64 = false;
  int64_t rowIdsStride = 0;             // ids per token in rowIds (0: rowsPerToken); > rowsPerToken when
  int64_t rowIdsOffset = 0;             // several layers' ids are interleaved: this layer's first
  TableView table{};                    // cols = nEmbedPerNgram / nHeadPerNgram
  bool tableOnDevice = false;           // table points at device memory (a CUDA pager's cache)
  int tableDevice = -1;                // tableOnDevice: the CUDA device that cache is on
  std::shared_ptr<const PackedLinear> keyValue;  // n = (hc + 1) * hidden: branch keys, then the value
  const float* norm1 = nullptr;         // [hc, hidden] key norms
  const float* norm2 = nullptr;         // [hc, hidden] query norms
  const float* convNorm = nullptr;      // [hc, hidden]
  const float* convWeight = nullptr;    // [hc * hidden, kernelSize]
  int kernelSize = 0;
  int dilation = 0;
  float gateEps = 0.0f;
  float convEps = 0.0f;
  const float* convHistory = nullptr;   // [B, (K-1)*D, hc, hidden] normalised rows; null: zeros
  float* out = nullptr;                 // [B, T, hc, hidden]
  float* gates = nullptr;               // [B, T, hc]; may be null
  float* embeddings = nullptr;          // [B, T, rowsPerToken * table.cols]; may be null (else scratch)
  float* convHistoryOut = nullptr;      // [B, (K-1)*D, hc, hidden]; may be null
  double* stageSeconds = nullptr;       // [4]: gather, projections, gating, conv; may be null
};

// Checks sizes, weights and every row id; throws before anything is written.
void validateEngramRequest(const EngramForwardRequest& req);
// For an empty chunk: the next conv history is the given one (or zeros).
void copyHistoryUnchanged(const EngramForwardRequest& req);

// Checks sizes and row ids, then runs the layer. Throws before writing anything.
void engramForwardCpu(const EngramForwardRequest& req, ThreadPool& pool, int threads);

// The layer's weights resident on one CUDA device (uploaded once, freed with the handle).
struct DeviceEngramWeights;
std::shared_ptr<DeviceEngramWeights> uploadEngramWeightsCuda(const EngramForwardRequest& weights,
                                                             const float* keyValueWeight, const float* keyValueBias,
                                                             int device);
// The layer on `device` with weights from uploadEngramWeightsCuda (the request's host
// weight pointers are only used for validation); per-call data is copied in and out.
void engramForwardCuda(const EngramForwardRequest& req, const DeviceEngramWeights& weights);

// Gathered embeddings only: e[m, h*cols + c] = table[rowIds[m, h], c] as fp32.
void gatherRowsCpu(const TableView& table, const void* rowIds, bool rowIds64, int64_t tokens, int rowsPerToken, float* out,
                   ThreadPool& pool, int threads);

}  // namespace engram
