// The table pager (cuda/pager.hpp) for JS: a handle owning the pager, its cache memory
// and references to the home tier's buffers; tickets are plain numbers.
#include <algorithm>
#include <cstring>

#include "binding/napi_util.hpp"
#include "binding/registry.hpp"
#include "common/crc32c.hpp"
#include "common/device.hpp"
#include "binding/mapped_memory.hpp"
#include "pager/pager.hpp"
#include "pager/pager_copy_remote.hpp"
#include "binding/table_args.hpp"

namespace engram {

namespace {

struct PagerHolder {
  Keep sourceRefs;      // the home tier's buffers stay alive with the pager
  MappedHandle cache;   // CPU backend: the cache's rows (and scales after them)
  std::shared_ptr<uint8_t> deviceCache;  // CUDA backend: the same layout in device memory
  TableView deviceTable{};               // the device cache as the gather kernels read it
  int device = -1;                       // the CUDA device of deviceCache
  RemoteCopyEngine* remote = nullptr;    // the remote tier's engine (owned by pager)
  std::unique_ptr<Pager> pager;  // declared last: destroyed (copy stream drained) first
  ~PagerHolder() { pager.reset(); }
};
using PagerHandle = std::shared_ptr<PagerHolder>;

PagerHandle pagerArg(const Napi::CallbackInfo& info) {
  const Napi::Value v = info.Length() < 1 ? info.Env().Undefined() : info[0];
  return requireHandle<PagerHandle>(info.Env(), v, HandleKind::Pager, "the first argument", "a pager handle (pagerCreate)");
}

uint64_t ticketArg(const Napi::CallbackInfo& info, size_t at) {
  if (info.Length() <= at || !info[at].IsNumber()) throwJs(info.Env(), ErrorKind::TypeError, "ticket must be a number");
  const double t = info[at].As<Napi::Number>().DoubleValue();
  if (!(t >= 1 && t <= 9007199254740991.0)) throwJs(info.Env(), ErrorKind::RangeError, "ticket out of range");
  return static_cast<uint64_t>(t);
}

constexpr int64_t kCacheAlign = 64;

// The home tier: "files" ([{ path, dataOffset, scalesOffset, rows }] in row order), or the
// table fields (one region, or "tableParts" for a table split in row ranges).
PageSource readPageSource(const Napi::Object& o, const PagerGeometry& g, Keep* keep) {
  PageSource source;
  const Napi::Value files = o.Get("files");
  if (!files.IsUndefined()) {
    if (!files.IsArray() || files.As<Napi::Array>().Length() == 0) throwJs(o.Env(), ErrorKind::TypeError, "files must be a non-empty array");
    const Napi::Array list = files.As<Napi::Array>();
    int64_t firstRow = 0;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      const Napi::Value v = list.Get(i);
      if (!v.IsObject() || !v.As<Napi::Object>().Get("path").IsString()) {
        throwJs(o.Env(), ErrorKind::TypeError, "files[" + std::to_string(i) + "] must be { path, dataOffset, scalesOffset, rows }");
      }
      const Napi::Object f = v.As<Napi::Object>();
      SourcePart p;
      p.firstRow = firstRow;
      p.rows = intField(f, "rows", 1, g.rows - firstRow);
      p.path = f.Get("path").As<Napi::String>().Utf8Value();
      p.dataOffset = intField(f, "dataOffset", 0, INT64_MAX / 4);
      p.scalesOffset = intField(f, "scalesOffset", 0, INT64_MAX / 4);
      firstRow += p.rows;
      source.parts.push_back(std::move(p));
    }
    if (firstRow != g.rows) throwJs(o.Env(), ErrorKind::RangeError, "files hold " + std::to_string(firstRow) + " rows but the table has " + std::to_string(g.rows));
    return source;
  }
  const TableView t = readTable(o, keep);
  if (t.rows != g.rows || t.rowStride() != g.rowBytes) throwJs(o.Env(), ErrorKind::RangeError, "the table's rows and row bytes do not match the pager's");
  const int parts = t.segmentCount == 0 ? 1 : t.segmentCount;
  for (int i = 0; i < parts; ++i) {
    SourcePart p;
    p.firstRow = t.segmentCount == 0 ? 0 : t.segments[i].firstRow;
    p.rows = t.segmentRows(i);
    p.data = t.rowBytes(p.firstRow);
    p.scales = g.scaleRowBytes > 0 ? t.rowScales(p.firstRow) : nullptr;
    source.parts.push_back(p);
  }
  return source;
}

}  // namespace

