// Glue shared by the binding files: argument readers that re-check what TypeScript already
// validated (C++ never trusts a pointer or a length it was not promised), error
// conversion, and one generic async worker.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/common.hpp"
#include "common/input_latch.hpp"
#include "common/thread_pool.hpp"
#include "binding/owned_buffers.hpp"

namespace engram {

// Per-instance state of the addon (no process-wide globals).
struct AddonState {
  ThreadPool pool{hardwareThreads() - 1};
};

AddonState& addonState(const Napi::Env& env);

// Throws a JS error of the class the C++ error names.
[[noreturn]] void throwJs(const Napi::Env& env, ErrorKind kind, const std::string& message);
Napi::Error makeJsError(const Napi::Env& env, ErrorKind kind, const std::string& message);

Napi::Object argObject(const Napi::CallbackInfo& info);
int64_t intField(const Napi::Object& o, const char* name, int64_t min, int64_t max);
// A finite number in [min, max]: NaN, infinities and non-numbers are refused (TS checks
// first; this is the check where the value is used).
double floatField(const Napi::Object& o, const char* name, double min, double max);
bool boolField(const Napi::Object& o, const char* name, bool fallback);
std::string stringField(const Napi::Object& o, const char* name, const std::string& fallback);

// What an async call holds so that none of its memory can go away under the worker.
// JS can detach any plain ArrayBuffer while the call runs (postMessage or structuredClone
// with a transfer list, ArrayBuffer.prototype.transfer), and N-API cannot prevent it, so
// a worker never touches memory JS owns:
// - memory the addon owns (owned_buffers.hpp: pool outputs, mappings, allocateOwned) is
//   pinned: the call holds a share of it, at no copy;
// - a SharedArrayBuffer cannot be detached: referencing it is enough;
// - any other typed array is staged: copied into native memory at call time, and, when the
//   call writes it, copied back when the call completes, if it is still attached there.
// Table regions (bufferRegion) are never staged: TypeScript marks a JS-owned table's
// buffer untransferable when the table is made (see EngramTable).
class CallHold {
 public:
  CallHold() = default;
  CallHold(CallHold&&) = default;
  CallHold& operator=(CallHold&&) = default;

  void reference(const Napi::Value& v) { refs_.push_back(Napi::Persistent(v)); }
  void pin(OwnedMemory share) { pins_.push_back(std::move(share)); }
  // A native copy of `bytes` bytes at `user` (typed array `v`, field `name`), for the
  // worker to use instead; written back on completion when `writes`.
  // late: the copy is made by copyLateInputs() after the worker is queued, and the worker
  // waits on lateInputs() before reading it (it runs the work that does not need it
  // meanwhile: a prefill's hidden states are megabytes, and copying them first cost
  // 2-3% of the paper layer's forward).
  uint8_t* stage(const Napi::Value& v, const char* name, uint8_t* user, size_t bytes, bool writes, bool late = false);
  // The latch the worker waits on, or nullptr when no input was staged late.
  const InputLatch* lateInputs() const { return lateLatch_.get(); }
  // Makes the late copies and opens the latch (the JS thread, right after queueing).
  void copyLateInputs();
  // Copies written stages back into their typed arrays. Returns "" or, when a written
  // array was detached (or resized) meanwhile, a message naming it; its result is then
  // discarded, the others are still written.
  std::string writeBack(const Napi::Env& env);

