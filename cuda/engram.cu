// CUDA backend of the paper's Engram layer: weights resident on the device, per call
// the hidden states and row ids go in and the output comes back. Kernels run the same
// element bodies as the CPU loops (gather.cuh, gating.cuh, conv.cuh).
#include <vector>

#include "conv.cuh"
#include "cuda_check.cuh"
#include "tile_gemm.cuh"
#include "device.hpp"
#include "engram_ops.hpp"
#include "gating.cuh"
#include "v41_ops.hpp"

namespace engram {

struct DeviceEngramWeights {
  int device = 0;
  TableView table{};  // data/scales point into the arrays below
  int64_t n = 0;      // (hc + 1) * hidden
  int64_t k = 0;      // features
  std::unique_ptr<DeviceArray> tableData, tableScales, kvWeight, kvBias, norm1, norm2, convNorm, convWeight;
};

namespace {

constexpr int kThreads = 256;

unsigned gridFor(int64_t work, int threads = kThreads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned>(blocks < (1 << 20) ? (blocks > 0 ? blocks : 1) : (1 << 20));
}

template <typename IdT>
__global__ void gatherKernel(TableView table, const IdT* __restrict__ ids, int64_t stride, int64_t offset, int heads,
                             int64_t tokens, float* __restrict__ e) {
  const int64_t total = tokens * heads * table.cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int c = static_cast<int>(i % table.cols);
    const int64_t mh = i / table.cols;
    const int h = static_cast<int>(mh % heads);
    const int64_t m = mh / heads;
    const int64_t r = static_cast<int64_t>(ids[m * stride + offset + h]);
    e[i] = decodeTableElement(table.dtype, table.rowBytes(r), table.rowScales(r), c);
  }
}

// C[m, n] = bias[n] + sum_k A[m, k] W[n, k]: 64 x 64 tiles, 16 x 16 threads of 4 x 4.
__global__ void linearKernel(const float* __restrict__ A, int64_t M, int64_t K, const float* __restrict__ W,
                             const float* __restrict__ bias, int64_t N, float* __restrict__ C) {
  __shared__ float As[kTileDepth][kTile + 1];
  __shared__ float Ws[kTileDepth][kTile + 1];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTile, col0 = static_cast<int64_t>(blockIdx.x) * kTile;
  float acc[kPer][kPer] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kTileDepth) {
    for (int i = threadIdx.x; i < kTile * kTileDepth; i += blockDim.x) {
      const int r = i / kTileDepth, kk = i % kTileDepth;
      As[kk][r] = (row0 + r < M && k0 + kk < K) ? A[(row0 + r) * K + k0 + kk] : 0.0f;
      Ws[kk][r] = (col0 + r < N && k0 + kk < K) ? W[(col0 + r) * K + k0 + kk] : 0.0f;
    }
    __syncthreads();
    accumulateTile(As, Ws, tx, ty, acc);
    __syncthreads();
  }
  for (int i = 0; i < kPer; ++i) {
    for (int j = 0; j < kPer; ++j) {
      const int64_t r = row0 + ty * kPer + i, c = col0 + tx * kPer + j;
      if (r < M && c < N) C[r * N + c] = bias[c] + acc[i][j];
    }
  }
}

__device__ float blockSum(float v, float* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  const float total = shared[0];
  __syncthreads();
  return total;
}

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