bool pagerDeviceTable(const Napi::Value& v, TableView* table, int* device, std::shared_ptr<void>* keep) {
  const PagerHandle* handle = handleData<PagerHandle>(v, HandleKind::Pager);
  if (handle == nullptr) return false;
  PagerHandle h = *handle;
  if (!h->deviceCache) return false;
  *table = h->deviceTable;
  *device = h->device;
  *keep = h;  // the cache stays allocated while a call reads it
  return true;
}

// createPager({ rows, rowBytes, scaleRowBytes, pageRows, slots, hotRows, eviction,
//   simulate, bytesPerSecond, source: table/tableByteOffset/tableScales/... | path/dataOffset/scalesOffset })
//   -> { pager, cache, cacheScalesByteOffset }
Napi::Value PagerCreate(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const Napi::Object o = argObject(info);
  PagerGeometry g;
  g.rows = intField(o, "rows", 1, INT64_MAX / 4);
  g.rowBytes = intField(o, "rowBytes", 1, 1 << 24);
  g.scaleRowBytes = intField(o, "scaleRowBytes", 0, 1 << 20);
  g.pageRows = intField(o, "pageRows", 1, INT32_MAX);
  g.slots = intField(o, "slots", 0, INT32_MAX);
  g.hotRows = intField(o, "hotRows", 0, INT32_MAX);
  const auto eviction = static_cast<Eviction>(intField(o, "eviction", 0, 2));
  const bool simulate = boolField(o, "simulate", false);
  const int device = o.Get("device").IsUndefined() ? -1 : static_cast<int>(intField(o, "device", 0, 1024));  // >= 0: a CUDA cache
  const int readers = o.Get("readThreads").IsUndefined() ? 1 : static_cast<int>(intField(o, "readThreads", 1, 256));
  const double rate = o.Get("bytesPerSecond").IsNumber() ? o.Get("bytesPerSecond").As<Napi::Number>().DoubleValue() : 0;
  if (!(rate >= 0)) throwJs(env, ErrorKind::RangeError, "bytesPerSecond must be >= 0");
  if (g.cacheRows() > INT32_MAX) throwJs(env, ErrorKind::RangeError, "the cache would hold more than 2^31 rows");

  auto holder = std::make_shared<PagerHolder>();
  runSync(env, [&] {
    if (simulate) {
      holder->pager = std::make_unique<Pager>(g, eviction, makeNullCopyEngine());
      return;
    }
    const bool remote = boolField(o, "remote", false);
    const PageSource source = remote ? PageSource{} : readPageSource(o, g, &holder->sourceRefs);
    const int64_t dataBytes = (g.cacheRows() * g.rowBytes + kCacheAlign - 1) / kCacheAlign * kCacheAlign;
    const size_t cacheBytes = static_cast<size_t>(std::max<int64_t>(1, dataBytes + g.cacheRows() * g.scaleRowBytes));
    if (device >= 0) {
      EK_CUDA(device, holder->deviceCache = allocateDeviceCache(cacheBytes, device));
      holder->device = device;
      uint8_t* base = holder->deviceCache.get();
      TableView& t = holder->deviceTable;
      t.dtype = static_cast<TableDtype>(intField(o, "tableDtype", 0, 3));
      t.cols = static_cast<int>(intField(o, "tableCols", 1, 1 << 20));
      EK_REQUIRE(static_cast<int64_t>(t.cols) * tableElementBytes(t.dtype) == g.rowBytes, RangeError, "tableCols and tableDtype do not give rowBytes");
      t.rows = g.cacheRows();
      t.data = base;
      t.scales = g.scaleRowBytes > 0 ? base + dataBytes : nullptr;
      EK_CUDA(device, holder->pager = std::make_unique<Pager>(g, eviction, makeCudaCopyEngine(source, g, base, g.scaleRowBytes > 0 ? base + dataBytes : nullptr, device)));
      return;
    }
    holder->cache = mapAnonymous(cacheBytes);
    auto* base = static_cast<uint8_t*>(holder->cache->base);
    if (remote) {
      EK_REQUIRE(device < 0, TypeError, "the remote tier fills a host cache: a CUDA cache behind it is not supported yet");
      auto engine = std::make_unique<RemoteCopyEngine>(g, base, g.scaleRowBytes > 0 ? base + dataBytes : nullptr);
      holder->remote = engine.get();
      holder->pager = std::make_unique<Pager>(g, eviction, std::move(engine));
      return;
    }
    holder->pager = std::make_unique<Pager>(g, eviction, makeCpuCopyEngine(source, g, base, g.scaleRowBytes > 0 ? base + dataBytes : nullptr, rate, readers));
  });
  Napi::Object out = Napi::Object::New(env);
  auto* boxed = new PagerHandle(holder);
  // Its bookkeeping, about 100 bytes a slot (bench:bookkeeping measures it), for V8's
  // accounting; a CPU cache is reported by its own mapping handle (wrapMapping).
  auto ext = makeHandle(env, HandleKind::Pager, boxed, 100 * g.slots);
  out.Set("pager", ext);
  if (holder->cache) {
    out.Set("cache", wrapMapping(env, holder->cache));
    out.Set("cacheScalesByteOffset", static_cast<double>((g.cacheRows() * g.rowBytes + kCacheAlign - 1) / kCacheAlign * kCacheAlign));
  }
  return out;
}

