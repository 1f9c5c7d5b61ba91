// Positions [begin, end) of one hashing call on the CPU. Built three times (baseline,
// AVX2/FMA, AVX-512: see hash_cpu_kernel.hpp); every build runs the element bodies of
// hash.cuh.
//
// Blocked by position so that each stage is a loop the compiler vectorises:
//   1. compressed look-back tokens tok[k][i] for a block of positions (shiftTokens where
//      a sequence start, history or DEAD mask is involved, plain lookups elsewhere);
//   2. the multiply-XOR mix of every (layer, order), across positions;
//   3. the reduction mod each head's prime, one (layer, order) group at a time with its
//      primes held in registers, across the block's positions.
#include <algorithm>
#include <cstring>
#include <vector>
#if defined(__AVX2__) && !defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "hash/hash_cpu_kernel.hpp"

#ifndef EK_CPU_ISA
#define EK_CPU_ISA baseline
#endif

namespace engram {
namespace EK_CPU_ISA {

namespace {

constexpr int kBlock = 128;  // positions per block: tokens and mixes stay in L1

struct GroupConstants {
  const int64_t* primes;
  const double* inverses;
  const int64_t* offsets;
  const FastMod* mods;
  bool useFloat;
};

// Eight-lane vectors pay off only where the build has 512-bit registers; elsewhere the
// compiler would split them into slow emulation, so the scalar loops run instead.
#if defined(__AVX512F__) && defined(__AVX512DQ__)
#define EK_VECTOR_LANES 1

// Eight lanes of floorModFloat (hash.cuh) in GCC/Clang vector types: the compiler
// otherwise vectorises across positions and scatters the results with scalar stores.
using U64x8 = uint64_t __attribute__((vector_size(64)));
using I64x8 = int64_t __attribute__((vector_size(64)));
using F64x8 = double __attribute__((vector_size(64)));
using I32x8 = int32_t __attribute__((vector_size(32)));

inline I64x8 floorModFloat8(I64x8 x, I64x8 p, F64x8 inverse) {
  const I64x8 q = __builtin_convertvector(__builtin_convertvector(x, F64x8) * inverse, I64x8);  // truncates
  I64x8 r = (I64x8)((U64x8)x - (U64x8)q * (U64x8)p);
  r += (r < 0) & p;  // lane masks are all ones where true
  r += (r < 0) & p;
  r -= (r >= p) & p;
  return r;
}

template <typename T>
inline T loadVector(const void* src) {
  T v;
  std::memcpy(&v, src, sizeof v);
  return v;
}

template <typename OutT>
inline void storeLanes(OutT* dst, I64x8 v) {
  if constexpr (sizeof(OutT) == 4) {
    const I32x8 narrow = __builtin_convertvector(v, I32x8);
    std::memcpy(dst, &narrow, sizeof narrow);
  } else {
    std::memcpy(dst, &v, sizeof v);
  }
}
#elif defined(__AVX2__)
#define EK_AVX2_LANES 1

// Four heads' floorModFloat (hash.cuh) of one mix with AVX2, which has neither a 64-bit
// multiply nor 64-bit <-> double conversions: the mix goes to double once (scalar, the
// same in every lane), the quotient estimate |x / p| < 2^51 comes back to an integer
// through the 2^52 + 2^51 magic (rounded, not truncated: off by at most 1.32 from x / p,
// which the three steps below still normalise, as they do the truncated one), and q * p
// mod 2^64 is two 32 x 32 -> 64 products (p < 2^32). Exact: the same remainder in [0, p).
struct Avx2Heads {
  __m256i p;
  __m256d inverse;
  __m256i offset;
};

inline __m256i floorModFloat4(int64_t x, double xd, const Avx2Heads& h) {
  const __m256d magic = _mm256_set1_pd(6755399441055744.0);  // 2^52 + 2^51
  const __m256d qd = _mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(xd), h.inverse), magic);
  const __m256i q = _mm256_sub_epi64(_mm256_castpd_si256(qd), _mm256_castpd_si256(magic));
  const __m256i qp = _mm256_add_epi64(_mm256_mul_epu32(q, h.p), _mm256_slli_epi64(_mm256_mul_epu32(_mm256_srli_epi64(q, 32), h.p), 32));
  __m256i r = _mm256_sub_epi64(_mm256_set1_epi64x(x), qp);
  const __m256i zero = _mm256_setzero_si256();
  r = _mm256_add_epi64(r, _mm256_and_si256(_mm256_cmpgt_epi64(zero, r), h.p));
  r = _mm256_add_epi64(r, _mm256_and_si256(_mm256_cmpgt_epi64(zero, r), h.p));
  const __m256i below = _mm256_cmpgt_epi64(h.p, r);  // r < p
  r = _mm256_sub_epi64(r, _mm256_andnot_si256(below, h.p));
  return _mm256_add_epi64(r, h.offset);
}

template <typename OutT>
inline void storeLanes4(OutT* dst, __m256i v) {
  if constexpr (sizeof(OutT) == 4) {
    const __m256i packed = _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm256_castsi256_si128(packed));
  } else {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), v);
  }
}
#endif

