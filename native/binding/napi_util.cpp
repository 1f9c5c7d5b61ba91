#include "binding/napi_util.hpp"
#include "common/mapped_guard.hpp"
#include "binding/output_pool.hpp"
#include "binding/staging_copy.hpp"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include <limits>

namespace engram {

Napi::Error makeJsError(const Napi::Env& env, ErrorKind kind, const std::string& message) {
  switch (kind) {
    case ErrorKind::TypeError:
      return Napi::TypeError::New(env, message);
    case ErrorKind::RangeError:
      return Napi::RangeError::New(env, message);
    default:
      return Napi::Error::New(env, message);
  }
}

void throwJs(const Napi::Env& env, ErrorKind kind, const std::string& message) {
  throw makeJsError(env, kind, message);
}

Napi::Object argObject(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) throwJs(info.Env(), ErrorKind::TypeError, "expected an argument object");
  return info[0].As<Napi::Object>();
}

int64_t intField(const Napi::Object& o, const char* name, int64_t min, int64_t max) {
  const Napi::Value v = o.Get(name);
  if (!v.IsNumber()) throwJs(o.Env(), ErrorKind::TypeError, std::string(name) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(min) && d <= static_cast<double>(max)) || d != static_cast<double>(static_cast<int64_t>(d))) {
    throwJs(o.Env(), ErrorKind::RangeError,
            std::string(name) + " must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return static_cast<int64_t>(d);
}

double floatField(const Napi::Object& o, const char* name, double min, double max) {
  const Napi::Value v = o.Get(name);
  if (!v.IsNumber()) throwJs(o.Env(), ErrorKind::TypeError, std::string(name) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < min || d > max) {
    throwJs(o.Env(), ErrorKind::RangeError,
            std::string(name) + " must be a finite number in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " + std::to_string(d));
  }
  return d;
}

bool boolField(const Napi::Object& o, const char* name, bool fallback) {
  const Napi::Value v = o.Get(name);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) throwJs(o.Env(), ErrorKind::TypeError, std::string(name) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string stringField(const Napi::Object& o, const char* name, const std::string& fallback) {
  const Napi::Value v = o.Get(name);
  if (v.IsUndefined()) return fallback;
  if (!v.IsString()) throwJs(o.Env(), ErrorKind::TypeError, std::string(name) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

uint8_t* typedArrayBytes(const Napi::TypedArray& a, const char* name);

template <typename T>
T* typedField(const Napi::Object& o, const char* name, napi_typedarray_type type, int64_t expected, bool optional,
              CallHold* hold, Access access) {
  const Napi::Value v = o.Get(name);
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return nullptr;
    throwJs(o.Env(), ErrorKind::TypeError, std::string(name) + " is required");
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    throwJs(o.Env(), ErrorKind::TypeError, std::string(name) + " has the wrong typed-array type");
  }
  Napi::TypedArray a = v.As<Napi::TypedArray>();
  if (expected >= 0 && static_cast<int64_t>(a.ElementLength()) != expected) {
    throwJs(o.Env(), ErrorKind::RangeError,
            std::string(name) + " has " + std::to_string(a.ElementLength()) + " elements, expected " +
                std::to_string(expected));
  }
  uint8_t* bytes = typedArrayBytes(a, name);
  if (hold == nullptr || a.ByteLength() == 0) return reinterpret_cast<T*>(bytes);
  hold->reference(v);
  napi_value buffer = nullptr;
  bool isArrayBuffer = false;
  void* bufferData = nullptr;
  size_t bufferBytes = 0;
  if (napi_get_typedarray_info(o.Env(), a, nullptr, nullptr, nullptr, &buffer, nullptr) != napi_ok ||
      napi_is_arraybuffer(o.Env(), buffer, &isArrayBuffer) != napi_ok) {
    throwJs(o.Env(), ErrorKind::TypeError, std::string(name) + ": cannot read the typed array's buffer");
  }
  if (!isArrayBuffer) return reinterpret_cast<T*>(bytes);  // a SharedArrayBuffer: never detached
  if (napi_get_arraybuffer_info(o.Env(), buffer, &bufferData, &bufferBytes) != napi_ok) {
    throwJs(o.Env(), ErrorKind::TypeError, std::string(name) + ": cannot read the typed array's buffer");
  }
  if (OwnedMemory pin = ownedBufferPin(bufferData, bufferBytes)) {
    hold->pin(std::move(pin));
    return reinterpret_cast<T*>(bytes);
  }
  return reinterpret_cast<T*>(hold->stage(v, name, bytes, a.ByteLength(), access == Access::Write, access == Access::ReadLater));
}

namespace {
std::atomic<uint64_t> stagedBytes{0};
std::atomic<uint64_t> stagingNanos{0};  // allocating, copying in and copying back
uint64_t nowNanos() { return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count()); }
// Copies from 64 KiB up go to the output pool's recycled pages: into fresh memory (glibc
// maps blocks this large anew each time) page
// faults would cost more than the copy itself (16 MB: 7 ms against about 1.5 ms).
constexpr size_t kPooledStageBytes = size_t{64} << 10;

}  // namespace

uint64_t stagedBytesTotal() { return stagedBytes.load(std::memory_order_relaxed); }
uint64_t stagingNanosTotal() { return stagingNanos.load(std::memory_order_relaxed); }

uint8_t* CallHold::stage(const Napi::Value& v, const char* name, uint8_t* user, size_t bytes, bool writes, bool late) {
  const uint64_t t0 = nowNanos();
  std::unique_ptr<uint8_t, std::function<void(uint8_t*)>> copy;
  PooledMemory pooled;
  if (bytes >= kPooledStageBytes) {
    try {
      pooled = takePooled(bytes, false, true);
    } catch (const EngramError&) {
      pooled = PooledMemory{};  // the heap below may still have it
    }
  }
  if (pooled.data != nullptr) {
    copy = {static_cast<uint8_t*>(pooled.data), [mapped = pooled.mapped](uint8_t* p) { givePooled(p, mapped, true); }};
  } else {
    // Cache-line aligned, as the kernels' own buffers are (aligned_alloc wants a multiple).
    copy = {static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)), [](uint8_t* p) { std::free(p); }};
  }
  if (copy == nullptr) throwJs(v.Env(), ErrorKind::RangeError, std::string(name) + ": cannot allocate " + std::to_string(bytes) + " bytes to stage it");
  if (late && !writes) {
    if (!lateLatch_) lateLatch_ = std::make_unique<InputLatch>();
  } else {
    late = false;
    copyStaged(copy.get(), user, bytes);
  }
  stagedBytes.fetch_add(bytes, std::memory_order_relaxed);
  stagingNanos.fetch_add(nowNanos() - t0, std::memory_order_relaxed);
  Staged s{name, Napi::Persistent(v), user, bytes, std::move(copy), writes, late};
  staged_.push_back(std::move(s));
  return staged_.back().copy.get();
}

