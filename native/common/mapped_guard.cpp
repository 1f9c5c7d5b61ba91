// See mapped_guard.hpp. The handler touches only lock-free atomics, pthread_self() and
// the mmap syscall; everything with locks or allocation (paths, fds, the tail
// re-mapping) happens on the reader's side, after the work.
#include "common/mapped_guard.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>

#include "common/common.hpp"

namespace engram {

namespace {

// Enough for every shard of several checkpoints; a mapping past this many is unguarded.
constexpr int kSlots = 4096;

struct Slot {
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<uint64_t> lastFault{0};  // value of gFaults after this slot's latest fault
};

struct SlotInfo {
  std::string path;
  int fd = -1;
  size_t size = 0;
};

Slot gSlots[kSlots];
SlotInfo gInfo[kSlots];        // under gMutex
std::atomic<int> gUsed{0};     // slots [0, gUsed) may be live: the handler scans these
std::atomic<uint64_t> gFaults{0};
std::mutex gMutex;
struct sigaction gPrevious {};
size_t gPageSize = 4096;

// The threads inside a MappedReadGuard, by pthread id. The handler cannot read a
// thread_local of a dlopen'ed library safely (that may call __tls_get_addr, which may
// allocate), and Node leaves no static TLS room for initial-exec variables; so the guarded
// threads are published here and the handler compares pthread_self() against them.
constexpr int kThreads = 1024;
std::atomic<pthread_t> gGuarded[kThreads];  // a thread's slot, kept for its life
std::atomic<int> gActive[kThreads];         // 1 while that thread is inside a guard
std::atomic<int> gGuardedUsed{0};

// A thread takes a slot at its first guard and gives it back when it exits, so a guard
// on a thread that had one before costs two plain stores.
struct ThreadSlot {
  int index = -1;
  ~ThreadSlot() {
    if (index < 0) return;
    gActive[index].store(0, std::memory_order_release);
    gGuarded[index].store(pthread_t{}, std::memory_order_release);
  }
};
thread_local ThreadSlot tSlot;
thread_local int tGuardDepth = 0;

int takeThreadSlot() {
  const pthread_t self = ::pthread_self();
  for (int i = 0; i < kThreads; ++i) {
    pthread_t none{};
    if (!gGuarded[i].compare_exchange_strong(none, self, std::memory_order_acq_rel)) continue;
    int used = gGuardedUsed.load(std::memory_order_acquire);
    while (used < i + 1 && !gGuardedUsed.compare_exchange_weak(used, i + 1, std::memory_order_acq_rel)) {
    }
    return i;
  }
  return -1;  // more than kThreads threads at once: this one reads unguarded (as before)
}

bool threadIsGuarded() {
  const pthread_t self = ::pthread_self();
  const int used = gGuardedUsed.load(std::memory_order_acquire);
  for (int i = 0; i < used; ++i) {
    if (gActive[i].load(std::memory_order_acquire) != 0 && gGuarded[i].load(std::memory_order_acquire) == self) return true;
  }
  return false;
}

void chainToPrevious(int sig, siginfo_t* info, void* context) {
  if ((gPrevious.sa_flags & SA_SIGINFO) != 0 && gPrevious.sa_sigaction != nullptr) {
    gPrevious.sa_sigaction(sig, info, context);
    return;
  }
  if (gPrevious.sa_handler != SIG_DFL && gPrevious.sa_handler != SIG_IGN && gPrevious.sa_handler != nullptr) {
    gPrevious.sa_handler(sig);
    return;
  }
  // Default action: restore it; the faulting instruction runs again and the process dies
  // of SIGBUS exactly as it would have without this handler (a sent signal is re-raised).
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(SIGBUS, &dfl, nullptr);
  if (info == nullptr || info->si_code <= 0) ::raise(sig);
}

void onSigbus(int sig, siginfo_t* info, void* context) {
  const int savedErrno = errno;
  if (info != nullptr && info->si_code > 0 && threadIsGuarded()) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
    const int used = gUsed.load(std::memory_order_acquire);
    for (int i = 0; i < used; ++i) {
      const uintptr_t b = gSlots[i].begin.load(std::memory_order_acquire);
      if (b == 0 || addr < b || addr >= gSlots[i].end.load(std::memory_order_acquire)) continue;
      void* page = reinterpret_cast<void*>(addr & ~static_cast<uintptr_t>(gPageSize - 1));
      if (::mmap(page, gPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
        gSlots[i].lastFault.store(gFaults.fetch_add(1, std::memory_order_acq_rel) + 1, std::memory_order_release);
        errno = savedErrno;
        return;  // the read runs again, on zeros; the reader discards its result
      }
      break;
    }
  }
  errno = savedErrno;
  chainToPrevious(sig, info, context);
}

void installHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    const long page = ::sysconf(_SC_PAGESIZE);
    if (page > 0) gPageSize = static_cast<size_t>(page);
    struct sigaction action {};
    action.sa_sigaction = onSigbus;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGBUS, &action, &gPrevious);
  });
}

