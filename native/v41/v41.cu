// CUDA backend of DeepSeek-V4.1's Engram layer: the table gather (fp8 rows with UE8M0
// scales decoded in the gather), the wkv projection (dequantised once at upload) and the
// masked gate with the residual. Weights stay on the device; per call the hidden streams
// and row ids go in and the output comes back.
#include <vector>

#include "common/block_reduce.cuh"
#include "common/cuda_check.cuh"
#include "common/device.hpp"
#include "engram/gating.cuh"
#include "gemm/linear_kernel.cuh"
#include "table/gather_kernels.cuh"
#include "v41/v41_ops.hpp"

namespace engram {

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
  w->k = static_cast<int64_t>(r.rowsPerToken) * r.table.cols;
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
  EK_REQUIRE(w.n == static_cast<int64_t>(r.hc + 1) * r.hidden && w.k == static_cast<int64_t>(r.rowsPerToken) * r.table.cols,
             RangeError, "device weights do not match the request's layer");
  DeviceGuard guard(w.device);
  const TableView table = deviceTableFor(r.table, r.tableOnDevice, r.tableDevice, w.table, w.device);
  ScopedStream stream;
  cudaStream_t s = stream.get();
  const int64_t stride = r.rowIdsStride == 0 ? r.rowsPerToken : r.rowIdsStride;
  const int64_t streams = tokens * r.hc * r.hidden;
  DeviceBuffer<float> hidden(streams, s), e(tokens * w.k, s), kv(tokens * w.n, s), out(streams, s), gates(tokens * r.hc, s);
  DeviceBuffer<uint8_t> ids(tokens * stride * (r.rowIds64 ? 8 : 4), s), mask(r.tokenMask ? tokens : 0, s);
  hidden.upload(r.hiddenStreams);
  ids.upload(static_cast<const uint8_t*>(r.rowIds));
  mask.upload(r.tokenMask);
  launchGather(table, ids.get(), r.rowIds64, stride, r.rowIdsOffset, r.rowsPerToken, tokens, e.get(), s);
  launchLinear(e.get(), tokens, w.k, w.wkv->as<float>(), w.zeroBias->as<float>(), w.n, kv.get(), s);
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
