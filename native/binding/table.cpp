// Tables: rows in any stored format gathered (alone, or packed as the GEMM reads them),
// converted between formats, filled with seeded values.
#include <limits>

#include "binding/napi_util.hpp"
#include "binding/registry.hpp"
#include "binding/table_args.hpp"
#include "table/convert_ops.hpp"
#include "engram/engram_ops.hpp"

namespace engram {

Napi::Value GatherRows(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const TableView table = readTable(o, nullptr);
  const int64_t tokens = intField(o, "tokens", 0, INT32_MAX);
  const int rowsPerToken = static_cast<int>(intField(o, "rowsPerToken", 1, 1 << 16));
  bool ids64 = false;
  const void* ids = rowIdsField(o, tokens * rowsPerToken, &ids64, nullptr);
  float* out = typedField<float>(o, "out", napi_float32_array, tokens * rowsPerToken * table.cols, false);
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] { gatherRowsCpu(table, ids, ids64, tokens, rowsPerToken, out, state.pool, threads); });
  return info.Env().Undefined();
}

// The layers' in-GEMM gather alone (gatherPackedCpu), for the benchmarks.
Napi::Value GatherPacked(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  GatheredRows rows;
  rows.table = readTable(o, nullptr);
  const int64_t tokens = intField(o, "tokens", 0, INT32_MAX);
  rows.rowsPerToken = static_cast<int>(intField(o, "rowsPerToken", 1, 1 << 16));
  rows.stride = rows.rowsPerToken;
  rows.rowIds = rowIdsField(o, tokens * rows.rowsPerToken, &rows.rowIds64, nullptr);
  const std::string kernel = stringField(o, "kernel", "avx512");
  if (kernel != "avx512-bf16" && kernel != "avx512" && kernel != "avx2" && kernel != "baseline") {
    throwJs(info.Env(), ErrorKind::RangeError, "kernel must be 'avx512-bf16', 'avx512', 'avx2' or 'baseline', got '" + kernel + "'");
  }
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] {
    // Every id is checked first: the packing reads the table unchecked.
    for (int64_t i = 0; i < tokens * rows.rowsPerToken; ++i) {
      const int64_t id = rows.rowIds64 ? static_cast<const int64_t*>(rows.rowIds)[i] : static_cast<const int32_t*>(rows.rowIds)[i];
      EK_REQUIRE(id >= 0 && id < rows.table.rows, RangeError, "rowIds[" + std::to_string(i) + "] = " + std::to_string(id) + " is outside the table");
    }
    gatherPackedCpu(rows, tokens, kernel, state.pool, threads);
  });
  return info.Env().Undefined();
}

Napi::Value ConvertTable(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const TableView src = readTable(o, nullptr);
  const auto dstDtype = static_cast<TableDtype>(intField(o, "dstDtype", 0, 3));
  uint8_t* dst = bufferRegion(o, "dst", "dstByteOffset", src.rows * src.cols * tableElementBytes(dstDtype), false);
  uint8_t* dstScales = dstDtype == TableDtype::F8E4M3
                           ? bufferRegion(o, "dstScales", "dstScalesByteOffset", src.rows * (src.cols / kScaleBlock), false)
                           : nullptr;
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] { convertTableCpu(src, dst, dstScales, dstDtype, state.pool, threads); });
  return info.Env().Undefined();
}

Napi::Value FillRandom(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const TableView t = readContiguousTable(o, "fillRandom");  // the table to fill
  const TableDtype dtype = t.dtype;
  const int64_t rows = t.rows;
  const int cols = t.cols;
  uint8_t* dst = const_cast<uint8_t*>(t.data);
  uint8_t* scales = const_cast<uint8_t*>(t.scales);
  const uint64_t seed = static_cast<uint64_t>(intField(o, "seed", 0, INT64_MAX));
  const bool normal = stringField(o, "distribution", "normal") == "normal";
  const float scale = static_cast<float>(floatField(o, "scale", 0, std::numeric_limits<float>::max()));
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] { fillRandomCpu(dst, scales, dtype, rows, cols, seed, normal, scale, state.pool, threads); });
  return info.Env().Undefined();
}

EK_EXPORT_FUNCTIONS(
    {"gatherRows", GatherRows},
    {"gatherPacked", GatherPacked},
    {"convertTable", ConvertTable},
    {"fillRandom", FillRandom});

}  // namespace engram