// pagerAcquire(pager, rowIds, translated?) -> ticket
Napi::Value PagerAcquire(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  PagerHandle h = pagerArg(info);
  if (info.Length() < 2 || !info[1].IsTypedArray()) throwJs(env, ErrorKind::TypeError, "rowIds must be an Int32Array or BigInt64Array");
  Napi::TypedArray ids = info[1].As<Napi::TypedArray>();
  const int64_t count = static_cast<int64_t>(ids.ElementLength());
  const int32_t* rows32 = nullptr;
  const int64_t* rows64 = nullptr;
  uint8_t* base = typedArrayBytes(ids, "rowIds");
  if (ids.TypedArrayType() == napi_int32_array) rows32 = reinterpret_cast<const int32_t*>(base);
  else if (ids.TypedArrayType() == napi_bigint64_array) rows64 = reinterpret_cast<const int64_t*>(base);
  else throwJs(env, ErrorKind::TypeError, "rowIds must be an Int32Array or BigInt64Array");
  int32_t* translated = nullptr;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        static_cast<int64_t>(info[2].As<Napi::TypedArray>().ElementLength()) != count) {
      throwJs(env, ErrorKind::TypeError, "translated must be an Int32Array as long as rowIds");
    }
    Napi::TypedArray t = info[2].As<Napi::TypedArray>();
    translated = reinterpret_cast<int32_t*>(typedArrayBytes(t, "translated"));
  }
  uint64_t ticket = 0;
  runSync(env, [&] { ticket = h->pager->acquire(rows32, rows64, count, translated); }, MappedFaults::Skip);
  return Napi::Number::New(env, static_cast<double>(ticket));
}

Napi::Value PagerWait(const Napi::CallbackInfo& info) {
  PagerHandle h = pagerArg(info);
  const uint64_t ticket = ticketArg(info, 1);
  runSync(info.Env(), [&] { h->pager->wait(ticket); }, MappedFaults::Skip);
  return info.Env().Undefined();
}

Napi::Value PagerWaitAsync(const Napi::CallbackInfo& info) {
  PagerHandle h = pagerArg(info);
  const uint64_t ticket = ticketArg(info, 1);
  return runAsync(info.Env(), [h, ticket] { h->pager->wait(ticket); }, {}, MappedFaults::Skip);
}

Napi::Value PagerRelease(const Napi::CallbackInfo& info) {
  PagerHandle h = pagerArg(info);
  const uint64_t ticket = ticketArg(info, 1);
  runSync(info.Env(), [&] { h->pager->release(ticket); }, MappedFaults::Skip);
  return info.Env().Undefined();
}

