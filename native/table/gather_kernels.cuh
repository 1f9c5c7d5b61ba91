// The device side of tables, shared by both Engram layers' CUDA forwards: the gather of
// table rows (any stored format, decoded by gather.cuh's element bodies) and the upload of
// a host table to the device.
#pragma once
#include <memory>

#include "common/cuda_check.cuh"
#include "table/gather.cuh"

namespace engram {
namespace {

constexpr int kThreads = 256;

// A grid-stride launch over `work` elements: enough blocks to fill the device, never more
// than the x dimension allows.
unsigned gridFor(int64_t work, int threads = kThreads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned>(blocks < (1 << 20) ? (blocks > 0 ? blocks : 1) : (1 << 20));
}

template <typename IdT>
__global__ void gatherKernel(TableView table, const IdT* __restrict__ ids, int64_t stride, int64_t offset, int rowsPerToken,
                             int64_t tokens, float* __restrict__ e) {
  const int64_t total = tokens * rowsPerToken * table.cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int c = static_cast<int>(i % table.cols);
    const int64_t mh = i / table.cols;
    const int h = static_cast<int>(mh % rowsPerToken);
    const int64_t m = mh / rowsPerToken;
    const int64_t r = static_cast<int64_t>(ids[m * stride + offset + h]);
    e[i] = decodeTableElement(table.dtype, table.rowBytes(r), table.rowScales(r), c);
  }
}

// e [tokens, rowsPerToken * table.cols] = the rows of `ids` (int32 or int64 on the device,
// rowsPerToken of them at `offset` in each token's `stride`), decoded to fp32.
void launchGather(const TableView& table, const uint8_t* ids, bool ids64, int64_t stride, int64_t offset, int rowsPerToken, int64_t tokens,
                  float* e, cudaStream_t s) {
  const unsigned grid = gridFor(tokens * rowsPerToken * table.cols);
  if (ids64) {
    gatherKernel<int64_t><<<grid, kThreads, 0, s>>>(table, reinterpret_cast<const int64_t*>(ids), stride, offset, rowsPerToken, tokens, e);
  } else {
    gatherKernel<int32_t><<<grid, kThreads, 0, s>>>(table, reinterpret_cast<const int32_t*>(ids), stride, offset, rowsPerToken, tokens, e);
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
  finishLegacyCopies();
  t.data = (*data)->as<uint8_t>();
  t.scales = host.scales != nullptr ? (*scales)->as<uint8_t>() : nullptr;
  return t;
}

// The table a forward reads on the device: a pager's device cache (which must be on the
// weights' device, with the weights' row format) or the table uploaded with the weights
// (which must be the call's table: its row ids were checked against that one).
TableView deviceTableFor(const TableView& call, bool callOnDevice, int callDevice, const TableView& uploaded, int weightsDevice) {
  const auto geometry = [](const TableView& t) {
    return std::to_string(t.rows) + " rows of " + std::to_string(t.cols) + " " + tableDtypeName(t.dtype);
  };
  if (callOnDevice) {
    EK_REQUIRE(callDevice == weightsDevice, RangeError,
               "the pager's device cache is on CUDA device " + std::to_string(callDevice) + " but the layer's weights are on device " +
                   std::to_string(weightsDevice) + ": create the pager on the layer's device");
    EK_REQUIRE(call.dtype == uploaded.dtype && call.cols == uploaded.cols, RangeError,
               "the pager's rows (" + std::to_string(call.cols) + " " + tableDtypeName(call.dtype) + ") are not the rows these weights were uploaded for (" +
                   std::to_string(uploaded.cols) + " " + tableDtypeName(uploaded.dtype) + ")");
    return call;
  }
  EK_REQUIRE(uploaded.data != nullptr, Error, "these device weights hold no table (uploaded for a pager): pass the pager's device cache");
  EK_REQUIRE(call.rows == uploaded.rows && call.cols == uploaded.cols && call.dtype == uploaded.dtype, RangeError,
             "the call's table (" + geometry(call) + ") is not the table these device weights were uploaded with (" + geometry(uploaded) +
                 "): upload the weights again");
  return uploaded;
}

}  // namespace
}  // namespace engram
