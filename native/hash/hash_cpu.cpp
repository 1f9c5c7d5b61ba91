// CPU backend of the hashing family: the element bodies of hash.cuh over a thread pool.
#include <string>

#include "common/cpu_features.hpp"
#include "hash/hash_cpu_kernel.hpp"
#include "hash/hash_ops.hpp"

namespace engram {

void validateHashRequest(const HashRequest& req) {
  const HashGeometry& g = req.geometry;
  EK_REQUIRE(g.batch >= 0 && g.seqLen >= 0, RangeError, "shape must be non-negative");
  EK_REQUIRE(g.maxNgram >= 2 && g.maxNgram <= kMaxNgram, RangeError,
             "maxNgramSize must be in [2, " + std::to_string(kMaxNgram) + "], got " +
                 std::to_string(g.maxNgram));
  EK_REQUIRE(g.headsPerNgram >= 1, RangeError, "nHeadPerNgram must be >= 1");
  EK_REQUIRE(g.layers >= 1, RangeError, "at least one layer is required");
  EK_REQUIRE(req.lookup != nullptr && req.vocabSize > 0, TypeError, "lookup table is missing");
  EK_REQUIRE(g.padId >= 0 && g.padId < req.compressedVocabSize, RangeError,
             "compressed pad id out of range: " + std::to_string(g.padId));
  const size_t cells = static_cast<size_t>(g.layers) * static_cast<size_t>(g.cols());
  EK_REQUIRE(req.multipliers.size() == static_cast<size_t>(g.layers) * g.maxNgram, RangeError,
             "multipliers length does not match layers * maxNgramSize");
  EK_REQUIRE(req.primes.size() == cells, RangeError, "primes length does not match layers * cols");
  EK_REQUIRE(req.offsets.empty() || req.offsets.size() == cells, RangeError,
             "offsets length does not match layers * cols");
  for (uint64_t p : req.primes) {
    EK_REQUIRE(p >= 2 && p < (1ull << 32), RangeError, "modulus out of range: " + std::to_string(p));
  }
  if (!req.int64Output) {
    for (size_t i = 0; i < cells; ++i) {
      const int64_t top = static_cast<int64_t>(req.primes[i]) - 1 + (req.offsets.empty() ? 0 : req.offsets[i]);
      EK_REQUIRE(top <= INT32_MAX, RangeError, "row ids exceed int32: use int64 output");
    }
  }
  const int64_t n = static_cast<int64_t>(g.batch) * g.seqLen;
  EK_REQUIRE(n == 0 || req.ids != nullptr, TypeError, "inputIds is missing");
  EK_REQUIRE(n == 0 || req.out != nullptr, TypeError, "output buffer is missing");
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = req.ids[i];
    EK_REQUIRE(id >= 0 && id < req.vocabSize, RangeError,
               "inputIds[" + std::to_string(i) + "] = " + std::to_string(id) +
                   " is outside the tokenizer's vocabulary [0, " +
                   std::to_string(req.vocabSize) + ")");
  }
  if (req.history != nullptr) {
    const int64_t hn = static_cast<int64_t>(g.batch) * (g.maxNgram - 1);
    for (int64_t i = 0; i < hn; ++i) {
      const int32_t h = req.history[i];
      EK_REQUIRE(h >= -1 && h < req.compressedVocabSize, RangeError,
                 "history[" + std::to_string(i) + "] = " + std::to_string(h) + " is outside [-1, " +
                     std::to_string(req.compressedVocabSize) + ")");
    }
  }
}

void nextHistory(const HashRequest& req) {
  if (req.historyOut == nullptr) return;
  const HashGeometry& g = req.geometry;
  const int keep = g.maxNgram - 1;
  for (int b = 0; b < g.batch; ++b) {
    const int32_t* ids = req.ids + static_cast<int64_t>(b) * g.seqLen;
    const uint8_t* mask = req.mask ? req.mask + static_cast<int64_t>(b) * g.seqLen : nullptr;
    const int32_t* hist = req.history ? req.history + static_cast<int64_t>(b) * keep : nullptr;
    int32_t* out = req.historyOut + static_cast<int64_t>(b) * keep;
    // Entry i of the new history is position seqLen - keep + i of history ++ chunk.
    for (int i = 0; i < keep; ++i) {
      const int j = g.seqLen - keep + i;
      if (j >= 0) {
        out[i] = (mask != nullptr && mask[j] == 0) ? -1 : req.lookup[ids[j]];
      } else {
        const int h = keep + j;
        out[i] = hist ? hist[h] : -1;
      }
    }
  }
}

std::vector<FastMod> fastMods(const HashRequest& req) {
  std::vector<FastMod> mods;
  mods.reserve(req.primes.size());
  for (uint64_t p : req.primes) mods.push_back(makeFastMod(p));
  return mods;
}

CpuHashKernel cpuHashKernel(const std::string& name) {
  // Same source and arithmetic in every build, wider registers.
  if (name == "baseline") return baseline::hashPositions;
  EK_REQUIRE(name == "auto" || name == "avx2" || name == "avx512", RangeError,
             "cpu kernel must be 'auto', 'baseline', 'avx2' or 'avx512', got '" + name + "'");
#if defined(EK_HAVE_AVX512_KERNEL)
  if ((name == "avx512" || name == "auto") && cpuHasAvx512()) return avx512::hashPositions;
#endif
#if defined(EK_HAVE_AVX2_KERNEL)
  if ((name == "avx2" || name == "auto") && cpuHasAvx2()) return avx2::hashPositions;
#endif
  EK_REQUIRE(name == "auto", RangeError, "cpu kernel '" + name + "' is not available on this CPU or build");
  return baseline::hashPositions;
}

const char* cpuHashKernelName() { return cpuHasAvx512() ? "avx512" : cpuHasAvx2() ? "avx2" : "baseline"; }

void ngramHashesCpu(const HashRequest& req, ThreadPool& pool, int threads, const std::string& kernelName) {
  validateHashRequest(req);
  const std::vector<FastMod> mods = fastMods(req);
  const HashTables tables{req.multipliers.data(), mods.data(),
                          req.offsets.empty() ? nullptr : req.offsets.data()};
  const int64_t positions = static_cast<int64_t>(req.geometry.batch) * req.geometry.seqLen;
  // Chunks of whole positions; each position's outputs are written by one thread only.
  const CpuHashKernel kernel = cpuHashKernel(kernelName);
  pool.parallelFor(positions, threads, [&](int64_t begin, int64_t end) { kernel(req, tables, begin, end); });
  nextHistory(req);
}

}  // namespace engram
