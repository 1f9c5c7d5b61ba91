// Host entry points of MoE routing and dispatch layout (CPU).
#pragma once
#include <cstdint>

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

}  // namespace engram
