// Host entry points of MoE routing and dispatch layout (CPU).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "gemm_ops.hpp"

#include "moe.cuh"
#include "thread_pool.hpp"

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

}  // namespace engram
