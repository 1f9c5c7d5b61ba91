// Element-level bodies of compressed-token N-gram hashing, shared by the CUDA kernels
// (hash.cu) and the CPU backend (hash_cpu.cpp) so both run the same arithmetic.
//
// Semantics (Engram reference, engram_demo_v1.py, plus DeepSeek-V4.1's DEAD tokens):
//   tok[k]   = compressed id k positions back, or padId once the look-back reaches a DEAD
//              position or runs past everything known (sequence start, empty history);
//   mix_n    = (tok[0]*m[0]) ^ ... ^ (tok[n-1]*m[n-1])   in wrapping int64;
//   hash     = mix_n mod p   with numpy's sign rule (result in [0, p)).
#pragma once
#include <cstdint>

#include "common/common.hpp"

namespace engram {

// Longest n-gram order the kernels handle; tokens per position live in registers.
constexpr int kMaxNgram = 8;

// Modular reduction by a fixed divisor p < 2^32 without a hardware divide, with numpy's
// sign rule (the remainder of a negative mix lands in [0, p) too). Two exact methods:
//  - p >= kMinFloatModulus: quotient from a double reciprocal. |x| <= 2^63 makes the
//    estimate err by < 3.3 * 2^10 / p <= 0.41, so the integer remainder x - q*p lies in
//    [-2p, 2p) and three conditional steps normalise it. Vectorises (AVX-512) on the CPU.
//  - smaller p: Barrett on |x| with m = floor((2^64 - 1) / p); the quotient estimate is
//    at most 2 short, two conditional subtractions finish it, then the sign rule.
constexpr uint64_t kMinFloatModulus = 8192;

struct FastMod {
  uint64_t p;
  uint64_t m;
  double inverse;
};

EK_HD FastMod makeFastMod(uint64_t p) { return FastMod{p, ~0ull / p, 1.0 / static_cast<double>(p)}; }

EK_HD uint64_t mulHigh64(uint64_t a, uint64_t b) {
#ifdef __CUDA_ARCH__
  return __umul64hi(a, b);
#else
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
#endif
}

EK_HD int64_t floorModFloat(int64_t x, int64_t p, double inverse) {
  const int64_t q = static_cast<int64_t>(static_cast<double>(x) * inverse);  // truncates
  int64_t r = static_cast<int64_t>(static_cast<uint64_t>(x) - static_cast<uint64_t>(q) * static_cast<uint64_t>(p));
  r += r < 0 ? p : 0;
  r += r < 0 ? p : 0;
  r -= r >= p ? p : 0;
  return r;
}

EK_HD int64_t floorModBarrett(int64_t x, uint64_t p, uint64_t m) {
  const uint64_t negative = static_cast<uint64_t>(x) >> 63;
  const uint64_t magnitude = (static_cast<uint64_t>(x) ^ (0ull - negative)) + negative;
  uint64_t r = magnitude - mulHigh64(magnitude, m) * p;
  r = r >= p ? r - p : r;
  r = r >= p ? r - p : r;
  uint64_t v = negative ? p - r : r;
  v = v >= p ? v - p : v;
  return static_cast<int64_t>(v);
}

EK_HD int64_t floorMod(int64_t x, const FastMod& f) {
  return f.p >= kMinFloatModulus ? floorModFloat(x, static_cast<int64_t>(f.p), f.inverse) : floorModBarrett(x, f.p, f.m);
}

// Where one sequence's data lives. `ids` are raw token ids (compressed through `lookup`
// on read), `mask` (nullable) marks live positions (0 = DEAD), `history` (nullable) holds
// the compressed ids of the maxNgram-1 positions before this chunk, oldest first,
// -1 where there is none or it was DEAD.
struct SequenceView {
  const int32_t* ids;
  const uint8_t* mask;
  const int32_t* history;
};

// Compressed token for each shift k = 0..n-1 looking back from position t. Once a shift
// reaches a DEAD position or runs past the known history, it and all longer shifts take
// padId (for the paper's demo: no mask, no history, so only the sequence start does).
EK_HD void shiftTokens(const SequenceView& s, const int32_t* lookup, int t, int n,
                       int maxNgram, int64_t padId, int64_t* tok) {
  bool dead = false;
  for (int k = 0; k < n; ++k) {
    const int j = t - k;
    int64_t id = padId;
    if (!dead) {
      if (j >= 0) {
        if (s.mask != nullptr && s.mask[j] == 0) {
          dead = true;
        } else {
          id = lookup[s.ids[j]];
        }
      } else {
        const int h = (maxNgram - 1) + j;  // index into the carried history
        if (s.history == nullptr || h < 0 || s.history[h] < 0) {
          dead = true;
        } else {
          id = s.history[h];
        }
      }
    }
    tok[k] = dead ? padId : id;
  }
}

// The n-gram's multiply-XOR mix, wrapping like numpy int64 (unsigned to avoid UB).
EK_HD int64_t ngramMix(const int64_t* tok, const int64_t* multipliers, int n) {
  uint64_t mix = static_cast<uint64_t>(tok[0]) * static_cast<uint64_t>(multipliers[0]);
  for (int k = 1; k < n; ++k) {
    mix ^= static_cast<uint64_t>(tok[k]) * static_cast<uint64_t>(multipliers[k]);
  }
  return static_cast<int64_t>(mix);
}

// Per-layer constants, laid out flat for `layers` layers:
//   multipliers [layers][maxNgram], mods [layers][cols], offsets [layers][cols] (nullable:
//   per-head ids), with cols = (maxNgram-1) * headsPerNgram, 2-gram heads first.
struct HashTables {
  const int64_t* multipliers;
  const FastMod* mods;
  const int64_t* offsets;
};

struct HashGeometry {
  int batch;
  int seqLen;
  int layers;
  int maxNgram;
  int headsPerNgram;
  int64_t padId;  // compressed pad id
  EK_HD int64_t cols() const { return static_cast<int64_t>(maxNgram - 1) * headsPerNgram; }
};

// One output element: layer l, column c (n-gram order c / heads + 2, head c % heads) of
// position t. Output layout [B, T, layers, cols].
template <typename OutT>
EK_HD OutT hashElement(const int64_t* tok, const HashTables& tables, const HashGeometry& g, int l,
                       int c) {
  const int n = c / g.headsPerNgram + 2;
  const int64_t mix = ngramMix(tok, tables.multipliers + static_cast<int64_t>(l) * g.maxNgram, n);
  const int64_t i = static_cast<int64_t>(l) * g.cols() + c;
  int64_t v = floorMod(mix, tables.mods[i]);
  if (tables.offsets != nullptr) v += tables.offsets[i];
  return static_cast<OutT>(v);
}

}  // namespace engram