namespace {
std::atomic<uint64_t> lateNanos{0};
}

uint64_t lateStagingNanosTotal() { return lateNanos.load(std::memory_order_relaxed); }

void CallHold::copyLateInputs() {
  if (!lateLatch_) return;
  const uint64_t t0 = nowNanos();
  // Nothing between the call's start and here ran JS, so the arrays are as validated.
  for (Staged& s : staged_) {
    if (s.late) copyStaged(s.copy.get(), s.user, s.bytes);
  }
  lateLatch_->open();
  const uint64_t spent = nowNanos() - t0;
  stagingNanos.fetch_add(spent, std::memory_order_relaxed);
  lateNanos.fetch_add(spent, std::memory_order_relaxed);
}

std::string CallHold::writeBack(const Napi::Env& env) {
  if (staged_.empty()) return "";
  const uint64_t t0 = nowNanos();
  std::string lost;
  for (Staged& s : staged_) {
    if (!s.writes) continue;
    void* data = nullptr;
    size_t length = 0;
    napi_typedarray_type type;
    const bool ok = napi_get_typedarray_info(env, s.target.Value(), &type, &length, &data, nullptr, nullptr) == napi_ok;
    const size_t bytes = ok ? s.target.Value().As<Napi::TypedArray>().ByteLength() : 0;
    if (ok && data == s.user && bytes == s.bytes) {
      copyStaged(data, s.copy.get(), s.bytes);
    } else if (lost.empty()) {
      lost = s.name + "'s buffer was detached (transferred) while the call ran, so its result was discarded";
    }
  }
  stagingNanos.fetch_add(nowNanos() - t0, std::memory_order_relaxed);
  return lost;
}

