// CPU backend of MoE routing (the element body in moe.cuh per token) and the dispatch
// layout.
#include <string>
#include <vector>

#include "moe_ops.hpp"

namespace engram {

void moeRouteCpu(const float* logits, int64_t tokens, const float* bias, const float* biasVl, const uint8_t* imageMask,
                 const RouteParams& p, int32_t* indices, float* weights, ThreadPool& pool, int threads) {
  EK_REQUIRE(p.experts >= 1 && p.topk >= 1 && p.topk <= p.experts, RangeError,
             "topk must be in [1, experts], got " + std::to_string(p.topk));
  EK_REQUIRE(p.groups >= 1 && p.groups <= 64 && p.experts % p.groups == 0, RangeError,
             "experts must split evenly into at most 64 groups");
  EK_REQUIRE(p.topkGroups >= 1 && p.topkGroups <= p.groups, RangeError, "topkGroups must be in [1, groups]");
  EK_REQUIRE(p.topk <= p.topkGroups * (p.experts / p.groups), RangeError, "topk exceeds the experts of the kept groups");
  pool.parallelFor(tokens, threads, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(p.experts)), choice(static_cast<size_t>(p.experts));
    for (int64_t t = begin; t < end; ++t) {
      const float* b = (imageMask != nullptr && imageMask[t] != 0 && biasVl != nullptr) ? biasVl : bias;
      routeToken(logits + t * p.experts, b, p, scores.data(), choice.data(), indices + t * p.topk, weights + t * p.topk);
    }
  });
}

void moeLayoutCpu(const int32_t* indices, int64_t tokens, int topk, int experts, const int32_t* expertToRank,
                  int ranks, int32_t* counts, int32_t* offsets, int32_t* permutation, int32_t* countsPerRank,
                  uint8_t* tokenInRank) {
  const int64_t pairs = tokens * topk;
  for (int64_t i = 0; i < pairs; ++i) {
    EK_REQUIRE(indices[i] >= 0 && indices[i] < experts, RangeError,
               "indices[" + std::to_string(i) + "] = " + std::to_string(indices[i]) + " is outside [0, " +
                   std::to_string(experts) + ")");
  }
  if (expertToRank != nullptr) {
    for (int e = 0; e < experts; ++e) {
      EK_REQUIRE(expertToRank[e] >= 0 && expertToRank[e] < ranks, RangeError,
                 "expertToRank[" + std::to_string(e) + "] = " + std::to_string(expertToRank[e]) + " is outside [0, " +
                     std::to_string(ranks) + ")");
    }
  }
  for (int e = 0; e < experts; ++e) counts[e] = 0;
  for (int64_t i = 0; i < pairs; ++i) ++counts[indices[i]];
  int32_t running = 0;
  for (int e = 0; e < experts; ++e) {
    offsets[e] = running;
    running += counts[e];
  }
  // Pairs in (token, slot) order land in their expert's range in that order: stable.
  std::vector<int32_t> cursor(offsets, offsets + experts);
  for (int64_t i = 0; i < pairs; ++i) permutation[cursor[indices[i]]++] = static_cast<int32_t>(i);
  if (expertToRank != nullptr) {
    for (int r = 0; r < ranks; ++r) countsPerRank[r] = 0;
    for (int64_t t = 0; t < tokens; ++t) {
      uint8_t* in = tokenInRank + t * ranks;
      for (int r = 0; r < ranks; ++r) in[r] = 0;
      for (int s = 0; s < topk; ++s) in[expertToRank[indices[t * topk + s]]] = 1;
      for (int r = 0; r < ranks; ++r) countsPerRank[r] += in[r];
    }
  }
}

}  // namespace engram
