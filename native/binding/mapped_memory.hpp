// Native memory JS holds by handle (file_map.cpp): a mapped file, or anonymous memory
// such as a pager's cache. Kernels take the handle wherever they take an ArrayBuffer.
#pragma once
#include <sys/mman.h>

#include <memory>

#include "binding/napi_util.hpp"
#include "common/mapped_guard.hpp"

namespace engram {

struct MappedFile {
  void* base = nullptr;
  size_t size = 0;
  bool anonymous = false;  // process memory (a cache, a copied table), not a file's pages
  ~MappedFile() {
    if (base == nullptr) return;
    unregisterFileMapping(base);  // no-op for anonymous memory
    ::munmap(base, size);
  }
};
using MappedHandle = std::shared_ptr<MappedFile>;

// The handle JS sees (type-tagged External).
Napi::Value wrapMapping(const Napi::Env& env, MappedHandle mapped);
// Zero-filled memory, reserved lazily (touched pages only), huge pages where allowed.
MappedHandle mapAnonymous(size_t bytes);

}  // namespace engram
