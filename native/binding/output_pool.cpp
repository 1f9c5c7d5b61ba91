#include "binding/output_pool.hpp"

#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
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
// kPoolBytes wait here (the rest goes back to the system).
//
// Recycling needs a turn of the event loop (Node runs the finalizers from there), so a
// synchronous loop gets fresh memory every call. Fresh memory is therefore mapped 2 MiB
// aligned, advised for transparent huge pages and populated in one system call
// (MADV_POPULATE_WRITE): one fault per 2 MiB instead of 512, and no trap per page. Huge
// pages are not always cheaper: when free 2 MiB blocks run short the kernel compacts
// memory synchronously, and on some VMs the host backs a guest's untouched memory on
// first use (an earlier VM took 4.5 ms per fresh huge page against 0.9 ms for 512 small
// ones). So the pool times every populate and keeps whichever kind has cost less per
// byte lately, trying the other now and then (see FreshMemoryCost).
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

// Which kind of fresh page has cost less lately: an average of the nanoseconds per MiB
// that populating each kind took, over the last few maps of that kind. The other kind is
// tried every kExploreEvery-th map, so a change (free huge pages running out, or coming
// back after memory was returned) is noticed.
class FreshMemoryCost {
 public:
  static constexpr uint64_t kExploreEvery = 32;
  bool preferHuge() {
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t n = maps_++;
    if (smallNsPerMiB_ < 0) return false;  // small pages first: no compaction stall to risk
    if (hugeNsPerMiB_ < 0) return true;
    const bool cheaperHuge = hugeNsPerMiB_ <= smallNsPerMiB_;
    return n % kExploreEvery == kExploreEvery - 1 ? !cheaperHuge : cheaperHuge;
  }
  void record(bool huge, size_t bytes, uint64_t nanos) {
    std::lock_guard<std::mutex> lock(mutex_);
    const double perMiB = static_cast<double>(nanos) / (static_cast<double>(bytes) / (1 << 20));
    double& average = huge ? hugeNsPerMiB_ : smallNsPerMiB_;
    average = average < 0 ? perMiB : 0.75 * average + 0.25 * perMiB;
    (huge ? hugeMaps_ : smallMaps_)++;
    (huge ? hugeNanos_ : smallNanos_) += nanos;
    freshBytes_ += bytes;
  }
  FreshMemoryStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return FreshMemoryStats{hugeMaps_, smallMaps_, freshBytes_, static_cast<double>(hugeNanos_) * 1e-9,
                            static_cast<double>(smallNanos_) * 1e-9, hugeNsPerMiB_, smallNsPerMiB_};
  }

 private:
  std::mutex mutex_;
  uint64_t maps_ = 0;
  double hugeNsPerMiB_ = -1;
  double smallNsPerMiB_ = -1;
  uint64_t hugeMaps_ = 0, smallMaps_ = 0, freshBytes_ = 0, hugeNanos_ = 0, smallNanos_ = 0;
};

FreshMemoryCost& freshMemoryCost() {
  static FreshMemoryCost* cost = new FreshMemoryCost();
  return *cost;
}

std::atomic<uint64_t> recycledTakes{0};

constexpr size_t kHugePage = size_t{2} << 20;

// `bytes` (a multiple of 2 MiB) of zeroed memory, 2 MiB aligned, every page already
// faulted in. nullptr with errno set when the system refuses.
void* mapFresh(size_t bytes) {
  // Over-map by one huge page and trim, so that the region starts on a 2 MiB boundary
  // (a huge page can only back an aligned 2 MiB range).
  char* raw = static_cast<char*>(::mmap(nullptr, bytes + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (raw == MAP_FAILED) return nullptr;
  char* base = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + kHugePage - 1) & ~uintptr_t{kHugePage - 1});
  if (base > raw) ::munmap(raw, static_cast<size_t>(base - raw));
  char* end = base + bytes;
  if (raw + bytes + kHugePage > end) ::munmap(end, static_cast<size_t>(raw + bytes + kHugePage - end));

  const bool huge = freshMemoryCost().preferHuge();
  const auto start = std::chrono::steady_clock::now();
#ifdef MADV_HUGEPAGE
  if (huge) ::madvise(base, bytes, MADV_HUGEPAGE);  // best effort: "never" mode ignores it
#endif
  bool populated = false;
#ifdef MADV_POPULATE_WRITE
  if (::madvise(base, bytes, MADV_POPULATE_WRITE) == 0) {
    populated = true;
  } else if (errno == ENOMEM || errno == EFAULT || errno == EHWPOISON) {
    const int err = errno;
    ::munmap(base, bytes);
    errno = err;
    return nullptr;
  }
#endif
  if (!populated) {
    // Kernels before 5.14: one write per small page (zero, as the page already reads).
    for (size_t off = 0; off < bytes; off += 4096) static_cast<volatile char*>(base)[off] = 0;
  }
  const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
  freshMemoryCost().record(huge, bytes, static_cast<uint64_t>(nanos));
  return base;
}

}  // namespace

PooledMemory takePooled(size_t bytes, bool capped, bool staging) {
  PooledMemory m;
  m.mapped = (bytes + OutputPool::kGranule - 1) / OutputPool::kGranule * OutputPool::kGranule;
  if (!outputPool().admit(m.mapped, capped)) return PooledMemory{};
  m.data = outputPool().take(m.mapped, staging);
  m.recycled = m.data != nullptr;
  if (m.recycled) recycledTakes.fetch_add(1, std::memory_order_relaxed);
  if (m.data == nullptr) {
    void* fresh = mapFresh(m.mapped);
    if (fresh == nullptr) {
      const int err = errno;
      outputPool().unadmit(m.mapped);
      EK_THROW(RangeError, std::to_string(bytes) + " bytes: " + std::strerror(err));
    }
    m.data = fresh;
  }
  return m;
}

void givePooled(void* data, size_t mapped, bool staging) { outputPool().give(data, mapped, staging); }

FreshMemoryStats freshMemoryStats() {
  FreshMemoryStats s = freshMemoryCost().stats();
  s.recycled = recycledTakes.load(std::memory_order_relaxed);
  return s;
}

}  // namespace engram
