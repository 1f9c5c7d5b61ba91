// Host entry points of DeepSeek-V4.1's Engram layer: gather (fp8 rows dequantised on
// the fly) -> kv = wkv . rows (one GEMM, no bias) -> per stream gate and residual.
#pragma once
#include <cstdint>
#include <memory>

#include "table/gather.cuh"
#include "gemm/gemm_ops.hpp"
#include "common/thread_pool.hpp"

namespace engram {

struct V41ForwardRequest {
  int batch = 0;
  int seqLen = 0;
  int hc = 0;
  int hidden = 0;
  int rowsPerToken = 0;                // row ids per token: (maxNgram - 1) * nHeads
  const float* hiddenStreams = nullptr;  // [B, S, hc, hidden]
  const void* rowIds = nullptr;        // [B, S, rowIdsStride], int32 or int64
  bool rowIds64 = false;
  int64_t rowIdsStride = 0;            // 0: rowsPerToken
  int64_t rowIdsOffset = 0;
  TableView table{};                   // cols = headDim
  bool tableOnDevice = false;          // table points at device memory (a CUDA pager's cache)
  int tableDevice = -1;                // tableOnDevice: the CUDA device that cache is on
  std::shared_ptr<const PackedLinear> wkv;  // n = (hc + 1) * hidden, k = rowsPerToken * headDim
  const float* qWeight = nullptr;      // [hc, hidden]
  const float* kWeight = nullptr;      // [hc, hidden]
  float eps = 0.0f;
  const uint8_t* tokenMask = nullptr;  // [B, S]; null: all live
  float* out = nullptr;                // [B, S, hc, hidden]
  float* gates = nullptr;              // [B, S, hc]; may be null
  float* rows = nullptr;               // [B, S, rowsPerToken * headDim] dequantised rows; may be null
  double* stageSeconds = nullptr;      // [3]: gather, wkv, gate; may be null
};

// Checks sizes, weights and every row id; throws before anything is written.
void validateV41Request(const V41ForwardRequest& req);

void v41ForwardCpu(const V41ForwardRequest& req, ThreadPool& pool, int threads);

// The layer's weights resident on one CUDA device: the table in its format, wkv as fp32
// (dequantised on the host once), q/k weights. The request's host pointers are used for
// validation only when running.
struct DeviceV41Weights;
std::shared_ptr<DeviceV41Weights> uploadV41WeightsCuda(const V41ForwardRequest& weights, const float* wkv, int device);
void v41ForwardCuda(const V41ForwardRequest& req, const DeviceV41Weights& weights);

// codes [out, in] e4m3 with UE8M0 scales per 32x32 block -> fp32 [out, in].
void dequantizeBlockFp8Cpu(const uint8_t* codes, const uint8_t* scales, int64_t out, int64_t in, float* dst,
                           ThreadPool& pool, int threads);

}  // namespace engram