uint8_t* typedArrayBytes(const Napi::TypedArray& a, const char* name) {
  // The element pointer straight from N-API: Napi::TypedArray::ArrayBuffer() fails
  // ("Invalid argument") for a SharedArrayBuffer-backed array, which is as good an input.
  void* data = nullptr;
  if (napi_get_typedarray_info(a.Env(), a, nullptr, nullptr, &data, nullptr, nullptr) != napi_ok) {
    throwJs(a.Env(), ErrorKind::TypeError, std::string(name) + ": cannot read the typed array's memory");
  }
  if (data == nullptr && a.ElementLength() > 0) throwJs(a.Env(), ErrorKind::TypeError, std::string(name) + "'s buffer is detached");
  // An empty array may have no memory at all; it is still given (non-null), never "absent".
  alignas(64) static uint8_t emptyArray[64];
  return data != nullptr ? static_cast<uint8_t*>(data) : emptyArray;
}

template int32_t* typedField<int32_t>(const Napi::Object&, const char*, napi_typedarray_type, int64_t, bool, CallHold*, Access);
template uint8_t* typedField<uint8_t>(const Napi::Object&, const char*, napi_typedarray_type, int64_t, bool, CallHold*, Access);
template int64_t* typedField<int64_t>(const Napi::Object&, const char*, napi_typedarray_type, int64_t, bool, CallHold*, Access);
template float* typedField<float>(const Napi::Object&, const char*, napi_typedarray_type, int64_t, bool, CallHold*, Access);
template double* typedField<double>(const Napi::Object&, const char*, napi_typedarray_type, int64_t, bool, CallHold*, Access);
template uint64_t* typedField<uint64_t>(const Napi::Object&, const char*, napi_typedarray_type, int64_t, bool, CallHold*, Access);

uint8_t* bufferRegion(const Napi::Object& o, const char* name, const char* offsetName, int64_t bytes, bool optional,
                      CallHold* hold) {
  const Napi::Value v = o.Get(name);
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return nullptr;
    throwJs(o.Env(), ErrorKind::TypeError, std::string(name) + " is required");
  }
  uint8_t* base = nullptr;
  size_t mappedSize = 0;
  const bool mapped = mappedRegion(v, &base, &mappedSize);
  if (!mapped && !v.IsArrayBuffer()) throwJs(o.Env(), ErrorKind::TypeError, std::string(name) + " must be an ArrayBuffer or a mapped file");
  if (!mapped) {
    Napi::ArrayBuffer buffer = v.As<Napi::ArrayBuffer>();
    base = static_cast<uint8_t*>(buffer.Data());
    mappedSize = buffer.ByteLength();
  }
  const int64_t offset = intField(o, offsetName, 0, INT64_MAX / 2);
  const int64_t length = static_cast<int64_t>(mappedSize);
  if (bytes < 0 || offset > length || bytes > length - offset) {
    throwJs(o.Env(), ErrorKind::RangeError,
            std::string(name) + ": " + std::to_string(bytes) + " bytes at offset " + std::to_string(offset) +
                " run past its " + std::to_string(length) + " bytes");
  }
  if (hold != nullptr) {
    hold->reference(v);  // a mapped file handle stays alive with it; an ArrayBuffer is pinned too when the addon owns it
    if (!mapped) {
      if (OwnedMemory pin = ownedBufferPin(base, mappedSize)) hold->pin(std::move(pin));
    }
  }
  return base + offset;
}

namespace {

class CallableWorker : public Napi::AsyncWorker {
 public:
  CallableWorker(const Napi::Env& env, std::function<void()> work, CallHold keep,
                 std::function<Napi::Value(Napi::Env)> resolve = nullptr, MappedFaults faults = MappedFaults::Check)
      : Napi::AsyncWorker(env, "engram-kernels"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), keep_(std::move(keep)), resolve_(std::move(resolve)), faults_(faults) {}

  Napi::Promise promise() const { return deferred_.Promise(); }
  void copyLateInputs() { keep_.copyLateInputs(); }

