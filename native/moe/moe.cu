// CUDA backend of the MoE block: weights resident on the device in their stored codes;
// per call the tokens go in, the output and the routing come back. Kernels run the CPU
// backend's element bodies (moe.cuh's routeToken and swigluActivation, quant.cuh's
// weightElement) and the layout is moeLayoutCpu itself, on the routed indices.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/cuda_check.cuh"
#include "gemm/tile_gemm.cuh"
#include "common/device.hpp"
#include "moe/moe_ops.hpp"

namespace engram {

namespace {

// `count` matrices as the kernels read them.
struct MatrixView {
  WeightFormat format;
  int64_t n, k;
  const uint8_t* codes;
  const uint8_t* scales;
  int64_t codeStride, scaleStride;  // bytes between consecutive matrices
};

int64_t scaleRowBytes(WeightFormat f, int64_t k) { return weightFormatScaled(f) ? (k + kScaleBlock - 1) / kScaleBlock : 0; }

}  // namespace

struct DeviceMatrices {
  WeightFormat format = WeightFormat::F32;
  int64_t n = 0, k = 0, count = 0;
  std::unique_ptr<DeviceArray> codes, scales;

  void upload(const ExpertMatrices& m) {
    format = m.format;
    n = m.n;
    k = m.k;
    count = m.count;
    if (count == 0) return;
    EK_REQUIRE(m.codes != nullptr && (!weightFormatScaled(m.format) || m.rowScales != nullptr), TypeError,
               "expert weights are missing their codes or scales");
    codes = std::make_unique<DeviceArray>(m.codes, static_cast<size_t>(count * n * weightRowBytes(format, k)));
    const int64_t scaleBytes = count * n * scaleRowBytes(format, k);
    if (scaleBytes > 0) scales = std::make_unique<DeviceArray>(m.rowScales, static_cast<size_t>(scaleBytes));
  }
  MatrixView view() const {
    return {format, n, k, codes ? codes->as<uint8_t>() : nullptr, scales ? scales->as<uint8_t>() : nullptr,
            n * weightRowBytes(format, k), n * scaleRowBytes(format, k)};
  }
};

struct DeviceMoeWeights {
  int device = 0;
  int experts = 0;
  int dim = 0;
  DeviceMatrices gate, gateUp, down, sharedGateUp, sharedDown;
};

namespace {

constexpr int kThreads = 256;

unsigned gridFor(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 1 << 20));
}

// Rows [begin, end) of the (expert-sorted) row buffer, multiplied by matrix `group`.
struct RowTile {
  int32_t group, begin, end;
};

// C[row, :] = A[rowIndex ? rowIndex[row] : row, :] . W_group^T for the rows of each tile:
// one launch for every group (grid.x: row tiles, grid.y: 64-column tiles), weights
// decoded from their codes while the tile is loaded into shared memory.
__global__ void groupedLinearKernel(const float* __restrict__ A, int64_t lda, const int32_t* __restrict__ rowIndex,
                                    const RowTile* __restrict__ tiles, MatrixView W, float* __restrict__ C, int64_t ldc) {
  __shared__ float As[kTileDepth][kTile + 1];
  __shared__ float Ws[kTileDepth][kTile + 1];
  const RowTile tile = tiles[blockIdx.x];
  const uint8_t* codes = W.codes + tile.group * W.codeStride;
  const uint8_t* scales = W.scales == nullptr ? nullptr : W.scales + tile.group * W.scaleStride;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t col0 = static_cast<int64_t>(blockIdx.y) * kTile;
  float acc[kPer][kPer] = {};
  for (int64_t k0 = 0; k0 < W.k; k0 += kTileDepth) {
    for (int i = threadIdx.x; i < kTile * kTileDepth; i += blockDim.x) {
      const int r = i / kTileDepth, kk = i % kTileDepth;
      const int64_t row = tile.begin + r;
      const bool inK = k0 + kk < W.k;
      As[kk][r] = (row < tile.end && inK) ? A[static_cast<int64_t>(rowIndex ? rowIndex[row] : row) * lda + k0 + kk] : 0.0f;
      Ws[kk][r] = (col0 + r < W.n && inK) ? weightElement(W.format, codes, scales, 1, W.k, col0 + r, k0 + kk) : 0.0f;
    }
    __syncthreads();
    accumulateTile(As, Ws, tx, ty, acc);
    __syncthreads();
  }
  for (int i = 0; i < kPer; ++i) {
    for (int j = 0; j < kPer; ++j) {
      const int64_t row = tile.begin + ty * kPer + i, col = col0 + tx * kPer + j;
      if (row < tile.end && col < W.n) C[row * ldc + col] = acc[i][j];
    }
  }
}