 private:
  struct Staged {
    std::string name;
    Napi::Reference<Napi::Value> target;
    uint8_t* user;
    size_t bytes;
    std::unique_ptr<uint8_t, std::function<void(uint8_t*)>> copy;
    bool writes;
    bool late;
  };
  std::vector<Napi::Reference<Napi::Value>> refs_;
  std::vector<OwnedMemory> pins_;
  std::vector<Staged> staged_;
  std::unique_ptr<InputLatch> lateLatch_;  // a stable address across moves of the hold
};
using Keep = CallHold;

// Bytes staged (copied in at call time) by async calls in this process, for tests and
// benchmarks of what the copies cost.
uint64_t stagedBytesTotal();
// Nanoseconds they spent allocating those copies, copying in and copying results back.
uint64_t stagingNanosTotal();
// The part of it spent on late copies (CallHold::copyLateInputs), which overlap the work.
uint64_t lateStagingNanosTotal();

// Whether the native call reads a typed array only, or (also) writes it.
// ReadLater: read only after the worker waits on the hold's lateInputs() (see CallHold).
enum class Access { Read, Write, ReadLater };

// A typed array field of exactly `expected` elements (or any length if expected < 0).
// Absent/null gives nullptr when optional. With `hold` (an async call), the pointer is
// one the worker may use until the call completes (see CallHold).
template <typename T>
T* typedField(const Napi::Object& o, const char* name, napi_typedarray_type type, int64_t expected,
              bool optional, CallHold* hold = nullptr, Access access = Access::Read);

// The first element of `a` (SharedArrayBuffer-backed arrays included); a TypeError naming
// `name` when its buffer is detached.
uint8_t* typedArrayBytes(const Napi::TypedArray& a, const char* name);

// A mapped file handle's bytes (file_map.cpp); false if `v` is not one.
bool mappedRegion(const Napi::Value& v, uint8_t** base, size_t* size);

// `bytes` bytes of the ArrayBuffer (or mapped file handle) field `name`, starting at the integer field
// `offsetName` (regions may exceed what a typed array can view). Absent gives nullptr
// when optional.
uint8_t* bufferRegion(const Napi::Object& o, const char* name, const char* offsetName, int64_t bytes, bool optional,
                      CallHold* hold = nullptr);

// Native objects JS holds as opaque handles (Napi::External<T>). Every kind carries its
// own type tag, so a handle of one kind passed where another is expected is a TypeError
// naming both, never a struct read as the wrong type.
enum class HandleKind { MappedFile, Pager, PackedLinear, EngramDeviceWeights, V41DeviceWeights, MoeDeviceWeights };
const napi_type_tag& handleTag(HandleKind kind);
// What `v` is, in words, for errors: "a pager handle", "a number", ...
std::string describeHandleValue(const Napi::Value& v);

// Wraps `value` (heap-allocated; deleted when JS collects the handle) as a tagged handle.
template <typename T>
Napi::External<T> makeHandle(const Napi::Env& env, HandleKind kind, T* value, int64_t externalBytes = 0) {
  // Host memory the handle owns is reported to V8, so that a dropped handle (a model
  // loaded again, say) is collected before the process runs out of memory rather than
  // whenever the JS heap itself happens to fill.
  if (externalBytes > 0) Napi::MemoryManagement::AdjustExternalMemory(env, externalBytes);
  auto ext = Napi::External<T>::New(env, value, [externalBytes](Napi::Env finalizing, T* h) {
    delete h;
    if (externalBytes > 0) Napi::MemoryManagement::AdjustExternalMemory(finalizing, -externalBytes);
  });
  ext.TypeTag(&handleTag(kind));
  return ext;
}

// The T behind a handle of `kind`, or nullptr when `v` is anything else.
template <typename T>
T* handleData(const Napi::Value& v, HandleKind kind) {
  if (!v.IsExternal()) return nullptr;
  auto ext = v.As<Napi::External<T>>();
  return ext.CheckTypeTag(&handleTag(kind)) ? ext.Data() : nullptr;
}

// As handleData, but a TypeError ("<what> must be <expected>, got a pager handle") otherwise.
template <typename T>
T& requireHandle(const Napi::Env& env, const Napi::Value& v, HandleKind kind, const std::string& what, const std::string& expected) {
  T* data = handleData<T>(v, kind);
  if (data == nullptr) throwJs(env, ErrorKind::TypeError, what + " must be " + expected + ", got " + describeHandleValue(v));
  return *data;
}

// Whether the work's result is discarded when a memory-mapped file faulted while it ran
// (common/mapped_guard.hpp). Skip is for bookkeeping that reads no mapped memory and whose
// effects must not be lost to a fault elsewhere (the pager's tickets: a failed copy job
// fails its own ticket's wait).
enum class MappedFaults { Check, Skip };

// Runs `work` on libuv's pool and settles a promise; std::exception becomes the matching
// JS error, anything else a plain Error. The typed arrays in keepAlive stay referenced
// until the promise settles; staged copies are written back before it resolves.
Napi::Value runAsync(const Napi::Env& env, std::function<void()> work, CallHold hold, MappedFaults faults = MappedFaults::Check);

// As runAsync, the promise resolving with resolve(env), made on the main thread once
// `work` is done (a handle to what the work built, say).
Napi::Value runAsync(const Napi::Env& env, std::function<void()> work, CallHold hold,
                     std::function<Napi::Value(Napi::Env)> resolve);

// Runs `work` now, converting C++ exceptions to JS errors.
void runSync(const Napi::Env& env, const std::function<void()>& work, MappedFaults faults = MappedFaults::Check);

}  // namespace engram