// A table's rows (and fp8 scales) copied to the current device, one region even when the
// host's rows lie in several (a split checkpoint); the view points at them.
TableView uploadTable(const TableView& host, std::unique_ptr<DeviceArray>* data, std::unique_ptr<DeviceArray>* scales) {
  TableView t{};
  t.dtype = host.dtype;
  t.rows = host.rows;
  t.cols = host.cols;
  if (host.data == nullptr) return t;  // tableless: a pager's device cache serves the rows
  const int64_t scaleRowBytes = host.cols / kScaleBlock;
  *data = std::make_unique<DeviceArray>(nullptr, static_cast<size_t>(host.rows * host.rowStride()));
  if (host.scales != nullptr) *scales = std::make_unique<DeviceArray>(nullptr, static_cast<size_t>(host.rows * scaleRowBytes));
  const int parts = host.segmentCount == 0 ? 1 : host.segmentCount;
  for (int i = 0; i < parts; ++i) {
    const int64_t first = host.segmentCount == 0 ? 0 : host.segments[i].firstRow;
    const int64_t rows = host.segmentRows(i);
    EK_CUDA_CHECK(cudaMemcpy((*data)->as<uint8_t>() + first * host.rowStride(), host.rowBytes(first), static_cast<size_t>(rows * host.rowStride()),
                             cudaMemcpyHostToDevice));
    if (host.scales != nullptr) {
      EK_CUDA_CHECK(cudaMemcpy((*scales)->as<uint8_t>() + first * scaleRowBytes, host.rowScales(first), static_cast<size_t>(rows * scaleRowBytes),
                               cudaMemcpyHostToDevice));
    }
  }
  t.data = (*data)->as<uint8_t>();
  t.scales = host.scales != nullptr ? (*scales)->as<uint8_t>() : nullptr;
  return t;
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
  w->k = static_cast<int64_t>(r.heads) * r.table.cols;
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
  EK_REQUIRE(w.n == static_cast<int64_t>(r.hc + 1) * r.hidden && w.k == static_cast<int64_t>(r.heads) * r.table.cols,
             RangeError, "device weights do not match the request's layer");
  DeviceGuard guard(w.device);
  // The pager's device cache when paged, else the table uploaded with the weights.
  const TableView table = r.tableOnDevice ? r.table : w.table;
  EK_REQUIRE(table.data != nullptr, Error, "these device weights hold no table (uploaded for a pager): pass the pager's device cache");
  ScopedStream stream;
  cudaStream_t s = stream.get();
  const int hc = r.hc, hidden = r.hidden;
  const int64_t idStride = r.rowIdsStride == 0 ? r.heads : r.rowIdsStride;
  const int64_t streams = tokens * hc * hidden;
  const int historyLen = (r.kernelSize - 1) * r.dilation;
  const int64_t historyElems = static_cast<int64_t>(r.batch) * historyLen * hc * hidden;

  DeviceBuffer<float> hiddenDev(streams, s), e(tokens * w.k, s), kv(tokens * w.n, s), rms(tokens * hc, s),
      out(streams, s), gates(tokens * hc, s), history(r.convHistory ? historyElems : 0, s),
      historyOut(r.convHistoryOut ? historyElems : 0, s);
  DeviceBuffer<uint8_t> ids(tokens * idStride * (r.rowIds64 ? 8 : 4), s);
  hiddenDev.upload(r.hiddenStates);
  ids.upload(static_cast<const uint8_t*>(r.rowIds));
  history.upload(r.convHistory);

  if (r.rowIds64) {
    gatherKernel<int64_t><<<gridFor(tokens * w.k), kThreads, 0, s>>>(table, reinterpret_cast<const int64_t*>(ids.get()), idStride,
                                                                     r.rowIdsOffset, r.heads, tokens, e.get());
  } else {
    gatherKernel<int32_t><<<gridFor(tokens * w.k), kThreads, 0, s>>>(table, reinterpret_cast<const int32_t*>(ids.get()), idStride,
                                                                     r.rowIdsOffset, r.heads, tokens, e.get());
  }
  const dim3 tiles(static_cast<unsigned>((w.n + kTile - 1) / kTile), static_cast<unsigned>((tokens + kTile - 1) / kTile));
  linearKernel<<<tiles, kThreads, 0, s>>>(e.get(), tokens, w.k, w.kvWeight->as<float>(), w.kvBias->as<float>(), w.n, kv.get());
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

struct DeviceV41Weights {
  int device = 0;
  TableView table{};
  int64_t n = 0;
  int64_t k = 0;
  std::unique_ptr<DeviceArray> tableData, tableScales, wkv, zeroBias, qWeight, kWeight;
};

namespace {

// One block per (token, stream): V4.1's gate (0 where the mask is off) and the residual.
__global__ void v41GateKernel(const float* __restrict__ kv, int64_t kvWidth, const float* __restrict__ streams,
                              const float* __restrict__ qWeight, const float* __restrict__ kWeight,
                              const uint8_t* __restrict__ mask, int hc, int hidden, float eps,
                              float* __restrict__ gates, float* __restrict__ out) {
  __shared__ float shared[kThreads];
  const int64_t m = blockIdx.x / hc;
  const int g = blockIdx.x % hc;
  const float* key = kv + m * kvWidth + static_cast<int64_t>(g) * hidden;
  const float* value = kv + m * kvWidth + static_cast<int64_t>(hc) * hidden;
  const float* h = streams + (m * hc + g) * hidden;
  const GateSums s = gateSums(key, h, kWeight + g * hidden, qWeight + g * hidden, threadIdx.x, hidden, blockDim.x);
  const float kk = blockSum(s.keySquares, shared);
  const float hh = blockSum(s.querySquares, shared);
  const float kh = blockSum(s.weightedDot, shared);
  const bool live = mask == nullptr || mask[m] != 0;
  const float gate = live ? gateFromSums(kk, hh, kh, hidden, eps) : 0.0f;
  for (int j = threadIdx.x; j < hidden; j += blockDim.x) out[(m * hc + g) * hidden + j] = h[j] + gate * value[j];
  if (threadIdx.x == 0 && gates != nullptr) gates[m * hc + g] = gate;
}

}  // namespace

std::shared_ptr<DeviceV41Weights> uploadV41WeightsCuda(const V41ForwardRequest& r, const float* wkv, int device) {
  requireDevice(device);
  DeviceGuard guard(device);
  auto w = std::make_shared<DeviceV41Weights>();
  w->device = device;
  w->table = r.tableOnDevice ? r.table : uploadTable(r.table, &w->tableData, &w->tableScales);
  w->n = static_cast<int64_t>(r.hc + 1) * r.hidden;
  w->k = static_cast<int64_t>(r.cols) * r.table.cols;
  w->wkv = std::make_unique<DeviceArray>(wkv, static_cast<size_t>(w->n * w->k) * sizeof(float));
  std::vector<float> zeros(static_cast<size_t>(w->n), 0.0f);
  w->zeroBias = std::make_unique<DeviceArray>(zeros.data(), zeros.size() * sizeof(float));
  const size_t branch = static_cast<size_t>(r.hc) * r.hidden * sizeof(float);
  w->qWeight = std::make_unique<DeviceArray>(r.qWeight, branch);
  w->kWeight = std::make_unique<DeviceArray>(r.kWeight, branch);
  return w;
}

void v41ForwardCuda(const V41ForwardRequest& r, const DeviceV41Weights& w) {
  validateV41Request(r);
  const int64_t tokens = static_cast<int64_t>(r.batch) * r.seqLen;
  if (tokens == 0) return;
  EK_REQUIRE(w.n == static_cast<int64_t>(r.hc + 1) * r.hidden && w.k == static_cast<int64_t>(r.cols) * r.table.cols,
             RangeError, "device weights do not match the request's layer");
  DeviceGuard guard(w.device);
  const TableView table = r.tableOnDevice ? r.table : w.table;
  EK_REQUIRE(table.data != nullptr, Error, "these device weights hold no table (uploaded for a pager): pass the pager's device cache");
  ScopedStream stream;
  cudaStream_t s = stream.get();
  const int64_t stride = r.rowIdsStride == 0 ? r.cols : r.rowIdsStride;
  const int64_t streams = tokens * r.hc * r.hidden;
  DeviceBuffer<float> hidden(streams, s), e(tokens * w.k, s), kv(tokens * w.n, s), out(streams, s), gates(tokens * r.hc, s);
  DeviceBuffer<uint8_t> ids(tokens * stride * (r.rowIds64 ? 8 : 4), s), mask(r.tokenMask ? tokens : 0, s);
  hidden.upload(r.hiddenStreams);
  ids.upload(static_cast<const uint8_t*>(r.rowIds));
  mask.upload(r.tokenMask);
  if (r.rowIds64) {
    gatherKernel<int64_t><<<gridFor(tokens * w.k), kThreads, 0, s>>>(table, reinterpret_cast<const int64_t*>(ids.get()), stride,
                                                                     r.rowIdsOffset, r.cols, tokens, e.get());
  } else {
    gatherKernel<int32_t><<<gridFor(tokens * w.k), kThreads, 0, s>>>(table, reinterpret_cast<const int32_t*>(ids.get()), stride,
                                                                     r.rowIdsOffset, r.cols, tokens, e.get());
  }
  const dim3 tiles(static_cast<unsigned>((w.n + kTile - 1) / kTile), static_cast<unsigned>((tokens + kTile - 1) / kTile));
  linearKernel<<<tiles, kThreads, 0, s>>>(e.get(), tokens, w.k, w.wkv->as<float>(), w.zeroBias->as<float>(), w.n, kv.get());
  v41GateKernel<<<static_cast<unsigned>(tokens * r.hc), kThreads, 0, s>>>(kv.get(), w.n, hidden.get(), w.qWeight->as<float>(),
                                                                         w.kWeight->as<float>(), r.tokenMask ? mask.get() : nullptr,
                                                                         r.hc, r.hidden, r.eps, gates.get(), out.get());
  EK_CUDA_CHECK(cudaGetLastError());
  out.download(r.out);
  if (r.gates != nullptr) gates.download(r.gates);
  if (r.rows != nullptr) e.download(r.rows);
  EK_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace engram