// Heads of one group for the block's positions, one output row (stride apart) per
// position. Groups whose heads are a multiple of 8 wide run eight lanes at a time (four
// on AVX2).
template <typename OutT>
void reduceGroup(const int64_t* __restrict mixes, int count, const GroupConstants& g, int heads,
                 OutT* __restrict dst, int64_t stride) {
#ifdef EK_VECTOR_LANES
  if (g.useFloat && heads % 8 == 0) {
    for (int h0 = 0; h0 < heads; h0 += 8) {
      const I64x8 p = loadVector<I64x8>(g.primes + h0);
      const F64x8 inv = loadVector<F64x8>(g.inverses + h0);
      const I64x8 off = loadVector<I64x8>(g.offsets + h0);
      for (int i = 0; i < count; ++i) {
        const I64x8 x = I64x8{} + mixes[i];  // broadcast
        storeLanes(dst + i * stride + h0, floorModFloat8(x, p, inv) + off);
      }
    }
    return;
  }
#elif defined(EK_AVX2_LANES)
  bool narrowPrimes = true;  // the two-product q * p needs p < 2^32 (always, for hashing)
  for (int h = 0; h < heads; ++h) narrowPrimes = narrowPrimes && g.primes[h] < (int64_t{1} << 32);
  if (g.useFloat && heads % 8 == 0 && narrowPrimes) {
    // Eight heads at a time: two four-lane halves, one 256-bit store of int32 rows.
    for (int h0 = 0; h0 < heads; h0 += 8) {
      const auto lanesAt = [&](int h) {
        return Avx2Heads{_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.primes + h)), _mm256_loadu_pd(g.inverses + h),
                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.offsets + h))};
      };
      const Avx2Heads low = lanesAt(h0), high = lanesAt(h0 + 4);
      for (int i = 0; i < count; ++i) {
        const int64_t x = mixes[i];
        const double xd = static_cast<double>(x);
        const __m256i a = floorModFloat4(x, xd, low), b = floorModFloat4(x, xd, high);
        OutT* const row = dst + i * stride + h0;
        if constexpr (sizeof(OutT) == 4) {
          const __m256i evens = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
          const __m256i packed = _mm256_blend_epi32(_mm256_permutevar8x32_epi32(a, evens), _mm256_permutevar8x32_epi32(b, evens), 0xF0);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(row), packed);
        } else {
          storeLanes4(row, a);
          storeLanes4(row + 4, b);
        }
      }
    }
    return;
  }
  if (g.useFloat && heads % 4 == 0 && narrowPrimes) {
    for (int h0 = 0; h0 < heads; h0 += 4) {
      const Avx2Heads lanes{_mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.primes + h0)), _mm256_loadu_pd(g.inverses + h0),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.offsets + h0))};
      for (int i = 0; i < count; ++i) {
        const int64_t x = mixes[i];
        storeLanes4(dst + i * stride + h0, floorModFloat4(x, static_cast<double>(x), lanes));
      }
    }
    return;
  }
#endif
  if (g.useFloat) {
    for (int i = 0; i < count; ++i) {
      const int64_t x = mixes[i];
      OutT* __restrict const row = dst + i * stride;
      for (int h = 0; h < heads; ++h) row[h] = static_cast<OutT>(floorModFloat(x, g.primes[h], g.inverses[h]) + g.offsets[h]);
    }
  } else {
    for (int i = 0; i < count; ++i) {
      const int64_t x = mixes[i];
      OutT* __restrict const row = dst + i * stride;
      for (int h = 0; h < heads; ++h) row[h] = static_cast<OutT>(floorMod(x, g.mods[h]) + g.offsets[h]);
    }
  }
}

