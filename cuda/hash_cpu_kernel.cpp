// Positions [begin, end) of one hashing call on the CPU. Built twice (see
// hash_cpu_kernel.hpp); both builds run the element bodies of hash.cuh.
#include <vector>

#include "hash_cpu_kernel.hpp"

#ifndef EK_CPU_ISA
#define EK_CPU_ISA baseline
#endif

namespace engram {
namespace EK_CPU_ISA {

namespace {

// Heads of one n-gram order, struct-of-arrays so the float path vectorises.
constexpr int kHeadBlock = 64;

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
  const int64_t* const multipliers = tables.multipliers;
  const int64_t cells = static_cast<int64_t>(layers) * cols;
  std::vector<int64_t> primes(cells), offsets(cells, 0);
  std::vector<double> inverses(cells);
  std::vector<uint8_t> groupFloat(static_cast<size_t>(layers) * keep, 1);
  for (int64_t i = 0; i < cells; ++i) {
    primes[i] = static_cast<int64_t>(tables.mods[i].p);
    inverses[i] = tables.mods[i].inverse;
    if (tables.offsets != nullptr) offsets[i] = tables.offsets[i];
    if (tables.mods[i].p < kMinFloatModulus) groupFloat[i / heads] = 0;
  }
  OutT* const out = static_cast<OutT*>(req.out);
  int64_t tok[kMaxNgram];
  for (int64_t pos = begin; pos < end; ++pos) {
    const int64_t b = pos / seqLen;
    const int t = static_cast<int>(pos - b * seqLen);
    const SequenceView seq{ids + b * seqLen, mask ? mask + b * seqLen : nullptr, history ? history + b * keep : nullptr};
    // The longest order's tokens serve every shorter order: shifts only ever grow.
    shiftTokens(seq, lookup, t, maxNgram, maxNgram, padId, tok);
    OutT* __restrict const row = out + pos * cells;
    for (int l = 0; l < layers; ++l) {
      const int64_t* const m = multipliers + static_cast<int64_t>(l) * maxNgram;
      // One mix per n-gram order serves all of its heads (on the GPU, where threads are
      // per element, hashElement recomputes it).
      for (int n = 2; n <= maxNgram; ++n) {
        const int64_t mix = ngramMix(tok, m, n);
        const int64_t first = l * cols + static_cast<int64_t>(n - 2) * heads;
        const int64_t* __restrict const p = primes.data() + first;
        const double* __restrict const inv = inverses.data() + first;
        const int64_t* __restrict const off = offsets.data() + first;
        OutT* __restrict const dst = row + first;
        if (groupFloat[first / heads]) {
          for (int h = 0; h < heads; ++h) dst[h] = static_cast<OutT>(floorModFloat(mix, p[h], inv[h]) + off[h]);
        } else {
          for (int h = 0; h < heads; ++h) dst[h] = static_cast<OutT>(floorMod(mix, tables.mods[first + h]) + off[h]);
        }
      }
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