// Maps [new end of file, end of mapping) from the file again (page-aligned), so reads
// there fault again rather than see the zero pages the handler put in.
void remapTail(int i) {
  const SlotInfo& s = gInfo[i];
  struct stat st {};
  if (s.fd < 0 || ::fstat(s.fd, &st) != 0) return;
  const size_t fileSize = std::min(static_cast<size_t>(st.st_size), s.size);
  const size_t from = fileSize & ~(gPageSize - 1);
  if (from >= s.size) return;
  auto* base = reinterpret_cast<uint8_t*>(gSlots[i].begin.load(std::memory_order_acquire));
  if (base == nullptr) return;
  if (::mmap(base + from, s.size - from, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE | MAP_FIXED, s.fd, static_cast<off_t>(from)) != MAP_FAILED) {
    ::madvise(base + from, s.size - from, MADV_RANDOM);
  }
}

}  // namespace

void registerFileMapping(void* base, size_t size, int fd, const std::string& path) {
  installHandler();
  std::lock_guard<std::mutex> lock(gMutex);
  const int used = gUsed.load(std::memory_order_relaxed);
  int slot = -1;
  for (int i = 0; i < used && slot < 0; ++i) {
    if (gSlots[i].begin.load(std::memory_order_relaxed) == 0) slot = i;
  }
  if (slot < 0 && used < kSlots) slot = used;
  if (slot < 0) {
    ::close(fd);  // unguarded: a truncation would kill the process, as it did before
    return;
  }
  gInfo[slot] = SlotInfo{path, fd, size};
  gSlots[slot].lastFault.store(0, std::memory_order_relaxed);
  gSlots[slot].end.store(reinterpret_cast<uintptr_t>(base) + size, std::memory_order_release);
  gSlots[slot].begin.store(reinterpret_cast<uintptr_t>(base), std::memory_order_release);
  if (slot == used) gUsed.store(used + 1, std::memory_order_release);
}

void unregisterFileMapping(void* base) {
  if (base == nullptr) return;
  std::lock_guard<std::mutex> lock(gMutex);
  const int used = gUsed.load(std::memory_order_relaxed);
  for (int i = 0; i < used; ++i) {
    if (gSlots[i].begin.load(std::memory_order_relaxed) != reinterpret_cast<uintptr_t>(base)) continue;
    gSlots[i].begin.store(0, std::memory_order_release);
    gSlots[i].end.store(0, std::memory_order_release);
    if (gInfo[i].fd >= 0) ::close(gInfo[i].fd);
    gInfo[i] = SlotInfo{};
    return;
  }
}

MappedReadGuard::MappedReadGuard() {
  if (tGuardDepth++ > 0) return;
  if (tSlot.index < 0) tSlot.index = takeThreadSlot();
  if (tSlot.index >= 0) gActive[tSlot.index].store(1, std::memory_order_release);
}

MappedReadGuard::~MappedReadGuard() {
  if (--tGuardDepth > 0 || tSlot.index < 0) return;
  gActive[tSlot.index].store(0, std::memory_order_release);
}

uint64_t mappedFaultCount() { return gFaults.load(std::memory_order_acquire); }

std::vector<std::string> faultedMappings(uint64_t before) {
  std::vector<std::string> paths;
  if (gFaults.load(std::memory_order_acquire) == before) return paths;
  std::lock_guard<std::mutex> lock(gMutex);
  const int used = gUsed.load(std::memory_order_relaxed);
  for (int i = 0; i < used; ++i) {
    if (gSlots[i].begin.load(std::memory_order_relaxed) == 0 || gSlots[i].lastFault.load(std::memory_order_acquire) <= before) continue;
    remapTail(i);
    if (std::find(paths.begin(), paths.end(), gInfo[i].path) == paths.end()) paths.push_back(gInfo[i].path);
  }
  if (paths.empty()) paths.push_back("(a mapping since closed)");
  return paths;
}

std::string shrunkFilesMessage(const std::vector<std::string>& paths) {
  std::string names;
  for (size_t i = 0; i < paths.size(); ++i) names += (i == 0 ? "'" : ", '") + paths[i] + "'";
  const bool one = paths.size() == 1;
  return std::string(one ? "the memory-mapped file " : "the memory-mapped files ") + names +
         " shrank (or could not be read) while native code read " + (one ? "it" : "them") +
         ": truncated by another process? The result was discarded; open the file again to read what it holds now";
}

void throwIfMappingsFaulted(uint64_t before) {
  const std::vector<std::string> paths = faultedMappings(before);
  if (!paths.empty()) throw EngramError(ErrorKind::Error, shrunkFilesMessage(paths), __FILE__, __LINE__);
}

}  // namespace engram