Napi::Value PagerSetHotRows(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  PagerHandle h = pagerArg(info);
  if (info.Length() < 2 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_bigint64_array) {
    throwJs(env, ErrorKind::TypeError, "rows must be a BigInt64Array");
  }
  Napi::TypedArray rows = info[1].As<Napi::TypedArray>();
  const auto* data = reinterpret_cast<const int64_t*>(typedArrayBytes(rows, "rows"));
  runSync(env, [&] { h->pager->setHotRows(data, static_cast<int64_t>(rows.ElementLength())); });
  return env.Undefined();
}

Napi::Value PagerStatsOf(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  PagerHandle h = pagerArg(info);
  const PagerStats s = h->pager->stats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("lookups", s.lookups);
  o.Set("uniqueRows", s.uniqueRows);
  o.Set("uniquePages", s.uniquePages);
  o.Set("pageHits", s.pageHits);
  o.Set("pageMisses", s.pageMisses);
  o.Set("rowHits", s.rowHits);
  o.Set("rowMisses", s.rowMisses);
  o.Set("hotRowHits", s.hotRowHits);
  o.Set("bytesCopied", s.bytesCopied);
  o.Set("evictions", s.evictions);
  o.Set("tickets", s.tickets);
  o.Set("stallSeconds", s.stallSeconds);
  o.Set("copySeconds", h->pager->copyBusySeconds());
  o.Set("residentPages", static_cast<double>(h->pager->residentPages()));
  o.Set("ticketsInFlight", static_cast<double>(h->pager->ticketsInFlight()));
  o.Set("fileReads", h->pager->readMethod());
  return o;
}

Napi::Value PagerResetStats(const Napi::CallbackInfo& info) {
  pagerArg(info)->pager->resetStats();
  return info.Env().Undefined();
}

RemoteCopyEngine& remoteArg(const Napi::CallbackInfo& info, const PagerHandle& h) {
  if (h->remote == nullptr) throwJs(info.Env(), ErrorKind::TypeError, "this pager has no remote tier");
  return *h->remote;
}

// pagerRemoteJobs(pager) -> [{ job, copies: Float64Array [srcRow, dstRow, rows] x n }]
Napi::Value PagerRemoteJobs(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  PagerHandle h = pagerArg(info);
  std::vector<RemoteCopyEngine::Job> jobs = remoteArg(info, h).takeJobs();
  Napi::Array out = Napi::Array::New(env, jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    Napi::Float64Array copies = Napi::Float64Array::New(env, jobs[i].copies.size() * 3);
    for (size_t c = 0; c < jobs[i].copies.size(); ++c) {
      copies[3 * c] = static_cast<double>(jobs[i].copies[c].srcRow);
      copies[3 * c + 1] = static_cast<double>(jobs[i].copies[c].dstRow);
      copies[3 * c + 2] = static_cast<double>(jobs[i].copies[c].rows);
    }
    Napi::Object job = Napi::Object::New(env);
    job.Set("job", static_cast<double>(jobs[i].id));
    job.Set("copies", copies);
    out.Set(static_cast<uint32_t>(i), job);
  }
  return out;
}

// pagerRemoteFill(pager, { job, dstRow, rows, data: Uint8Array, scales?: Uint8Array }) -> written
Napi::Value PagerRemoteFill(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  PagerHandle h = pagerArg(info);
  RemoteCopyEngine& engine = remoteArg(info, h);
  if (info.Length() < 2 || !info[1].IsObject()) throwJs(env, ErrorKind::TypeError, "expected { job, dstRow, rows, data, scales? }");
  const Napi::Object o = info[1].As<Napi::Object>();
  const auto job = static_cast<uint64_t>(intField(o, "job", 1, INT64_MAX / 2));
  const int64_t dstRow = intField(o, "dstRow", 0, INT32_MAX);
  const int64_t rows = intField(o, "rows", 1, INT32_MAX);
  const uint8_t* data = typedField<uint8_t>(o, "data", napi_uint8_array, -1, false);
  const size_t dataBytes = o.Get("data").As<Napi::TypedArray>().ByteLength();
  const uint8_t* scales = typedField<uint8_t>(o, "scales", napi_uint8_array, -1, true);
  const size_t scaleBytes = scales == nullptr ? 0 : o.Get("scales").As<Napi::TypedArray>().ByteLength();
  bool written = false;
  runSync(env, [&] { written = engine.fill(job, dstRow, rows, data, dataBytes, scales, scaleBytes); }, MappedFaults::Skip);
  return Napi::Boolean::New(env, written);
}

