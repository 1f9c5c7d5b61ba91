// CUDA backend of the hashing family: one thread per output element, so consecutive
// threads write consecutive ids (coalesced), each recomputing its position's shifts and
// mix from the shared bodies in hash.cuh.
#include "common/cuda_check.cuh"
#include "common/device.hpp"
#include "hash/hash_ops.hpp"

namespace engram {

namespace {

constexpr int kHashBlockThreads = 256;

template <typename OutT>
__global__ void ngramHashesKernel(const int32_t* __restrict__ ids, const uint8_t* __restrict__ mask,
                                  const int32_t* __restrict__ history, const int32_t* __restrict__ lookup,
                                  HashTables tables, HashGeometry g, OutT* __restrict__ out) {
  const int64_t cols = g.cols();
  const int64_t perPosition = cols * g.layers;
  const int64_t total = static_cast<int64_t>(g.batch) * g.seqLen * perPosition;
  const int keep = g.maxNgram - 1;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t pos = i / perPosition;
    const int64_t within = i - pos * perPosition;
    const int l = static_cast<int>(within / cols);
    const int c = static_cast<int>(within - l * cols);
    const int64_t b = pos / g.seqLen;
    const int t = static_cast<int>(pos - b * g.seqLen);
    const SequenceView seq{ids + b * g.seqLen, mask ? mask + b * g.seqLen : nullptr,
                           history ? history + b * keep : nullptr};
    int64_t tok[kMaxNgram];
    const int n = c / g.headsPerNgram + 2;
    shiftTokens(seq, lookup, t, n, g.maxNgram, g.padId, tok);
    out[i] = hashElement<OutT>(tok, tables, g, l, c);
  }
}

}  // namespace

void ngramHashesCuda(const HashRequest& req, int device) {
  validateHashRequest(req);
  requireDevice(device);
  DeviceGuard guard(device);
  const HashGeometry& g = req.geometry;
  const int64_t positions = static_cast<int64_t>(g.batch) * g.seqLen;
  const int64_t total = positions * g.layers * g.cols();
  if (total > 0) {
    ScopedStream stream;
    const std::vector<FastMod> mods = fastMods(req);
    DeviceBuffer<int32_t> ids(positions, stream.get());
    DeviceBuffer<uint8_t> mask(req.mask ? positions : 0, stream.get());
    DeviceBuffer<int32_t> history(req.history ? static_cast<size_t>(g.batch) * (g.maxNgram - 1) : 0, stream.get());
    DeviceBuffer<int32_t> lookup(req.vocabSize, stream.get());
    DeviceBuffer<int64_t> multipliers(req.multipliers.size(), stream.get());
    DeviceBuffer<FastMod> modsDev(mods.size(), stream.get());
    DeviceBuffer<int64_t> offsets(req.offsets.size(), stream.get());
    const size_t outBytes = req.int64Output ? sizeof(int64_t) : sizeof(int32_t);
    DeviceBuffer<uint8_t> out(total * outBytes, stream.get());
    ids.upload(req.ids);
    mask.upload(req.mask);
    history.upload(req.history);
    lookup.upload(req.lookup);
    multipliers.upload(req.multipliers.data());
    modsDev.upload(mods.data());
    offsets.upload(req.offsets.data());
    const HashTables tables{multipliers.get(), modsDev.get(), req.offsets.empty() ? nullptr : offsets.get()};
    const int64_t blocks64 = (total + kHashBlockThreads - 1) / kHashBlockThreads;
    const unsigned blocks = static_cast<unsigned>(blocks64 < (1 << 20) ? blocks64 : (1 << 20));
    if (req.int64Output) {
      ngramHashesKernel<int64_t><<<blocks, kHashBlockThreads, 0, stream.get()>>>(
          ids.get(), req.mask ? mask.get() : nullptr, req.history ? history.get() : nullptr, lookup.get(), tables,
          g, reinterpret_cast<int64_t*>(out.get()));
    } else {
      ngramHashesKernel<int32_t><<<blocks, kHashBlockThreads, 0, stream.get()>>>(
          ids.get(), req.mask ? mask.get() : nullptr, req.history ? history.get() : nullptr, lookup.get(), tables,
          g, reinterpret_cast<int32_t*>(out.get()));
    }
    EK_CUDA_CHECK(cudaGetLastError());
    EK_CUDA_CHECK(cudaMemcpyAsync(req.out, out.get(), total * outBytes, cudaMemcpyDeviceToHost, stream.get()));
    EK_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  }
  nextHistory(req);
}

}  // namespace engram
