// Row loops of the Engram layer on the CPU, compiled once per instruction set like the
// hashing loop (hash_cpu_kernel.hpp); engram_cpu.cpp picks one at run time. Each loop
// covers tokens [begin, end) and calls the element bodies of gather.cuh / gating.cuh.
#pragma once
#include <cstdint>

#include "table/gather.cuh"

namespace engram {

struct EngramRowArgs {
  int seqLen;
  int hc;
  int hidden;
  int rowsPerToken;
  int kernelSize;
  int dilation;
  int historyLen;
  float gateEps;
  float convEps;
  // gather
  TableView table;
  const void* rowIds;
  bool rowIds64;
  int64_t rowIdsStride;
  int64_t rowIdsOffset;
  float* embeddings;  // [tokens, rowsPerToken * table.cols]
  // gate: kv [tokens, kvWidth] holds keys then the value; keys become gated values
  float* kv;
  int64_t kvWidth;
  const float* hiddenStates;
  const float* norm1;
  const float* norm2;
  float* gates;       // nullable
  float* inverseRms;  // [tokens, hc]
  // conv
  const float* convNorm;
  const float* convWeightT;  // [kernelSize][hc * hidden]
  const float* convHistory;  // [B, historyLen, hc, hidden] normalised; nullable
  float* out;
};

using EngramRowFn = void (*)(const EngramRowArgs& a, int64_t begin, int64_t end);

// DeepSeek-V4.1's gate and residual, per (token, stream): kv [tokens, kvWidth] holds the
// hc keys then the value; out = h + gate * value with gate 0 where the mask is 0.
struct V41GateArgs {
  const float* kv;
  int64_t kvWidth;
  const float* hiddenStreams;  // [tokens, hc, hidden]
  const float* qWeight;        // [hc, hidden]
  const float* kWeight;        // [hc, hidden]
  const uint8_t* tokenMask;    // [tokens]; nullable
  int hc;
  int hidden;
  float eps;
  float* gates;  // [tokens, hc]; nullable
  float* out;    // [tokens, hc, hidden]
};
using V41GateFn = void (*)(const V41GateArgs& a, int64_t begin, int64_t end);

struct EngramRowKernels {
  const char* name;
  EngramRowFn gather;
  EngramRowFn gate;
  EngramRowFn conv;
  V41GateFn v41Gate;
};

// The widest build this CPU runs.
EngramRowKernels engramRowKernels();

namespace baseline {
void v41GateTokens(const V41GateArgs& a, int64_t begin, int64_t end);
void gatherTokens(const EngramRowArgs& a, int64_t begin, int64_t end);
void gateTokens(const EngramRowArgs& a, int64_t begin, int64_t end);
void convTokens(const EngramRowArgs& a, int64_t begin, int64_t end);
}  // namespace baseline
namespace avx2 {
void v41GateTokens(const V41GateArgs& a, int64_t begin, int64_t end);
void gatherTokens(const EngramRowArgs& a, int64_t begin, int64_t end);
void gateTokens(const EngramRowArgs& a, int64_t begin, int64_t end);
void convTokens(const EngramRowArgs& a, int64_t begin, int64_t end);
}  // namespace avx2
namespace avx512 {
void v41GateTokens(const V41GateArgs& a, int64_t begin, int64_t end);
void gatherTokens(const EngramRowArgs& a, int64_t begin, int64_t end);
void gateTokens(const EngramRowArgs& a, int64_t begin, int64_t end);
void convTokens(const EngramRowArgs& a, int64_t begin, int64_t end);
}  // namespace avx512

}  // namespace engram
