// CUDA backend of the paper's Engram layer: weights resident on the device, per call
// the hidden states and row ids go in and the output comes back. Kernels run the same
// element bodies as the CPU loops (gather.cuh, gating.cuh, conv.cuh).
#include <vector>

#include "common/block_reduce.cuh"
#include "common/cuda_check.cuh"
#include "common/device.hpp"
#include "engram/conv.cuh"
#include "engram/engram_ops.hpp"
#include "engram/gating.cuh"
#include "gemm/linear_kernel.cuh"
#include "table/gather_kernels.cuh"

namespace engram {

struct DeviceEngramWeights {
  int device = 0;
  TableView table{};  // data/scales point into the arrays below
  int64_t n = 0;      // (hc + 1) * hidden
  int64_t k = 0;      // features
  std::unique_ptr<DeviceArray> tableData, tableScales, kvWeight, kvBias, norm1, norm2, convNorm, convWeight;
};

namespace {

// One block per (token, branch): the gate, the gated value over the key slot, and the
// gated value's inverse RMS for the conv norm.
__global__ void gateKernel(float* __restrict__ kv, int64_t kvWidth, const float* __restrict__ hiddenStates,
                           const float* __restrict__ norm1, const float* __restrict__ norm2, int hc, int hidden,
                           float gateEps, float convEps, float* __restrict__ gates, float* __restrict__ inverseRms) {
  __shared__ float shared[kThreads];
  const int64_t m = blockIdx.x / hc;
  const int g = blockIdx.x % hc;
  float* key = kv + m * kvWidth + static_cast<int64_t>(g) * hidden;
  const float* value = kv + m * kvWidth + static_cast<int64_t>(hc) * hidden;
  const float* query = hiddenStates + (m * hc + g) * hidden;
  const GateSums s = gateSums(key, query, norm1 + g * hidden, norm2 + g * hidden, threadIdx.x, hidden, blockDim.x);
  const float kk = blockSum(s.keySquares, shared);
  const float qq = blockSum(s.querySquares, shared);
  const float kq = blockSum(s.weightedDot, shared);
  const float gate = gateFromSums(kk, qq, kq, hidden, gateEps);
  float squares = 0.0f;
  for (int j = threadIdx.x; j < hidden; j += blockDim.x) {
    const float v = gate * value[j];
    key[j] = v;
    squares += v * v;
  }
  const float vv = blockSum(squares, shared);
  if (threadIdx.x == 0) {
    if (gates != nullptr) gates[m * hc + g] = gate;
    inverseRms[m * hc + g] = 1.0f / sqrtf(vv / static_cast<float>(hidden) + convEps);
  }
}

struct ConvArgs {
  const float* kv;
  int64_t kvWidth;
  const float* inverseRms;
  const float* history;
  const float* convNorm;
  const float* convWeight;
  int seqLen, historyLen, hc, hidden, kernelSize, dilation;
  __device__ ConvSequence sequence(int64_t b) const {
    return ConvSequence{kv + b * seqLen * kvWidth, inverseRms + b * seqLen * hc,
                        history ? history + b * historyLen * hc * static_cast<int64_t>(hidden) : nullptr, kvWidth,
                        seqLen, historyLen, hc, hidden};
  }
};

__global__ void convKernel(ConvArgs a, int64_t tokens, float* __restrict__ out) {
  const int64_t per = static_cast<int64_t>(a.hc) * a.hidden;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < tokens * per;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = i / per;
    const int g = static_cast<int>((i % per) / a.hidden), j = static_cast<int>(i % a.hidden);
    const int64_t b = m / a.seqLen;
    const int t = static_cast<int>(m - b * a.seqLen);
    out[i] = shortConvOutput(a.sequence(b), a.convNorm, a.convWeight, a.kernelSize, a.dilation, t, g, j);
  }
}

__global__ void convHistoryKernel(ConvArgs a, int batch, float* __restrict__ historyOut) {
  const int64_t per = static_cast<int64_t>(a.historyLen) * a.hc * a.hidden;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < batch * per;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / per;
    const int64_t within = i % per;
    const int row = static_cast<int>(within / (static_cast<int64_t>(a.hc) * a.hidden));
    const int g = static_cast<int>((within / a.hidden) % a.hc), j = static_cast<int>(within % a.hidden);
    historyOut[i] = convInput(a.sequence(b), a.convNorm, a.seqLen - a.historyLen + row, g, j);
  }
}

}  // namespace

