// Readers of the arguments several binding files share: tables (ArrayBuffer regions),
// row ids (int32 or int64) and packed projection handles.
#include "binding/table_args.hpp"

namespace engram {

Napi::Value wrapLinear(const Napi::Env& env, LinearHandle w) {
  const int64_t bytes = w ? static_cast<int64_t>(w->panels.size() * sizeof(float) + w->panelsBf16.size() * sizeof(uint16_t) +
                                                 w->bias.size() * sizeof(float) + w->codePanels.size() + w->scalePanels.size())
                          : 0;
  auto* holder = new LinearHandle(std::move(w));
  return makeHandle(env, HandleKind::PackedLinear, holder, bytes);
}

LinearHandle linearField(const Napi::Object& o, const char* name) {
  const Napi::Value v = o.Get(name);
  return requireHandle<LinearHandle>(o.Env(), v, HandleKind::PackedLinear, name, "a packed projection handle (packLinear)");
}

namespace {

// "tableParts": [{ table, tableByteOffset, tableScales?, tableScalesByteOffset?, rows }]
// in row order: a table whose rows lie in several regions (one per checkpoint shard).
void readTableParts(const Napi::Object& o, const Napi::Value& v, Keep* keep, TableView* t) {
  if (!v.IsArray()) throwJs(o.Env(), ErrorKind::TypeError, "tableParts must be an array of { table, tableByteOffset, rows, ... }");
  const Napi::Array parts = v.As<Napi::Array>();
  const uint32_t n = parts.Length();
  if (n < 1 || n > static_cast<uint32_t>(kMaxTableSegments)) {
    throwJs(o.Env(), ErrorKind::RangeError,
            "tableParts must hold 1 to " + std::to_string(kMaxTableSegments) + " row ranges, got " + std::to_string(n));
  }
  int64_t firstRow = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const Napi::Value pv = parts.Get(i);
    if (!pv.IsObject()) throwJs(o.Env(), ErrorKind::TypeError, "tableParts[" + std::to_string(i) + "] must be an object");
    const Napi::Object p = pv.As<Napi::Object>();
    const int64_t rows = intField(p, "rows", 1, t->rows - firstRow);
    TableSegment& s = t->segments[i];
    s.firstRow = firstRow;
    s.data = bufferRegion(p, "table", "tableByteOffset", rows * t->rowStride(), false, keep);
    s.scales = t->dtype == TableDtype::F8E4M3 ? bufferRegion(p, "tableScales", "tableScalesByteOffset", rows * (t->cols / kScaleBlock), false, keep) : nullptr;
    firstRow += rows;
  }
  if (firstRow != t->rows) {
    throwJs(o.Env(), ErrorKind::RangeError, "tableParts hold " + std::to_string(firstRow) + " rows but tableRows is " + std::to_string(t->rows));
  }
  t->segmentCount = static_cast<int>(n);
  t->data = t->segments[0].data;
  t->scales = t->segments[0].scales;
}

}  // namespace

TableView readTable(const Napi::Object& o, Keep* keep) {
  TableView t{};
  t.dtype = static_cast<TableDtype>(intField(o, "tableDtype", 0, 3));
  t.rows = intField(o, "tableRows", 1, INT64_MAX / 2);
  t.cols = static_cast<int>(intField(o, "tableCols", 1, 1 << 20));
  if (t.dtype == TableDtype::F8E4M3 && t.cols % kScaleBlock != 0) throwJs(o.Env(), ErrorKind::RangeError, "fp8 table rows need a multiple of 32 channels");
  const Napi::Value parts = o.Get("tableParts");
  if (!parts.IsUndefined()) {
    readTableParts(o, parts, keep, &t);
    return t;
  }
  t.data = bufferRegion(o, "table", "tableByteOffset", t.rows * t.rowStride(), false, keep);
  if (t.dtype == TableDtype::F8E4M3) t.scales = bufferRegion(o, "tableScales", "tableScalesByteOffset", t.rows * (t.cols / kScaleBlock), false, keep);
  return t;
}

TableView readContiguousTable(const Napi::Object& o, const char* what) {
  const TableView t = readTable(o, nullptr);
  if (t.segmentCount > 0) throwJs(o.Env(), ErrorKind::TypeError, std::string(what) + " needs a table in one region, not split in row ranges");
  return t;
}

TableView readForwardTable(const Napi::Object& o, Keep* keep, bool* onDevice, int* device, std::shared_ptr<void>* pagerCache) {
  const Napi::Value devicePager = o.Get("devicePager");
  *onDevice = !devicePager.IsUndefined();
  if (!*onDevice) return readTable(o, keep);
  TableView t{};
  if (!pagerDeviceTable(devicePager, &t, device, pagerCache)) throwJs(o.Env(), ErrorKind::TypeError, "devicePager must be a CUDA pager handle");
  return t;
}

TableView readUploadTable(const Napi::Object& o, bool* tableless, Keep* keep) {
  *tableless = boolField(o, "tableless", false);
  if (!*tableless) return readTable(o, keep);
  TableView t{};
  t.dtype = static_cast<TableDtype>(intField(o, "tableDtype", 0, 3));
  t.cols = static_cast<int>(intField(o, "tableCols", 1, 1 << 20));
  return t;
}

const void* rowIdsField(const Napi::Object& o, int64_t count, bool* is64, Keep* keep) {
  const Napi::Value v = o.Get("rowIds");
  *is64 = v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_bigint64_array;
  if (*is64) return typedField<int64_t>(o, "rowIds", napi_bigint64_array, count, false, keep);
  return typedField<int32_t>(o, "rowIds", napi_int32_array, count, false, keep);
}

WeightFormat weightFormatField(const Napi::Object& o, const char* name, const std::string& fallback, bool allowF32) {
  const std::string f = stringField(o, name, fallback);
  if (f == "f32" && allowF32) return WeightFormat::F32;
  if (f == "bf16") return WeightFormat::BF16;
  if (f == "f16") return WeightFormat::F16;
  if (f == "e4m3") return WeightFormat::E4M3;
  if (f == "e2m1") return WeightFormat::E2M1;
  throwJs(o.Env(), ErrorKind::RangeError,
          std::string(name) + " must be " + (allowF32 ? "'f32', " : "") + "'bf16', 'f16', 'e4m3' or 'e2m1', got '" + f + "'");
}

}  // namespace engram