// One token per thread; scratch holds each token's scores and choice rows.
__global__ void routeKernel(const float* __restrict__ logits, int64_t tokens, const float* __restrict__ bias,
                            const float* __restrict__ biasVl, const uint8_t* __restrict__ imageMask, RouteParams p,
                            float* __restrict__ scratch, int32_t* __restrict__ indices, float* __restrict__ weights) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < tokens;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float* b = (imageMask != nullptr && imageMask[t] != 0 && biasVl != nullptr) ? biasVl : bias;
    float* scores = scratch + t * 2 * p.experts;
    routeToken(logits + t * p.experts, b, p, scores, scores + p.experts, indices + t * p.topk, weights + t * p.topk);
  }
}

// hidden[r, j] = swigluActivation(gateUp[r, j], gateUp[r, ffn + j], rowWeight[r], limit).
__global__ void swigluKernel(const float* __restrict__ gateUp, int64_t rows, int64_t ffn, const float* __restrict__ rowWeight,
                             float limit, float* __restrict__ hidden) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < rows * ffn;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / ffn, j = i % ffn;
    hidden[i] = swigluActivation(gateUp[r * 2 * ffn + j], gateUp[r * 2 * ffn + ffn + j], rowWeight ? rowWeight[r] : 1.0f, limit);
  }
}

// out[t, j] = sum over slots s (in order) of expertOut[rowOf[t, s], j], then + shared[t, j]:
// the CPU backend's order, so the sum is deterministic.
__global__ void combineKernel(const float* __restrict__ expertOut, const int32_t* __restrict__ rowOf, int64_t tokens, int topk,
                              int dim, const float* __restrict__ shared, float* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < tokens * dim;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / dim, j = i % dim;
    float sum = 0.0f;
    for (int s = 0; s < topk; ++s) sum += expertOut[static_cast<int64_t>(rowOf[t * topk + s]) * dim + j];
    if (shared != nullptr) sum += shared[i];
    out[i] = sum;
  }
}

// Tiles of at most kTile rows over each group's range of rows.
std::vector<RowTile> rowTiles(const std::vector<int32_t>& counts, const std::vector<int32_t>& offsets) {
  std::vector<RowTile> tiles;
  for (size_t g = 0; g < counts.size(); ++g) {
    for (int32_t b = offsets[g]; b < offsets[g] + counts[g]; b += kTile) {
      tiles.push_back({static_cast<int32_t>(g), b, std::min(b + kTile, offsets[g] + counts[g])});
    }
  }
  return tiles;
}

void launchLinear(const float* A, int64_t lda, const int32_t* rowIndex, const std::vector<RowTile>& tiles,
                  const MatrixView& W, float* C, int64_t ldc, cudaStream_t s) {
  if (tiles.empty()) return;
  DeviceBuffer<RowTile> tileDev(tiles.size(), s);
  tileDev.upload(tiles.data());
  const dim3 grid(static_cast<unsigned>(tiles.size()), static_cast<unsigned>((W.n + kTile - 1) / kTile));
  groupedLinearKernel<<<grid, kThreads, 0, s>>>(A, lda, rowIndex, tileDev.get(), W, C, ldc);
  EK_CUDA_CHECK(cudaGetLastError());
}

// logits = x . gate^T and the selection for N tokens whose rows are on the device; the
// indices and weights (and logits, when asked) come back to the host.
void routeOnDevice(const float* x, int64_t N, int64_t dim, const MatrixView& gate, const RouteParams& p,
                   const float* biasHost, const float* biasVlHost, const uint8_t* maskHost, int32_t* indicesHost,
                   float* weightsHost, float* logitsHost, cudaStream_t s) {
  const int64_t E = p.experts, pairs = N * p.topk;
  DeviceBuffer<float> logits(N * E, s), scratch(N * 2 * E, s), weights(pairs, s);
  DeviceBuffer<float> bias(biasHost ? E : 0, s), biasVl(biasVlHost ? E : 0, s);
  DeviceBuffer<uint8_t> mask(maskHost ? N : 0, s);
  DeviceBuffer<int32_t> indices(pairs, s);
  bias.upload(biasHost);
  biasVl.upload(biasVlHost);
  mask.upload(maskHost);
  launchLinear(x, dim, nullptr, rowTiles({static_cast<int32_t>(N)}, {0}), gate, logits.get(), E, s);
  routeKernel<<<gridFor(N), kThreads, 0, s>>>(logits.get(), N, biasHost ? bias.get() : nullptr, biasVlHost ? biasVl.get() : nullptr,
                                              maskHost ? mask.get() : nullptr, p, scratch.get(), indices.get(), weights.get());
  EK_CUDA_CHECK(cudaGetLastError());
  indices.download(indicesHost);
  weights.download(weightsHost);
  if (logitsHost != nullptr) logits.download(logitsHost);
  EK_CUDA_CHECK(cudaStreamSynchronize(s));
}