 protected:
  // No N-API in Execute: errors are stored and settled on the main thread.
  void Execute() override {
    try {
      const MappedReadGuard guard;
      const uint64_t faultsBefore = mappedFaultCount();
      work_();
      if (faults_ == MappedFaults::Check) throwIfMappingsFaulted(faultsBefore);
    } catch (const EngramError& e) {
      failed_ = true;
      kind_ = e.kind();
      message_ = e.what();
    } catch (const std::exception& e) {
      failed_ = true;
      message_ = e.what();
    } catch (...) {
      failed_ = true;
      message_ = "unknown native error";
    }
  }
  void OnOK() override {
    if (failed_) {
      deferred_.Reject(makeJsError(Env(), kind_, message_).Value());
      return;
    }
    const std::string lost = keep_.writeBack(Env());
    if (!lost.empty()) {
      deferred_.Reject(makeJsError(Env(), ErrorKind::Error, lost).Value());
    } else if (resolve_) {
      try {
        deferred_.Resolve(resolve_(Env()));
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
      }
    } else {
      deferred_.Resolve(Env().Undefined());
    }
  }
  // A worker thread terminated while this work ran still gets its completion, but its
  // environment can no longer run JS: every N-API call fails there, and with C++
  // exceptions on, the failure escapes node-addon-api's own completion (std::terminate,
  // the whole process aborts). The promise can never be observed then, so settling is
  // attempted and any failure swallowed; the native state is freed either way.
  void OnWorkComplete(Napi::Env env, napi_status status) override {
    if (status != napi_cancelled) {
      napi_handle_scope scope = nullptr;
      if (napi_open_handle_scope(env, &scope) == napi_ok) {
        try {
          OnOK();  // Execute keeps its own errors (never SetError), so OnOK settles both ways
        } catch (const Napi::Error& e) {
          try {
            deferred_.Reject(e.Value());  // a live environment still learns what failed
          } catch (...) {
          }
        } catch (...) {
          // The environment is going away; nobody is left to tell.
        }
        napi_close_handle_scope(env, scope);
      }
    }
    Destroy();
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  CallHold keep_;
  std::function<Napi::Value(Napi::Env)> resolve_;
  MappedFaults faults_;
  bool failed_ = false;
  ErrorKind kind_ = ErrorKind::Error;
  std::string message_;
};

}  // namespace

Napi::Value runAsync(const Napi::Env& env, std::function<void()> work, CallHold hold, MappedFaults faults) {
  auto* worker = new CallableWorker(env, std::move(work), std::move(hold), nullptr, faults);
  Napi::Promise p = worker->promise();
  worker->Queue();
  worker->copyLateInputs();  // the worker cannot complete (OnOK) before this returns to JS
  return p;
}

Napi::Value runAsync(const Napi::Env& env, std::function<void()> work, CallHold hold,
                     std::function<Napi::Value(Napi::Env)> resolve) {
  auto* worker = new CallableWorker(env, std::move(work), std::move(hold), std::move(resolve));
  Napi::Promise p = worker->promise();
  worker->Queue();
  worker->copyLateInputs();
  return p;
}

void runSync(const Napi::Env& env, const std::function<void()>& work, MappedFaults faults) {
  try {
    const MappedReadGuard guard;
    const uint64_t faultsBefore = mappedFaultCount();
    work();
    if (faults == MappedFaults::Check) throwIfMappingsFaulted(faultsBefore);
  } catch (const EngramError& e) {
    throwJs(env, e.kind(), e.what());
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throwJs(env, ErrorKind::Error, e.what());
  }
}

AddonState& addonState(const Napi::Env& env) { return *env.GetInstanceData<AddonState>(); }

const napi_type_tag& handleTag(HandleKind kind) {
  // "engram" in the upper half, the kind in the lower: distinct from any other addon's.
  static const napi_type_tag tags[] = {
      {0x656e6772616d0000ull, 0x68616e646c650001ull}, {0x656e6772616d0000ull, 0x68616e646c650002ull},
      {0x656e6772616d0000ull, 0x68616e646c650003ull}, {0x656e6772616d0000ull, 0x68616e646c650004ull},
      {0x656e6772616d0000ull, 0x68616e646c650005ull}, {0x656e6772616d0000ull, 0x68616e646c650006ull},
  };
  return tags[static_cast<int>(kind)];
}

std::string describeHandleValue(const Napi::Value& v) {
  static const std::pair<HandleKind, const char*> names[] = {
      {HandleKind::MappedFile, "a mapped file handle"},
      {HandleKind::Pager, "a pager handle"},
      {HandleKind::PackedLinear, "a packed projection handle"},
      {HandleKind::EngramDeviceWeights, "an Engram layer's device weights handle"},
      {HandleKind::V41DeviceWeights, "a V4.1 layer's device weights handle"},
      {HandleKind::MoeDeviceWeights, "an MoE block's device weights handle"},
  };
  if (v.IsExternal()) {
    const auto ext = v.As<Napi::External<void>>();
    for (const auto& [kind, name] : names) {
      if (ext.CheckTypeTag(&handleTag(kind))) return name;
    }
    return "a foreign native handle";
  }
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) return "a number";
  if (v.IsString()) return "a string";
  if (v.IsBoolean()) return "a boolean";
  if (v.IsArrayBuffer() || v.IsTypedArray()) return "a buffer";
  if (v.IsFunction()) return "a function";
  return "an object";
}

}  // namespace engram
