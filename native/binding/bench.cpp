// Machine yardsticks the benchmarks compare against: the FMA peak and the random-row
// read rate of a table.
#include "binding/napi_util.hpp"
#include "binding/output_pool.hpp"
#include "binding/registry.hpp"
#include "binding/table_args.hpp"
#include "bench/membench_ops.hpp"

namespace engram {

Napi::Value PeakGflops(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  const double seconds = floatField(o, "seconds", 0, 3600);
  double gflops = 0.0;
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] { gflops = fmaPeakGflops(state.pool, threads, seconds > 0 && seconds < 10 ? seconds : 0.2); });
  return Napi::Number::New(info.Env(), gflops);
}

Napi::Value ReadRows(const Napi::CallbackInfo& info) {
  const Napi::Object o = argObject(info);
  const TableView t = readContiguousTable(o, "readRows");
  const int32_t* ids = typedField<int32_t>(o, "rowIds", napi_int32_array, -1, false);
  const int64_t count = static_cast<int64_t>(o.Get("rowIds").As<Napi::TypedArray>().ElementLength());
  const int threads = static_cast<int>(intField(o, "threads", 0, 4096));
  const bool withScales = boolField(o, "withScales", false) && t.scales != nullptr;
  uint64_t fold = 0;
  AddonState& state = addonState(info.Env());
  runSync(info.Env(), [&] {
    fold = readRowsCpu(t.data, t.rows, static_cast<int64_t>(t.cols) * tableElementBytes(t.dtype), ids, count, state.pool, threads,
                       withScales ? t.scales : nullptr, withScales ? t.cols / kScaleBlock : 0);
  });
  return Napi::Number::New(info.Env(), static_cast<double>(fold & 0xffffffffu));
}

// What async calls have copied (CallHold::stage): bytes copied in, and the seconds spent
// allocating, copying in and copying results back (lateSeconds: the late copies among
// them, made while the worker runs). For tests and bench:async.
Napi::Value StagingStats(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("bytes", Napi::Number::New(info.Env(), static_cast<double>(stagedBytesTotal())));
  o.Set("seconds", Napi::Number::New(info.Env(), static_cast<double>(stagingNanosTotal()) * 1e-9));
  o.Set("lateSeconds", Napi::Number::New(info.Env(), static_cast<double>(lateStagingNanosTotal()) * 1e-9));
  return o;
}

// Where large outputs' memory came from: fresh maps (huge or small pages, and the time
// spent faulting them in) against recycled takes. For tests and bench:outputs.
Napi::Value OutputPoolStats(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  const FreshMemoryStats s = freshMemoryStats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("hugeMaps", Napi::Number::New(env, static_cast<double>(s.hugeMaps)));
  o.Set("smallMaps", Napi::Number::New(env, static_cast<double>(s.smallMaps)));
  o.Set("freshBytes", Napi::Number::New(env, static_cast<double>(s.freshBytes)));
  o.Set("hugeSeconds", Napi::Number::New(env, s.hugeSeconds));
  o.Set("smallSeconds", Napi::Number::New(env, s.smallSeconds));
  o.Set("hugeNsPerMiB", Napi::Number::New(env, s.hugeNsPerMiB));
  o.Set("smallNsPerMiB", Napi::Number::New(env, s.smallNsPerMiB));
  o.Set("recycled", Napi::Number::New(env, static_cast<double>(s.recycled)));
  return o;
}

EK_EXPORT_FUNCTIONS(
    {"stagingStats", StagingStats},
    {"outputPoolStats", OutputPoolStats},
    {"peakGflops", PeakGflops},
    {"readRows", ReadRows});

}  // namespace engram
