// Memory of large outputs and staging copies, recycled: a fresh buffer's first write
// faults its pages in 4 KiB at a time (a 64 MB Float32Array costs 16k faults, 3-10 us
// each on a VM); a recycled one is already mapped.
#pragma once
#include <cstddef>
#include <cstdint>

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

// Where the pool's memory came from so far: fresh maps by kind of page, with the seconds
// spent populating them, and the recent cost per MiB of each kind (-1: not tried yet).
struct FreshMemoryStats {
  uint64_t hugeMaps = 0;
  uint64_t smallMaps = 0;
  uint64_t freshBytes = 0;
  double hugeSeconds = 0;
  double smallSeconds = 0;
  double hugeNsPerMiB = -1;
  double smallNsPerMiB = -1;
  uint64_t recycled = 0;
};
FreshMemoryStats freshMemoryStats();

}  // namespace engram