// pagerRemoteFillPages(pager, { job, pages: Float64Array, values: Array<Buffer | null>, tableTag: Uint8Array(8) })
//   -> -1 written, -2 the job was abandoned, else the index of the first value that fails its check
Napi::Value PagerRemoteFillPages(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  PagerHandle h = pagerArg(info);
  RemoteCopyEngine& engine = remoteArg(info, h);
  if (info.Length() < 2 || !info[1].IsObject()) throwJs(env, ErrorKind::TypeError, "expected { job, pages, values, tableTag }");
  const Napi::Object o = info[1].As<Napi::Object>();
  const auto job = static_cast<uint64_t>(intField(o, "job", 1, INT64_MAX / 2));
  const double* pages = typedField<double>(o, "pages", napi_float64_array, -1, false);
  const size_t count = o.Get("pages").As<Napi::TypedArray>().ElementLength();
  const uint8_t* tag = typedField<uint8_t>(o, "tableTag", napi_uint8_array, 8, false);
  const Napi::Value valuesValue = o.Get("values");
  if (!valuesValue.IsArray() || valuesValue.As<Napi::Array>().Length() != count) {
    throwJs(env, ErrorKind::TypeError, "values must be an Array of " + std::to_string(count) + " Buffers or nulls (one per page)");
  }
  const Napi::Array valuesArray = valuesValue.As<Napi::Array>();
  std::vector<const uint8_t*> values(count, nullptr);
  std::vector<size_t> lengths(count, 0);
  for (uint32_t i = 0; i < count; ++i) {
    const Napi::Value v = valuesArray.Get(i);
    if (v.IsNull() || v.IsUndefined()) continue;  // a missing key: its check fails
    if (!v.IsBuffer()) throwJs(env, ErrorKind::TypeError, "values[" + std::to_string(i) + "] must be a Buffer or null");
    const auto b = v.As<Napi::Buffer<uint8_t>>();
    values[i] = b.Data();
    lengths[i] = b.Length();
  }
  int64_t result = RemoteCopyEngine::kJobAbandoned;
  runSync(env, [&] { result = engine.fillPages(job, count, pages, values.data(), lengths.data(), tag); }, MappedFaults::Skip);
  return Napi::Number::New(env, static_cast<double>(result));
}

// crc32c(data: Uint8Array, portable?: boolean) -> number
Napi::Value Crc32c(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throwJs(env, ErrorKind::TypeError, "data must be a Uint8Array");
  }
  const auto data = info[0].As<Napi::Uint8Array>();
  const bool portable = info.Length() > 1 && info[1].ToBoolean().Value();
  const uint32_t crc = portable ? crc32cPortable(data.Data(), data.ByteLength()) : crc32c(data.Data(), data.ByteLength());
  return Napi::Number::New(env, static_cast<double>(crc));
}

// pagerRemoteComplete(pager, job, failure: string ('' when every page arrived), seconds)
Napi::Value PagerRemoteComplete(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  PagerHandle h = pagerArg(info);
  RemoteCopyEngine& engine = remoteArg(info, h);
  const uint64_t job = ticketArg(info, 1);
  if (info.Length() < 4 || !info[2].IsString() || !info[3].IsNumber()) throwJs(env, ErrorKind::TypeError, "expected (pager, job, failure, seconds)");
  engine.complete(job, info[2].As<Napi::String>().Utf8Value(), std::max(0.0, info[3].As<Napi::Number>().DoubleValue()));
  return env.Undefined();
}

EK_EXPORT_FUNCTIONS(
    {"pagerRemoteJobs", PagerRemoteJobs},
    {"pagerRemoteFill", PagerRemoteFill},
    {"pagerRemoteFillPages", PagerRemoteFillPages},
    {"crc32c", Crc32c},
    {"pagerRemoteComplete", PagerRemoteComplete},
    {"pagerCreate", PagerCreate},
    {"pagerAcquire", PagerAcquire},
    {"pagerWait", PagerWait},
    {"pagerWaitAsync", PagerWaitAsync},
    {"pagerRelease", PagerRelease},
    {"pagerSetHotRows", PagerSetHotRows},
    {"pagerStats", PagerStatsOf},
    {"pagerResetStats", PagerResetStats});

}  // namespace engram
