// Arguments shared by the layer bindings (engram_binding.cpp, v41_binding.cpp).
#pragma once
#include <memory>
#include <vector>

#include "table/gather.cuh"
#include "gemm/gemm_ops.hpp"
#include "binding/napi_util.hpp"

namespace engram {

// JS holds packed projections as an External; the shared_ptr keeps them alive while an
// async call still uses them after JS dropped the handle.
using LinearHandle = std::shared_ptr<const PackedLinear>;

Napi::Value wrapLinear(const Napi::Env& env, LinearHandle w);
LinearHandle linearField(const Napi::Object& o, const char* name);
// tableDtype/tableRows/tableCols and the table (+ fp8 scales) ArrayBuffer regions.
// With "tableParts" the rows lie in several regions (a split checkpoint's shards).
TableView readTable(const Napi::Object& o, Keep* keep);
// readTable for an operation that needs one region (e.g. filling a table); `what` names it.
TableView readContiguousTable(const Napi::Object& o, const char* what);
// For a weights upload: the table, or with `tableless: true` only its dtype and columns
// (a paged table's rows come from the pager's device cache at every call).
TableView readUploadTable(const Napi::Object& o, bool* tableless, Keep* keep = nullptr);
// The table of a forward call: the "devicePager" field (a CUDA pager's device cache; sets
// *onDevice and keeps the cache alive in *pagerCache) or the table fields.
TableView readForwardTable(const Napi::Object& o, Keep* keep, bool* onDevice, int* device, std::shared_ptr<void>* pagerCache);
// The device cache of a CUDA pager handle (pager_binding.cpp); false if `v` is not one.
bool pagerDeviceTable(const Napi::Value& v, TableView* table, int* device, std::shared_ptr<void>* keep);
// A weight format name ('f32', 'bf16', 'f16', 'e4m3', 'e2m1'; 'f32' only when allowF32).
WeightFormat weightFormatField(const Napi::Object& o, const char* name, const std::string& fallback, bool allowF32);
// The "rowIds" field: `count` ids as an Int32Array or a BigInt64Array.
const void* rowIdsField(const Napi::Object& o, int64_t count, bool* is64, Keep* keep);

}  // namespace engram
