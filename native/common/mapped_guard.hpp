// Files that shrink while they are mapped. Reading a page of a private file mapping past
// the file's new end raises SIGBUS, which would kill the process. While native work reads
// mapped memory (a ReadGuard is alive on the thread), a SIGBUS at an address inside a
// registered file mapping is absorbed: the handler maps a zero page over the faulting
// page, counts the fault and returns, so the work runs to its end on zeros. The work's
// owner then calls faultedMappings(): a fault since the work began means the result is
// discarded and a clear error names the file; the truncated tail is mapped from the file
// again, so a later read faults (and is caught) again instead of reading stale zeros.
//
// Why not siglongjmp out of the fault, as the classic recipe does: the faulting reads run
// inside thread-pool tasks and the pager's copy thread, between C++ objects with
// destructors and under locks; jumping out would skip both. Absorbing the fault and
// discarding the result afterwards needs no jump, and a fault on a thread with no guard
// (JS reading a view of the mapping, say) goes to the previous handler exactly as before.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace engram {

// Registers a private file mapping [base, base + size) of `path`; `fd` (owned from now on,
// closed at unregister) is kept to map the tail again after a fault. Installs the SIGBUS
// handler on first use. Without a free slot the mapping stays unguarded (as before).
void registerFileMapping(void* base, size_t size, int fd, const std::string& path);
// Before munmap. Unknown bases are ignored.
void unregisterFileMapping(void* base);

// While one is alive on a thread, faults there in registered mappings are absorbed.
class MappedReadGuard {
 public:
  MappedReadGuard();
  ~MappedReadGuard();
  MappedReadGuard(const MappedReadGuard&) = delete;
  MappedReadGuard& operator=(const MappedReadGuard&) = delete;
};

// Faults absorbed so far, process-wide (monotonic): read before the work starts.
uint64_t mappedFaultCount();

// The files whose mappings faulted since mappedFaultCount() returned `before` (empty when
// none did), after mapping their truncated tails from the files again.
std::vector<std::string> faultedMappings(uint64_t before);

// The error message for those files.
std::string shrunkFilesMessage(const std::vector<std::string>& paths);

// Throws an Error naming the files when any mapping faulted since `before`.
void throwIfMappingsFaulted(uint64_t before);

}  // namespace engram
