#include "binding/output_pool.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "common/common.hpp"

namespace engram {

namespace {

// Memory of large outputs that JS has let go, kept for the next call's output: a fresh
// buffer's first write faults its pages in 4 KiB at a time (a 64 MB Float32Array costs
// 16k faults, 3-10 us each on a VM), a recycled one is already mapped and only zeroed.
// Sizes are rounded to 2 MiB so that a loop's same-shape outputs find each other; at most
// kPoolBytes wait here (the rest goes back to the system). Transparent huge pages were
// measured and left out: once free huge pages run short, each fault compacts memory
// synchronously and a fresh 64 MB output took 140 ms instead of 26. Advising only while
// /proc/buddyinfo showed free 2 MiB blocks was tried too: on this VM a fresh huge page
// still cost 4.5 ms per 2 MiB against 0.9 for 512 small pages (the host backs the guest's
// untouched memory on first use), so hashing into fresh outputs ran 4.5x slower.
class OutputPool {
 public:
  static constexpr size_t kGranule = size_t{2} << 20;
  static constexpr size_t kPoolBytes = size_t{1} << 30;

  void* take(size_t bytes, bool staging) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::multimap<size_t, void*>& list = staging ? freeStaging_ : free_;
    const auto it = list.find(bytes);
    if (it == list.end()) return nullptr;
    void* p = it->second;
    list.erase(it);
    pooled_ -= bytes;
    return p;
  }
  // Outputs handed out and not yet finalized. Node runs these finalizers from the event
  // loop, not during GC: a synchronous loop (a decode loop, a batch job) never lets them
  // run, so nothing comes back until it yields. Past kOutstandingBytes the outputs are
  // plain V8 ArrayBuffers, which GC frees by itself: memory stays bounded either way.
  static constexpr size_t kOutstandingBytes = size_t{512} << 20;
  bool admit(size_t bytes, bool capped) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (capped && outstanding_ + bytes > kOutstandingBytes) return false;
    outstanding_ += bytes;
    return true;
  }
  void unadmit(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    outstanding_ -= bytes;
  }
  void give(void* p, size_t bytes, bool staging) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      outstanding_ -= bytes;
      if (pooled_ + bytes <= kPoolBytes) {
        (staging ? freeStaging_ : free_).emplace(bytes, p);
        pooled_ += bytes;
        return;
      }
    }
    ::munmap(p, bytes);
  }

 private:
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  std::multimap<size_t, void*> freeStaging_;
  size_t pooled_ = 0;
  size_t outstanding_ = 0;
};

OutputPool& outputPool() {
  static OutputPool* pool = new OutputPool();  // never destroyed: finalizers may run after static teardown
  return *pool;
}

}  // namespace

PooledMemory takePooled(size_t bytes, bool capped, bool staging) {
  PooledMemory m;
  m.mapped = (bytes + OutputPool::kGranule - 1) / OutputPool::kGranule * OutputPool::kGranule;
  if (!outputPool().admit(m.mapped, capped)) return PooledMemory{};
  m.data = outputPool().take(m.mapped, staging);
  m.recycled = m.data != nullptr;
  if (m.data == nullptr) {
    void* fresh = ::mmap(nullptr, m.mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fresh == MAP_FAILED) {
      const int err = errno;
      outputPool().unadmit(m.mapped);
      EK_THROW(RangeError, std::to_string(bytes) + " bytes: " + std::strerror(err));
    }
    m.data = fresh;
  }
  return m;
}

void givePooled(void* data, size_t mapped, bool staging) { outputPool().give(data, mapped, staging); }

}  // namespace engram