void checkRouteParams(const RouteParams& p) {
  EK_REQUIRE(p.topk >= 1 && p.topk <= p.experts, RangeError, "topk must be in [1, experts], got " + std::to_string(p.topk));
  EK_REQUIRE(p.groups >= 1 && p.groups <= 64 && p.experts % p.groups == 0 && p.topkGroups >= 1 && p.topkGroups <= p.groups &&
                 p.topk <= p.topkGroups * (p.experts / p.groups),
             RangeError, "invalid expert groups for top-k routing");
}

}  // namespace

std::shared_ptr<DeviceMoeWeights> uploadMoeWeightsCuda(const MoeDeviceUpload& u, int device) {
  requireDevice(device);
  EK_REQUIRE(u.gateWeight != nullptr && u.experts >= 1 && u.dim >= 1, TypeError, "the MoE gate weight is missing");
  EK_REQUIRE(u.gateUp.count == u.experts && u.down.count == u.experts && u.gateUp.k == u.dim && u.down.n == u.dim &&
                 u.gateUp.n == 2 * u.down.k,
             RangeError, "expert weights do not match the block's experts and dim");
  EK_REQUIRE(u.sharedGateUp.count == u.sharedDown.count && u.sharedGateUp.count <= 1, RangeError,
             "shared experts are uploaded stacked as one");
  EK_REQUIRE(u.sharedGateUp.count == 0 || (u.sharedGateUp.k == u.dim && u.sharedDown.n == u.dim && u.sharedGateUp.n == 2 * u.sharedDown.k),
             RangeError, "shared expert weights do not match the block's dim (" + std::to_string(u.dim) + ")");
  DeviceGuard guard(device);
  auto w = std::make_shared<DeviceMoeWeights>();
  w->device = device;
  w->experts = u.experts;
  w->dim = u.dim;
  w->gate.upload({WeightFormat::F32, u.experts, u.dim, 1, reinterpret_cast<const uint8_t*>(u.gateWeight), nullptr});
  w->gateUp.upload(u.gateUp);
  w->down.upload(u.down);
  w->sharedGateUp.upload(u.sharedGateUp);
  w->sharedDown.upload(u.sharedDown);
  return w;
}

