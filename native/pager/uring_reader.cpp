// io_uring reads for the file tier (see uring_reader.hpp), on the raw system calls.
#include "pager/uring_reader.hpp"

#include "pager/pager.hpp"  // preadFully

#include <cerrno>
#include <cstring>
#include <stdexcept>

#if defined(__linux__) && __has_include(<linux/io_uring.h>)
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#define EK_HAVE_IO_URING 1
#endif

namespace engram {

#if defined(EK_HAVE_IO_URING)

namespace {
int ringSetup(unsigned entries, io_uring_params* p) { return static_cast<int>(::syscall(__NR_io_uring_setup, entries, p)); }
int ringEnter(int fd, unsigned submit, unsigned wait, unsigned flags) {
  return static_cast<int>(::syscall(__NR_io_uring_enter, fd, submit, wait, flags, nullptr, 0));
}
int ringRegister(int fd, unsigned op, const void* arg, unsigned n) { return static_cast<int>(::syscall(__NR_io_uring_register, fd, op, arg, n)); }
unsigned loadAcquire(const unsigned* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void storeRelease(unsigned* p, unsigned v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
}  // namespace

struct UringReader::Ring {
  int fd = -1;
  unsigned sqEntries = 0;
  void* sq = MAP_FAILED;
  size_t sqBytes = 0;
  void* cq = MAP_FAILED;
  size_t cqBytes = 0;
  io_uring_sqe* sqes = static_cast<io_uring_sqe*>(MAP_FAILED);
  size_t sqesBytes = 0;
  unsigned *sqHead = nullptr, *sqTail = nullptr, *sqMask = nullptr, *sqArray = nullptr;
  unsigned *cqHead = nullptr, *cqTail = nullptr, *cqMask = nullptr;
  io_uring_cqe* cqes = nullptr;

  ~Ring() {
    if (sqes != MAP_FAILED) ::munmap(sqes, sqesBytes);
    if (cq != MAP_FAILED && cq != sq) ::munmap(cq, cqBytes);
    if (sq != MAP_FAILED) ::munmap(sq, sqBytes);
    if (fd >= 0) ::close(fd);
  }
};

std::unique_ptr<UringReader> UringReader::create(unsigned depth, const std::vector<std::pair<uint8_t*, size_t>>& buffers) {
  auto ring = std::make_unique<Ring>();
  io_uring_params p{};
  ring->fd = ringSetup(depth, &p);
  if (ring->fd < 0) return nullptr;
  ring->sqEntries = p.sq_entries;
  ring->sqBytes = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  ring->cqBytes = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
  const bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single) ring->sqBytes = ring->cqBytes = std::max(ring->sqBytes, ring->cqBytes);
  ring->sq = ::mmap(nullptr, ring->sqBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring->fd, IORING_OFF_SQ_RING);
  if (ring->sq == MAP_FAILED) return nullptr;
  ring->cq = single ? ring->sq : ::mmap(nullptr, ring->cqBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring->fd, IORING_OFF_CQ_RING);
  if (ring->cq == MAP_FAILED) return nullptr;
  ring->sqesBytes = p.sq_entries * sizeof(io_uring_sqe);
  ring->sqes = static_cast<io_uring_sqe*>(::mmap(nullptr, ring->sqesBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring->fd, IORING_OFF_SQES));
  if (ring->sqes == MAP_FAILED) return nullptr;
  auto* sq = static_cast<char*>(ring->sq);
  auto* cq = static_cast<char*>(ring->cq);
  ring->sqHead = reinterpret_cast<unsigned*>(sq + p.sq_off.head);
  ring->sqTail = reinterpret_cast<unsigned*>(sq + p.sq_off.tail);
  ring->sqMask = reinterpret_cast<unsigned*>(sq + p.sq_off.ring_mask);
  ring->sqArray = reinterpret_cast<unsigned*>(sq + p.sq_off.array);
  ring->cqHead = reinterpret_cast<unsigned*>(cq + p.cq_off.head);
  ring->cqTail = reinterpret_cast<unsigned*>(cq + p.cq_off.tail);
  ring->cqMask = reinterpret_cast<unsigned*>(cq + p.cq_off.ring_mask);
  ring->cqes = reinterpret_cast<io_uring_cqe*>(cq + p.cq_off.cqes);
  std::unique_ptr<UringReader> reader(new UringReader());
  reader->ring_ = std::move(ring);
  // Fixed buffers: the kernel pins them once instead of per read. Each must be at most
  // 1 GiB, and an unprivileged process may pin only its RLIMIT_MEMLOCK: where the kernel
  // refuses, reads go to plain addresses.
  std::vector<iovec> iov;
  for (const auto& [at, bytes] : buffers) {
    if (at != nullptr && bytes > 0) iov.push_back(iovec{at, bytes});
  }
  bool fits = !iov.empty();
  for (const iovec& v : iov) fits = fits && v.iov_len <= (size_t{1} << 30);
  if (fits && ringRegister(reader->ring_->fd, IORING_REGISTER_BUFFERS, iov.data(), static_cast<unsigned>(iov.size())) == 0) {
    for (const iovec& v : iov) reader->registered_.emplace_back(static_cast<uint8_t*>(v.iov_base), v.iov_len);
  }
  return reader;
}

UringReader::~UringReader() = default;

int UringReader::bufferIndex(const uint8_t* dst, int64_t bytes) const {
  for (size_t i = 0; i < registered_.size(); ++i) {
    const auto& [at, size] = registered_[i];
    if (dst >= at && dst + bytes <= at + size) return static_cast<int>(i);
  }
  return -1;
}

void UringReader::readAll(const std::vector<FileRead>& reads) {
  Ring& r = *ring_;
  std::vector<int64_t> done(reads.size(), 0);
  std::vector<size_t> queue;  // reads (or their remainders) still to submit
  queue.reserve(reads.size());
  for (size_t i = reads.size(); i-- > 0;) {
    if (reads[i].bytes > 0) queue.push_back(i);
  }
  unsigned inFlight = 0;
  std::string failure;  // the first error; reads in flight are drained before it is thrown
  std::vector<size_t> blocking;  // reads the ring answered EAGAIN for
  while (inFlight > 0 || (!queue.empty() && failure.empty())) {
    unsigned tail = *r.sqTail;
    const unsigned mask = *r.sqMask;
    unsigned queued = 0;
    while (failure.empty() && !broken_ && !queue.empty() && inFlight + queued < r.sqEntries && tail - loadAcquire(r.sqHead) < r.sqEntries) {
      const size_t i = queue.back();
      queue.pop_back();
      const FileRead& f = reads[i];
      const unsigned slot = tail & mask;
      io_uring_sqe& e = r.sqes[slot];
      std::memset(&e, 0, sizeof e);
      uint8_t* dst = f.dst + done[i];
      const int64_t left = f.bytes - done[i];
      const int buffer = bufferIndex(dst, left);
      e.opcode = buffer >= 0 ? IORING_OP_READ_FIXED : IORING_OP_READ;
      e.fd = f.fd;
      e.addr = reinterpret_cast<uint64_t>(dst);
      e.len = static_cast<uint32_t>(std::min<int64_t>(left, int64_t{1} << 30));
      e.off = static_cast<uint64_t>(f.offset + done[i]);
      if (buffer >= 0) e.buf_index = static_cast<uint16_t>(buffer);
      e.user_data = i;
      r.sqArray[slot] = slot;
      ++tail;
      ++queued;
    }
    storeRelease(r.sqTail, tail);
    inFlight += queued;
    // Submit what the kernel has not taken yet and wait for one completion at least.
    const unsigned unsubmitted = broken_ ? 0 : tail - loadAcquire(r.sqHead);
    const int entered = ringEnter(r.fd, unsubmitted, inFlight > 0 ? 1 : 0, IORING_ENTER_GETEVENTS);
    if (entered < 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY) {
      if (broken_) {
        // It cannot even wait: reads it took may still land, so the caller must not trust
        // this ring again (create() a new one or use pread) and the job fails.
        throw std::runtime_error(std::string("io_uring_enter failed twice: ") + std::strerror(errno));
      }
      // The ring refused the submission: take back what it did not consume (without
      // SQPOLL the kernel reads entries only inside this call), stop submitting, and wait
      // for what it took.
      broken_ = true;
      if (failure.empty()) failure = std::string("io_uring_enter failed: ") + std::strerror(errno);
      const unsigned head = loadAcquire(r.sqHead);
      inFlight -= std::min(inFlight, tail - head);
      storeRelease(r.sqTail, head);
    }
    unsigned head = *r.cqHead;
    while (head != loadAcquire(r.cqTail)) {
      const io_uring_cqe& c = r.cqes[head & *r.cqMask];
      const size_t i = static_cast<size_t>(c.user_data);
      const int res = c.res;
      ++head;
      --inFlight;
      const FileRead& f = reads[i];
      if (res == -EINTR) {
        queue.push_back(i);
      } else if (res == -EAGAIN) {
        blocking.push_back(i);  // the kernel would not wait: read it with pread below
      } else if (res < 0) {
        if (failure.empty()) failure = "reading table file '" + *f.path + "' failed: " + std::strerror(-res);
      } else if (res == 0) {
        if (failure.empty()) failure = "table file '" + *f.path + "' ended early (truncated while in use?)";
      } else {
        done[i] += res;
        if (done[i] < f.bytes) queue.push_back(i);  // a short read: the rest next round
      }
    }
    storeRelease(r.cqHead, head);
  }
  if (!failure.empty()) throw std::runtime_error(failure);
  for (const size_t i : blocking) {
    const FileRead& f = reads[i];
    preadFully(f.fd, f.dst + done[i], f.offset + done[i], f.bytes - done[i], *f.path);
  }
}

#else

struct UringReader::Ring {};
std::unique_ptr<UringReader> UringReader::create(unsigned, const std::vector<std::pair<uint8_t*, size_t>>&) { return nullptr; }
UringReader::~UringReader() = default;
int UringReader::bufferIndex(const uint8_t*, int64_t) const { return -1; }
void UringReader::readAll(const std::vector<FileRead>&) { throw std::runtime_error("io_uring is not available in this build"); }

#endif

}  // namespace engram
