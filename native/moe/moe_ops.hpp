// Host entry points of MoE routing and dispatch layout (CPU).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "gemm/gemm_ops.hpp"

#include "moe/moe.cuh"
#include "common/thread_pool.hpp"

namespace engram {

// logits [tokens, experts] -> indices / weights [tokens, topk]. bias (nullable) steers
// selection; where imageMask[t] is set, biasVl is used instead (V4.1's vision tokens).
void moeRouteCpu(const float* logits, int64_t tokens, const float* bias, const float* biasVl, const uint8_t* imageMask,
                 const RouteParams& p, int32_t* indices, float* weights, ThreadPool& pool, int threads);

// DeepEP-style layout of [tokens, topk] expert indices: tokens per expert, their
// exclusive offsets, and the stable permutation of (token, slot) pairs (as token * topk
// + slot) sorted by expert then token. With expertToRank (nullable): tokens per rank
// (each token once per rank it goes to) and tokenInRank [tokens, ranks].
void moeLayoutCpu(const int32_t* indices, int64_t tokens, int topk, int experts, const int32_t* expertToRank,
                  int ranks, int32_t* counts, int32_t* offsets, int32_t* permutation, int32_t* countsPerRank,
                  uint8_t* tokenInRank);

// One expert's weights: gate and up projections stacked [2 * ffn, dim] (one GEMM gives
// both), and the down projection [dim, ffn].
struct ExpertWeights {
  std::shared_ptr<const PackedLinear> gateUp;
  std::shared_ptr<const PackedLinear> down;
};

struct MoeExpertsRequest {
  int64_t tokens = 0;
  int dim = 0;
  int topk = 0;
  const float* x = nullptr;          // [tokens, dim]
  const int32_t* indices = nullptr;  // [tokens, topk]
  const float* weights = nullptr;    // [tokens, topk]
  std::vector<ExpertWeights> experts;
  std::vector<ExpertWeights> shared;  // added to every token with weight 1
  float swigluLimit = 0.0f;           // <= 0 or inf: none
  float* out = nullptr;               // [tokens, dim]
  double* stageSeconds = nullptr;     // [3]: dispatch, experts (routed + shared), combine
};

// Dispatch into the expert-sorted buffer, grouped SwiGLU experts, combine (a token's
// topk contributions summed in slot order, then the shared experts): deterministic.
void moeExpertsCpu(const MoeExpertsRequest& req, ThreadPool& pool, int threads);

// `count` matrices [n, k] of one kind (e.g. every routed expert's stacked gate+up), one
// after the other in their stored codes (see quant.cuh): the CUDA kernels decode them
// while loading tiles, so quantised experts stay quantised in device memory too.
struct ExpertMatrices {
  WeightFormat format = WeightFormat::F32;
  int64_t n = 0;
  int64_t k = 0;
  int64_t count = 0;
  const uint8_t* codes = nullptr;      // count x n x weightRowBytes(format, k)
  const uint8_t* rowScales = nullptr;  // count x n x ceil(k/32); scaled formats only
};

struct MoeDeviceUpload {
  const float* gateWeight = nullptr;  // [experts, dim]
  int experts = 0;
  int dim = 0;
  ExpertMatrices gateUp, down;              // count = experts
  ExpertMatrices sharedGateUp, sharedDown;  // count 0 (none) or 1
};

struct MoeCudaRequest {
  int64_t tokens = 0;
  int64_t dim = 0;  // the caller's: must be the uploaded block's
  RouteParams route{};
  const float* x = nullptr;  // [tokens, dim]
  const float* bias = nullptr;
  const float* biasVl = nullptr;
  const uint8_t* imageMask = nullptr;
  float swigluLimit = 0.0f;  // <= 0: none
  float* out = nullptr;      // [tokens, dim]
  int32_t* indices = nullptr;  // [tokens, topk]
  float* weights = nullptr;    // [tokens, topk]
  float* logits = nullptr;     // [tokens, experts]; may be null
};

// The whole block on one CUDA device: gate GEMM and selection (moe.cuh's routeToken per
// token), the layout (moeLayoutCpu on the indices), grouped expert GEMMs in one launch
// per projection for all experts, SwiGLU, shared experts, and a combine in slot order.
// moeRouteCpu's twin on one CUDA device for a standalone routing call: the gate weight
// [experts, dim] and x go up, the gate GEMM and routeToken run there, the routing comes back.
struct MoeRouteCudaRequest {
  int64_t tokens = 0;
  int dim = 0;
  RouteParams route{};
  const float* x = nullptr;
  const float* gateWeight = nullptr;
  const float* bias = nullptr;
  const float* biasVl = nullptr;
  const uint8_t* imageMask = nullptr;
  int32_t* indices = nullptr;
  float* weights = nullptr;
  float* logits = nullptr;  // may be null
  int device = 0;
};
void moeRouteCuda(const MoeRouteCudaRequest& req);

struct DeviceMoeWeights;
std::shared_ptr<DeviceMoeWeights> uploadMoeWeightsCuda(const MoeDeviceUpload& upload, int device);
void moeForwardCuda(const MoeCudaRequest& req, const DeviceMoeWeights& weights);

}  // namespace engram