void moeForwardCuda(const MoeCudaRequest& r, const DeviceMoeWeights& w) {
  const RouteParams& p = r.route;
  EK_REQUIRE(p.experts == w.experts, RangeError, "routing parameters do not match the uploaded experts");
  // x and out were sized by the caller's dim: the copies below are sized by the weights'.
  EK_REQUIRE(r.dim == w.dim, RangeError,
             "the call's dim " + std::to_string(r.dim) + " is not the uploaded block's dim " + std::to_string(w.dim));
  checkRouteParams(p);
  if (r.tokens == 0) return;
  EK_REQUIRE(r.x && r.out && r.indices && r.weights, TypeError, "an MoE buffer is missing");
  DeviceGuard guard(w.device);
  ScopedStream stream;
  cudaStream_t s = stream.get();
  const int64_t N = r.tokens, dim = w.dim, E = p.experts, K = p.topk, pairs = N * K;
  const int64_t ffn = w.down.k;

  // Routing: logits = x . gate^T, then the selection per token.
  DeviceBuffer<float> x(N * dim, s);
  x.upload(r.x);
  routeOnDevice(x.get(), N, dim, w.gate.view(), r.route, r.bias, r.biasVl, r.imageMask, r.indices, r.weights, r.logits, s);

  // Layout on the host (the CPU backend's own function): expert-sorted rows.
  std::vector<int32_t> counts(E), offsets(E), permutation(pairs), tokenOf(pairs), rowOf(pairs);
  std::vector<float> rowWeight(pairs);
  moeLayoutCpu(r.indices, N, static_cast<int>(K), static_cast<int>(E), nullptr, 1, counts.data(), offsets.data(),
               permutation.data(), nullptr, nullptr);
  for (int64_t i = 0; i < pairs; ++i) {
    tokenOf[i] = static_cast<int32_t>(permutation[i] / K);
    rowWeight[i] = r.weights[permutation[i]];
    rowOf[permutation[i]] = static_cast<int32_t>(i);
  }
  DeviceBuffer<int32_t> tokenOfDev(pairs, s), rowOfDev(pairs, s);
  DeviceBuffer<float> rowWeightDev(pairs, s), gateUp(pairs * 2 * ffn, s), hidden(pairs * ffn, s), expertOut(pairs * dim, s);
  tokenOfDev.upload(tokenOf.data());
  rowOfDev.upload(rowOf.data());
  rowWeightDev.upload(rowWeight.data());
  const float limit = r.swigluLimit > 0.0f ? r.swigluLimit : INFINITY;

  // Routed experts: two grouped GEMMs (one launch each for every expert) around SwiGLU;
  // the first reads its token rows straight from x.
  const std::vector<RowTile> tiles = rowTiles(counts, offsets);
  launchLinear(x.get(), dim, tokenOfDev.get(), tiles, w.gateUp.view(), gateUp.get(), 2 * ffn, s);
  swigluKernel<<<gridFor(pairs * ffn), kThreads, 0, s>>>(gateUp.get(), pairs, ffn, rowWeightDev.get(), limit, hidden.get());
  launchLinear(hidden.get(), ffn, nullptr, tiles, w.down.view(), expertOut.get(), dim, s);

  // Shared expert (stacked as one) on every token.
  const bool hasShared = w.sharedGateUp.count > 0;
  const int64_t sharedFfn = hasShared ? w.sharedDown.k : 0;
  DeviceBuffer<float> sharedGateUp(N * 2 * sharedFfn, s), sharedHidden(N * sharedFfn, s), sharedOut(hasShared ? N * dim : 0, s);
  if (hasShared) {
    const std::vector<RowTile> all = rowTiles({static_cast<int32_t>(N)}, {0});
    launchLinear(x.get(), dim, nullptr, all, w.sharedGateUp.view(), sharedGateUp.get(), 2 * sharedFfn, s);
    swigluKernel<<<gridFor(N * sharedFfn), kThreads, 0, s>>>(sharedGateUp.get(), N, sharedFfn, nullptr, limit, sharedHidden.get());
    launchLinear(sharedHidden.get(), sharedFfn, nullptr, all, w.sharedDown.view(), sharedOut.get(), dim, s);
  }
  DeviceBuffer<float> out(N * dim, s);
  combineKernel<<<gridFor(N * dim), kThreads, 0, s>>>(expertOut.get(), rowOfDev.get(), N, static_cast<int>(K), static_cast<int>(dim),
                                                     hasShared ? sharedOut.get() : nullptr, out.get());
  EK_CUDA_CHECK(cudaGetLastError());
  out.download(r.out);
  EK_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace engram

namespace engram {

void moeRouteCuda(const MoeRouteCudaRequest& r) {
  checkRouteParams(r.route);
  requireDevice(r.device);
  if (r.tokens == 0) return;
  EK_REQUIRE(r.x && r.gateWeight && r.indices && r.weights, TypeError, "a routing buffer is missing");
  DeviceGuard guard(r.device);
  ScopedStream stream;
  // The gate in stream-ordered memory from the device's pool: cudaMalloc/cudaFree here
  // would synchronise the whole device on every call.
  const int64_t gateElements = static_cast<int64_t>(r.route.experts) * r.dim;
  DeviceBuffer<float> gate(gateElements, stream.get());
  gate.upload(r.gateWeight);
  const MatrixView gateView{WeightFormat::F32, r.route.experts, r.dim, reinterpret_cast<const uint8_t*>(gate.get()), nullptr,
                            gateElements * static_cast<int64_t>(sizeof(float)), 0};
  DeviceBuffer<float> x(r.tokens * r.dim, stream.get());
  x.upload(r.x);
  routeOnDevice(x.get(), r.tokens, r.dim, gateView, r.route, r.bias, r.biasVl, r.imageMask, r.indices, r.weights, r.logits,
                stream.get());
}

}  // namespace engram