template <typename OutT>
void hashTyped(const HashRequest& req, const HashTables& tables, int64_t begin, int64_t end) {
  // Locals, not fields: stores through `out` may not alias them, so nothing is reloaded.
  const int seqLen = req.geometry.seqLen;
  const int layers = req.geometry.layers;
  const int maxNgram = req.geometry.maxNgram;
  const int heads = req.geometry.headsPerNgram;
  const int64_t padId = req.geometry.padId;
  const int64_t cols = req.geometry.cols();
  const int keep = maxNgram - 1;
  const int32_t* const ids = req.ids;
  const uint8_t* const mask = req.mask;
  const int32_t* const history = req.history;
  const int32_t* const lookup = req.lookup;
  const int64_t cells = static_cast<int64_t>(layers) * cols;
  const int groups = layers * keep;

  std::vector<int64_t> primes(cells), offsets(cells, 0);
  std::vector<double> inverses(cells);
  std::vector<GroupConstants> groupConstants(groups);
  for (int64_t i = 0; i < cells; ++i) {
    primes[i] = static_cast<int64_t>(tables.mods[i].p);
    inverses[i] = tables.mods[i].inverse;
    if (tables.offsets != nullptr) offsets[i] = tables.offsets[i];
  }
  for (int gi = 0; gi < groups; ++gi) {
    const int64_t first = static_cast<int64_t>(gi) * heads;
    bool useFloat = true;
    for (int h = 0; h < heads; ++h) useFloat = useFloat && tables.mods[first + h].p >= kMinFloatModulus;
    groupConstants[gi] = {primes.data() + first, inverses.data() + first, offsets.data() + first, tables.mods + first, useFloat};
  }

  std::vector<int64_t> tokBuf(static_cast<size_t>(maxNgram) * kBlock);
  std::vector<int64_t> compBuf(static_cast<size_t>(kBlock) + keep);
  int64_t* const comp = compBuf.data();
  std::vector<int64_t> mixBuf(static_cast<size_t>(groups) * kBlock);
  int64_t shifted[kMaxNgram];
  OutT* const out = static_cast<OutT*>(req.out);

  for (int64_t blockBegin = begin; blockBegin < end; blockBegin += kBlock) {
    const int count = static_cast<int>(std::min<int64_t>(kBlock, end - blockBegin));
    int64_t* __restrict const tok = tokBuf.data();

    // 1. Look-back tokens, shift-major: compress the block and the keep positions before
    //    it once, copy the shifts, then redo the positions near a sequence start or a
    //    DEAD token with shiftTokens.
    for (int i = -keep; i < count; ++i) {
      const int64_t pos = blockBegin + i;
      comp[keep + i] = pos >= 0 ? lookup[ids[pos]] : padId;
    }
    for (int k = 0; k < maxNgram; ++k) {
      const int64_t* __restrict const src = comp + keep - k;
      int64_t* __restrict const dstTok = tok + k * kBlock;
      for (int i = 0; i < count; ++i) dstTok[i] = src[i];
    }
    int64_t b = blockBegin / seqLen;
    int t = static_cast<int>(blockBegin - b * seqLen);
    for (int i = 0; i < count; ++i) {
      const int64_t pos = blockBegin + i;
      bool exact = t >= keep;
      if (mask != nullptr) {
        for (int k = 0; k < maxNgram && exact; ++k) exact = mask[pos - k] != 0;
      }
      if (!exact) {
        const SequenceView seq{ids + b * seqLen, mask ? mask + b * seqLen : nullptr,
                               history ? history + b * keep : nullptr};
        shiftTokens(seq, lookup, t, maxNgram, maxNgram, padId, shifted);
        for (int k = 0; k < maxNgram; ++k) tok[k * kBlock + i] = shifted[k];
      }
      if (++t == seqLen) {
        t = 0;
        ++b;
      }
    }

    // 2. Mixes per (layer, order): order n extends order n-1 by one more product.
    for (int l = 0; l < layers; ++l) {
      const int64_t* const m = tables.multipliers + static_cast<int64_t>(l) * maxNgram;
      int64_t* __restrict const first = mixBuf.data() + static_cast<int64_t>(l) * keep * kBlock;
      const uint64_t m0 = static_cast<uint64_t>(m[0]), m1 = static_cast<uint64_t>(m[1]);
      for (int i = 0; i < count; ++i) {
        first[i] = static_cast<int64_t>((static_cast<uint64_t>(tok[i]) * m0) ^
                                        (static_cast<uint64_t>(tok[kBlock + i]) * m1));
      }
      for (int n = 3; n <= maxNgram; ++n) {
        const int64_t* __restrict const prev = first + (n - 3) * kBlock;
        int64_t* __restrict const next = first + (n - 2) * kBlock;
        const int64_t* __restrict const tk = tok + (n - 1) * kBlock;
        const uint64_t mk = static_cast<uint64_t>(m[n - 1]);
        for (int i = 0; i < count; ++i) {
          next[i] = static_cast<int64_t>(static_cast<uint64_t>(prev[i]) ^ (static_cast<uint64_t>(tk[i]) * mk));
        }
      }
    }

    // 3. Reductions, one group at a time.
    OutT* const blockOut = out + blockBegin * cells;
    for (int gi = 0; gi < groups; ++gi) {
      const int64_t* const mixes = mixBuf.data() + static_cast<int64_t>(gi) * kBlock;
      OutT* const dst = blockOut + static_cast<int64_t>(gi) * heads;
      reduceGroup(mixes, count, groupConstants[gi], heads, dst, cells);
    }
  }
}

}  // namespace

void hashPositions(const HashRequest& req, const HashTables& tables, int64_t begin, int64_t end) {
  if (req.int64Output) {
    hashTyped<int64_t>(req, tables, begin, end);
  } else {
    hashTyped<int32_t>(req, tables, begin, end);
  }
}

}  // namespace EK_CPU_ISA
}  // namespace engram
