#include "binding/owned_buffers.hpp"

#include <map>
#include <mutex>

namespace engram {

namespace {

struct Registration {
  uint64_t id;
  size_t bytes;
  OwnedMemory owner;
};

// Keyed by the ArrayBuffer's first byte. Two views of one mapping may start at the same
// byte (each holds the same owner), hence a multimap and an id per registration.
class OwnedRegistry {
 public:
  uint64_t add(const void* data, size_t bytes, OwnedMemory owner) {
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t id = ++lastId_;
    entries_.emplace(reinterpret_cast<uintptr_t>(data), Registration{id, bytes, std::move(owner)});
    return id;
  }
  // The registry's share, handed to the caller so that the memory is freed (possibly
  // now) outside the lock.
  OwnedMemory remove(const void* data, uint64_t id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto [first, last] = entries_.equal_range(reinterpret_cast<uintptr_t>(data));
    for (auto it = first; it != last; ++it) {
      if (it->second.id != id) continue;
      OwnedMemory owner = std::move(it->second.owner);
      entries_.erase(it);
      return owner;
    }
    return nullptr;
  }
  OwnedMemory find(const void* data, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto [first, last] = entries_.equal_range(reinterpret_cast<uintptr_t>(data));
    for (auto it = first; it != last; ++it) {
      if (it->second.bytes == bytes) return it->second.owner;
    }
    return nullptr;
  }

 private:
  std::mutex mutex_;
  std::multimap<uintptr_t, Registration> entries_;
  uint64_t lastId_ = 0;
};

OwnedRegistry& registry() {
  static OwnedRegistry* r = new OwnedRegistry();  // never destroyed: finalizers may run after static teardown
  return *r;
}

struct FinalizeHint {
  uint64_t id;
};

}  // namespace

Napi::ArrayBuffer newOwnedArrayBuffer(const Napi::Env& env, void* data, size_t bytes, OwnedMemory owner) {
  auto* hint = new FinalizeHint{registry().add(data, bytes, std::move(owner))};
  // No AdjustExternalMemory here: V8 already counts every ArrayBuffer's length, external
  // ones included, as external memory (its ArrayBufferSweeper does, when the buffer is
  // attached). Reporting it again doubled the GC pressure of fresh outputs: a loop of
  // 2 MiB hash outputs ran 38 full GCs where 24 were due.
  // The finalizer runs on the thread of whichever environment holds the buffer last (a
  // worker's, after a transfer): it only drops the registry's share.
  return Napi::ArrayBuffer::New(
      env, data, bytes,
      [](Napi::Env, void* p, FinalizeHint* h) {
        OwnedMemory last = registry().remove(p, h->id);
        delete h;
        last.reset();  // frees the memory unless a call in flight still holds it
      },
      hint);
}

OwnedMemory ownedBufferPin(const void* data, size_t bytes) { return registry().find(data, bytes); }

}  // namespace engram
