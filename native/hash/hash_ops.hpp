// Host entry points of the hashing family. Plain pointers and sizes only: no N-API here.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hash/hash.cuh"
#include "common/thread_pool.hpp"

namespace engram {

// One hashing call: `layers` layers of one mapping over a [batch, seqLen] block of raw
// token ids. Output [batch, seqLen, layers, cols] as int32 or int64.
struct HashRequest {
  HashGeometry geometry;
  const int32_t* ids = nullptr;      // [batch, seqLen] raw token ids
  const uint8_t* mask = nullptr;     // [batch, seqLen], 0 = DEAD; null: all live
  const int32_t* history = nullptr;  // [batch, maxNgram-1] compressed, -1 = none; null: none
  const int32_t* lookup = nullptr;   // raw id -> compressed id
  int32_t vocabSize = 0;             // entries of lookup
  int32_t compressedVocabSize = 0;
  std::vector<int64_t> multipliers;  // [layers][maxNgram]
  std::vector<uint64_t> primes;      // [layers][cols]
  std::vector<int64_t> offsets;      // [layers][cols]; empty: per-head ids
  bool int64Output = false;
  void* out = nullptr;               // [batch, seqLen, layers, cols]
  int32_t* historyOut = nullptr;     // [batch, maxNgram-1]; null: not wanted
};

// Checks everything the kernels will touch (sizes, id ranges, history values) and throws
// a RangeError/TypeError before anything is written.
void validateHashRequest(const HashRequest& req);

// The history to carry into the next chunk: the compressed ids of the last maxNgram-1
// positions of history ++ chunk, -1 where DEAD. Host-side for both backends.
void nextHistory(const HashRequest& req);

// Reduction constants per prime, in the request's [layers][cols] order.
std::vector<FastMod> fastMods(const HashRequest& req);

// kernel: "auto" (the widest build this CPU runs), "baseline" or "avx512".
void ngramHashesCpu(const HashRequest& req, ThreadPool& pool, int threads, const std::string& kernel = "auto");

// CUDA backend (throws when the addon was built without CUDA or no device exists).
void ngramHashesCuda(const HashRequest& req, int device);

}  // namespace engram
