// Memory of large outputs and staging copies, recycled: a fresh buffer's first write
// faults its pages in 4 KiB at a time (a 64 MB Float32Array costs 16k faults, 3-10 us
// each on a VM); a recycled one is already mapped.
#pragma once
#include <cstddef>

namespace engram {

struct PooledMemory {
  void* data = nullptr;  // nullptr: the outstanding cap is reached (use other memory)
  size_t mapped = 0;     // what to give back: bytes rounded up to the pool's granule
  bool recycled = false; // false: fresh zero pages; true: whatever the last user left
};

// At least `bytes` bytes (bytes > 0). Throws a RangeError when the system refuses memory.
// capped: refused (data nullptr) past the outstanding cap, for memory whose return waits
// on JS's finalizers; a call's staging copies come back when the call ends and pass
// uncapped.
// staging: an async call's copy of JS memory, kept apart from outputs. Outputs live as
// long as JS holds them (until a GC and a turn of the event loop), so if the two shared
// one free list, each call's staging block would go to the next call's output and the
// next staging copy would fault fresh pages in (16 MB: 6 ms instead of 0.7).
PooledMemory takePooled(size_t bytes, bool capped = true, bool staging = false);
void givePooled(void* data, size_t mapped, bool staging = false);

}  // namespace engram