std::shared_ptr<DeviceEngramWeights> uploadEngramWeightsCuda(const EngramForwardRequest& r, const float* keyValueWeight,
                                                             const float* keyValueBias, int device) {
  requireDevice(device);
  DeviceGuard guard(device);
  auto w = std::make_shared<DeviceEngramWeights>();
  w->device = device;
  // A paged table's rows come from the pager's device cache at every call instead.
  w->table = r.tableOnDevice ? r.table : uploadTable(r.table, &w->tableData, &w->tableScales);
  w->n = static_cast<int64_t>(r.hc + 1) * r.hidden;
  w->k = static_cast<int64_t>(r.rowsPerToken) * r.table.cols;
  const size_t branch = static_cast<size_t>(r.hc) * r.hidden * sizeof(float);
  w->kvWeight = std::make_unique<DeviceArray>(keyValueWeight, static_cast<size_t>(w->n * w->k) * sizeof(float));
  w->kvBias = std::make_unique<DeviceArray>(keyValueBias, static_cast<size_t>(w->n) * sizeof(float));
  w->norm1 = std::make_unique<DeviceArray>(r.norm1, branch);
  w->norm2 = std::make_unique<DeviceArray>(r.norm2, branch);
  w->convNorm = std::make_unique<DeviceArray>(r.convNorm, branch);
  w->convWeight = std::make_unique<DeviceArray>(r.convWeight, branch * r.kernelSize);
  return w;
}

void engramForwardCuda(const EngramForwardRequest& r, const DeviceEngramWeights& w) {
  validateEngramRequest(r);
  const int64_t tokens = static_cast<int64_t>(r.batch) * r.seqLen;
  if (tokens == 0) {
    copyHistoryUnchanged(r);
    return;
  }
  EK_REQUIRE(w.n == static_cast<int64_t>(r.hc + 1) * r.hidden && w.k == static_cast<int64_t>(r.rowsPerToken) * r.table.cols,
             RangeError, "device weights do not match the request's layer");
  DeviceGuard guard(w.device);
  // The pager's device cache when paged, else the table uploaded with the weights.
  const TableView table = deviceTableFor(r.table, r.tableOnDevice, r.tableDevice, w.table, w.device);
  ScopedStream stream;
  cudaStream_t s = stream.get();
  const int hc = r.hc, hidden = r.hidden;
  const int64_t idStride = r.rowIdsStride == 0 ? r.rowsPerToken : r.rowIdsStride;
  const int64_t streams = tokens * hc * hidden;
  const int historyLen = (r.kernelSize - 1) * r.dilation;
  const int64_t historyElems = static_cast<int64_t>(r.batch) * historyLen * hc * hidden;

  DeviceBuffer<float> hiddenDev(streams, s), e(tokens * w.k, s), kv(tokens * w.n, s), rms(tokens * hc, s),
      out(streams, s), gates(tokens * hc, s), history(r.convHistory ? historyElems : 0, s),
      historyOut(r.convHistoryOut ? historyElems : 0, s);
  DeviceBuffer<uint8_t> ids(tokens * idStride * (r.rowIds64 ? 8 : 4), s);
  ids.upload(static_cast<const uint8_t*>(r.rowIds));
  history.upload(r.convHistory);

  launchGather(table, ids.get(), r.rowIds64, idStride, r.rowIdsOffset, r.rowsPerToken, tokens, e.get(), s);
  launchLinear(e.get(), tokens, w.k, w.kvWeight->as<float>(), w.kvBias->as<float>(), w.n, kv.get(), s);
  // Queued behind the gather and the projection: an async call's hidden states may still
  // be on their way into native memory (see InputLatch).
  waitForInput(r.hiddenReady);
  hiddenDev.upload(r.hiddenStates);
  gateKernel<<<static_cast<unsigned>(tokens * hc), kThreads, 0, s>>>(kv.get(), w.n, hiddenDev.get(), w.norm1->as<float>(),
                                                                    w.norm2->as<float>(), hc, hidden, r.gateEps, r.convEps,
                                                                    gates.get(), rms.get());
  const ConvArgs conv{kv.get(), w.n, rms.get(), r.convHistory ? history.get() : nullptr, w.convNorm->as<float>(),
                      w.convWeight->as<float>(), r.seqLen, historyLen, hc, hidden, r.kernelSize, r.dilation};
  convKernel<<<gridFor(streams), kThreads, 0, s>>>(conv, tokens, out.get());
  if (r.convHistoryOut != nullptr && historyElems > 0) {
    convHistoryKernel<<<gridFor(historyElems), kThreads, 0, s>>>(conv, r.batch, historyOut.get());
  }
  EK_CUDA_CHECK(cudaGetLastError());
  out.download(r.out);
  if (r.gates != nullptr) gates.download(r.gates);
  if (r.embeddings != nullptr) e.download(r.embeddings);
  if (r.convHistoryOut != nullptr && historyElems > 0) historyOut.download(r.convHistoryOut);
  EK_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace engram
