// Software prefetch of one cache line, shared by the gathers and the random-row yardstick.
#pragma once
#include <cstdint>

namespace engram {

// Requests the cache line at p. An asm statement, not __builtin_prefetch: a loop that
// only prefetches has no effect the compiler must keep, and GCC deletes it.
inline void prefetchLine(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p);
#endif
}

// Random rows are requested this many rows ahead of the one read, a group at a time: on
// the CPUs measured here, a request per row read queued behind the misses in flight and
// read 2.6x slower.
constexpr int64_t kPrefetchAheadRows = 96;
constexpr int64_t kPrefetchGroupRows = 24;

}  // namespace engram
