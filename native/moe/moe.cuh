// Element-level bodies of Mixture-of-Experts routing (the DeepSeek-V3 Gate and V4.1's
// variant), shared by the CPU backend and CUDA: one token's logits -> top-k experts and
// their weights.
//
//   scores   = softmax(logits) | sigmoid(logits) | sqrt(softplus(logits / gateTemp))
//   choice   = scores + bias (bias only steers selection)
//   groups   : score = max of the group (no bias) or sum of its top-2 choice scores
//              (bias); keep topkGroups groups, mask the others
//   top-k    : by choice score, descending; ties to the lower expert index
//   weights  = scores of the chosen experts, / (sum + normEps) unless softmax, x routeScale
#pragma once
#include <cmath>
#include <cstdint>

#include "common/common.hpp"

namespace engram {

enum class ScoreFunc : int { Softmax = 0, Sigmoid = 1, SqrtSoftplus = 2 };

struct RouteParams {
  int experts;
  int topk;
  int groups;      // 1: no groups
  int topkGroups;
  ScoreFunc func;
  float gateTemp;  // sqrtsoftplus only
  float routeScale;
  float normEps;   // added to the sum when renormalising (V4.1: 1e-20, V3: 0)
  bool hasBias;
};

// a ranks before b: larger value first, NaN last, ties to the lower index.
EK_HD bool ranksBefore(float a, int ia, float b, int ib) {
  const bool na = a != a, nb = b != b;
  if (na != nb) return nb;
  if (!na && a != b) return a > b;
  return ia < ib;
}

EK_HD float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

// scores[e] for every expert (softmax over the row, or the element-wise function).
EK_HD void routeScores(const float* logits, const RouteParams& p, float* scores) {
  if (p.func == ScoreFunc::Softmax) {
    float peak = -INFINITY;
    for (int e = 0; e < p.experts; ++e) peak = logits[e] > peak ? logits[e] : peak;
    float sum = 0.0f;
    for (int e = 0; e < p.experts; ++e) {
      scores[e] = expf(logits[e] - peak);
      sum += scores[e];
    }
    for (int e = 0; e < p.experts; ++e) scores[e] /= sum;
  } else if (p.func == ScoreFunc::Sigmoid) {
    for (int e = 0; e < p.experts; ++e) scores[e] = 1.0f / (1.0f + expf(-logits[e]));
  } else {
    for (int e = 0; e < p.experts; ++e) scores[e] = sqrtf(softplus(logits[e] / p.gateTemp));
  }
}

// One token: `choice` is scratch of `experts` floats; indices/weights get topk entries,
// in ranking order (as torch.topk returns them).
EK_HD void routeToken(const float* logits, const float* bias, const RouteParams& p, float* scores, float* choice,
                      int32_t* indices, float* weights) {
  routeScores(logits, p, scores);
  for (int e = 0; e < p.experts; ++e) choice[e] = scores[e] + (p.hasBias ? bias[e] : 0.0f);
  if (p.groups > 1) {
    const int per = p.experts / p.groups;
    // Rank groups by their score; keep the best topkGroups, mask the rest with -inf.
    unsigned long long kept = 0;  // bit g: group g kept (groups <= 64)
    for (int round = 0; round < p.topkGroups; ++round) {
      int best = -1;
      float bestScore = 0.0f;
      for (int g = 0; g < p.groups; ++g) {
        if (kept & (1ull << g)) continue;
        float s;
        if (p.hasBias) {  // sum of the group's two best choice scores
          float a = -INFINITY, b = -INFINITY;
          int ia = -1;
          for (int e = g * per; e < (g + 1) * per; ++e) {
            if (ia < 0 || ranksBefore(choice[e], e, a, ia)) {
              b = a;
              a = choice[e];
              ia = e;
            } else if (ranksBefore(choice[e], e, b, -1)) {
              b = choice[e];
            }
          }
          s = per >= 2 ? a + b : a;
        } else {
          s = -INFINITY;
          for (int e = g * per; e < (g + 1) * per; ++e) s = (choice[e] > s || s != s) ? choice[e] : s;
        }
        if (best < 0 || ranksBefore(s, g, bestScore, best)) {
          best = g;
          bestScore = s;
        }
      }
      kept |= 1ull << best;
    }
    for (int g = 0; g < p.groups; ++g) {
      if (kept & (1ull << g)) continue;
      for (int e = g * per; e < (g + 1) * per; ++e) choice[e] = -INFINITY;
    }
  }
  // Top-k in one pass: indices[] stays sorted by rank; an expert enters only if it ranks
  // before the current k-th (masked experts rank after every kept one). The order is total
  // (value, NaN last, lower index first), so this is the selection sort's result.
  int count = 0;
  for (int e = 0; e < p.experts; ++e) {
    if (count == p.topk && !ranksBefore(choice[e], e, choice[indices[count - 1]], indices[count - 1])) continue;
    int pos = count < p.topk ? count++ : p.topk - 1;
    while (pos > 0 && ranksBefore(choice[e], e, choice[indices[pos - 1]], indices[pos - 1])) {
      indices[pos] = indices[pos - 1];
      --pos;
    }
    indices[pos] = e;
  }
  float sum = 0.0f;
  for (int slot = 0; slot < p.topk; ++slot) {
    weights[slot] = scores[indices[slot]];
    sum += weights[slot];
  }
  const bool renormalise = p.func != ScoreFunc::Softmax;
  for (int slot = 0; slot < p.topk; ++slot) {
    weights[slot] = (renormalise ? weights[slot] / (sum + p.normEps) : weights[slot]) * p.routeScale;
  }
}

// One SwiGLU activation of an expert: silu(min(gate, limit)) * clamp(up, -limit, limit)
// (DeepSeek-V4.1's swiglu_limit; limit = +inf for none), times the routing weight, which
// V4.1 applies before the down projection (linear, so equal to applying it after).
EK_HD float swigluActivation(float gate, float up, float weight, float limit) {
  const float g = gate > limit ? limit : gate;
  const float u = up > limit ? limit : (up < -limit ? -limit : up);
  return g / (1.0f + expf(-g)) * u * weight;
}

}  // namespace engram
