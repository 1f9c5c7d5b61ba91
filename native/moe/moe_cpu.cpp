// CPU backend of MoE routing (the element body in moe.cuh per token) and the dispatch
// layout.
#include <chrono>
#include <cmath>
#include <algorithm>
#include <string>
#include <vector>

#include "moe/moe_ops.hpp"

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

namespace {

// x rows [rows, dim] (row rowIndex[i] for the i-th, when given) through one SwiGLU expert
// into y [rows, dim]; rowWeight[i] scales row i's activation (null: 1).
void runExpert(const ExpertWeights& w, const float* x, const int32_t* rowIndex, int64_t rows, int dim,
               const float* rowWeight, float limit, float* y, std::vector<float>& hidden, ThreadPool& pool, int threads) {
  const int64_t ffn = w.gateUp->n / 2;
  if (hidden.size() < static_cast<size_t>(rows * 2 * ffn)) hidden.resize(rows * 2 * ffn);
  linearCpu(x, rows, dim, *w.gateUp, hidden.data(), 2 * ffn, pool, threads, rowIndex);
  pool.parallelFor(rows, threads, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* h = hidden.data() + r * 2 * ffn;
      const float weight = rowWeight ? rowWeight[r] : 1.0f;
      for (int64_t j = 0; j < ffn; ++j) h[j] = swigluActivation(h[j], h[ffn + j], weight, limit);
    }
  });
  linearCpu(hidden.data(), rows, 2 * ffn, *w.down, y, dim, pool, threads);
}

}  // namespace

void moeExpertsCpu(const MoeExpertsRequest& r, ThreadPool& pool, int threads) {
  const int experts = static_cast<int>(r.experts.size());
  EK_REQUIRE(experts >= 1 && r.topk >= 1 && r.dim >= 1, RangeError, "an MoE needs experts, topk >= 1 and dim >= 1");
  for (const auto* list : {&r.experts, &r.shared}) {
    for (const ExpertWeights& w : *list) {
      EK_REQUIRE(w.gateUp && w.down && w.gateUp->k == r.dim && w.gateUp->n % 2 == 0 && w.down->n == r.dim &&
                     w.down->k == w.gateUp->n / 2,
                 RangeError, "expert weights do not match dim");
    }
  }
  const int64_t pairs = r.tokens * r.topk;
  std::vector<int32_t> counts(experts), offsets(experts), permutation(static_cast<size_t>(pairs));
  moeLayoutCpu(r.indices, r.tokens, r.topk, experts, nullptr, 1, counts.data(), offsets.data(), permutation.data(),
               nullptr, nullptr);
  const float limit = r.swigluLimit > 0.0f ? r.swigluLimit : INFINITY;
  const auto seconds = [](std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto t0 = std::chrono::steady_clock::now();
  // Dispatch: each expert-sorted row's token and routing weight (the experts' first GEMM
  // reads the token rows straight from x while packing them: no copy of the rows).
  // Scratch of the calling thread, reused across calls (fresh buffers of this size cost a
  // page fault per 4 KiB on every call).
  thread_local std::vector<float> sortedWeight, results, hidden, sharedOut, one;
  thread_local std::vector<int32_t> sortedToken;
  thread_local std::vector<int64_t> where;
  sortedToken.resize(std::max(sortedToken.size(), static_cast<size_t>(pairs)));
  sortedWeight.resize(std::max(sortedWeight.size(), static_cast<size_t>(pairs)));
  results.resize(std::max(results.size(), static_cast<size_t>(pairs * r.dim)));
  // Plain pointers into the caller's scratch: a thread_local named inside a pool lambda
  // would be the worker thread's own (empty) copy.
  int32_t* const tokenOf = sortedToken.data();
  float* const rowWeights = sortedWeight.data();
  float* const expertOut = results.data();
  pool.parallelFor(pairs, threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t pair = permutation[i];
      tokenOf[i] = static_cast<int32_t>(pair / r.topk);
      rowWeights[i] = r.weights[pair];
    }
  });
  if (r.stageSeconds) r.stageSeconds[0] = seconds(t0);
  t0 = std::chrono::steady_clock::now();
  // Experts are independent: whole experts go to the threads (each runs its GEMMs on
  // one thread), which keeps small experts' GEMMs free of per-call pool traffic. The
  // split is by rows, so a thread gets about the same work whatever the routing.
  const int want = threads <= 0 ? pool.maxThreads() : std::min(threads, pool.maxThreads());
  std::vector<int> firstExpert(static_cast<size_t>(want) + 1, experts);
  {
    int e = 0;
    int64_t seen = 0;
    for (int part = 0; part < want; ++part) {
      firstExpert[part] = e;
      const int64_t target = (pairs * (part + 1)) / want;
      while (e < experts && seen + counts[e] <= target) seen += counts[e++];
    }
    firstExpert[want] = experts;
  }
  const int32_t* const countOf = counts.data();
  const int32_t* const offsetOf = offsets.data();
  const int* const bounds = firstExpert.data();
  pool.parallelFor(want, want, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> expertHidden;  // this worker's own
    for (int64_t part = begin; part < end; ++part) {
      for (int e = bounds[part]; e < bounds[part + 1]; ++e) {
        if (countOf[e] == 0) continue;
        const int64_t off = offsetOf[e];
        runExpert(r.experts[e], r.x, tokenOf + off, countOf[e], r.dim, rowWeights + off, limit,
                  expertOut + off * r.dim, expertHidden, pool, 1);
      }
    }
  });
  // Combine in slot order per token (where[pair] = its row in the sorted buffer).
  where.resize(std::max(where.size(), static_cast<size_t>(pairs)));
  int64_t* const rowOf = where.data();
  for (int64_t i = 0; i < pairs; ++i) rowOf[permutation[i]] = i;
  const bool hasShared = !r.shared.empty();
  if (hasShared) {
    sharedOut.assign(static_cast<size_t>(r.tokens * r.dim), 0.0f);
    one.resize(std::max(one.size(), static_cast<size_t>(r.tokens * r.dim)));
  }
  const float* const sharedSum = sharedOut.data();
  for (const ExpertWeights& w : r.shared) {
    runExpert(w, r.x, nullptr, r.tokens, r.dim, nullptr, limit, one.data(), hidden, pool, threads);
    for (int64_t i = 0; i < r.tokens * r.dim; ++i) sharedOut[i] += one[i];
  }
  if (r.stageSeconds) r.stageSeconds[1] = seconds(t0);
  t0 = std::chrono::steady_clock::now();
  pool.parallelFor(r.tokens, threads, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* dst = r.out + t * r.dim;
      for (int j = 0; j < r.dim; ++j) dst[j] = 0.0f;
      for (int s = 0; s < r.topk; ++s) {
        const float* src = expertOut + rowOf[t * r.topk + s] * r.dim;
        for (int j = 0; j < r.dim; ++j) dst[j] += src[j];
      }
      if (hasShared) {
        for (int j = 0; j < r.dim; ++j) dst[j] += sharedSum[t * r.dim + j];
      }
    }
  });
  if (r.stageSeconds) r.stageSeconds[2] = seconds(t0);
}

}  // namespace engram
