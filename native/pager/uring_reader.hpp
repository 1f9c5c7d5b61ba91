// Reads of a file-tier table's rows through io_uring: all of a copy job's reads queued
// on one ring and submitted together (one system call for up to `depth` reads, the disk's
// queue kept full from one thread), where pread needs a call, and a thread, per read in
// flight. Raw system calls: no liburing dependency. Linux only; create() returns null
// where the kernel refuses a ring (older kernels, seccomp, io_uring_disabled), and the
// caller keeps its pread readers.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace engram {

struct FileRead {
  int fd = -1;
  uint8_t* dst = nullptr;
  int64_t offset = 0;
  int64_t bytes = 0;
  const std::string* path = nullptr;  // for errors
};

class UringReader {
 public:
  // A ring of `depth` entries, or null where io_uring is unavailable. `buffers` (address,
  // bytes) are registered with the kernel when it allows (fixed buffers: no page pinning
  // per read); reads into them then use READ_FIXED.
  static std::unique_ptr<UringReader> create(unsigned depth, const std::vector<std::pair<uint8_t*, size_t>>& buffers);
  ~UringReader();
  UringReader(const UringReader&) = delete;
  UringReader& operator=(const UringReader&) = delete;

  // Every read done, in any order. Short reads continue where they stopped; a read at
  // the end of the file throws the same errors as preadFully (the file shrank), an I/O
  // error names the file. Only the copy thread calls it.
  void readAll(const std::vector<FileRead>& reads);
  bool fixedBuffers() const { return !registered_.empty(); }
  // True once the kernel refused a submission: the caller goes back to pread.
  bool broken() const { return broken_.load(std::memory_order_relaxed); }

 private:
  UringReader() = default;
  struct Ring;
  std::unique_ptr<Ring> ring_;
  std::vector<std::pair<uint8_t*, size_t>> registered_;
  std::atomic<bool> broken_{false};
  int bufferIndex(const uint8_t* dst, int64_t bytes) const;
};

}  // namespace engram
