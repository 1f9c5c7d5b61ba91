// The table pager's host logic, shared by every backend: pages, the page table, LRU/LFU
// eviction with pins, hot-row residency, tickets and statistics. Copies go through a
// CopyEngine: the CPU backend's copy thread (pager_copy_cpu.cpp), a CUDA copy stream
// (pager_copy.cu), or none at all (simulation of hit rates).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <new>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace engram {

enum class Eviction : int { Lru = 0, Lfu = 1, Direct = 2 };

// Memory for the pager's large per-slot arrays, read at random: 2 MiB-aligned and advised
// onto transparent huge pages where it is large, so a random slot costs a cache miss
// rather than a cache miss and a page walk.
template <typename T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <typename U>
  HugePageAllocator(const HugePageAllocator<U>&) {}
  T* allocate(size_t n);
  void deallocate(T* p, size_t) { std::free(p); }
  template <typename U>
  bool operator==(const HugePageAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const HugePageAllocator<U>&) const { return false; }
};
void* allocateHugePageBacked(size_t bytes);
template <typename T>
T* HugePageAllocator<T>::allocate(size_t n) {
  return static_cast<T*>(allocateHugePageBacked(n * sizeof(T)));
}

// page -> slot for the resident pages: open addressing (linear probing, backward-shift
// deletion) sized by the cache, so its memory follows the cache, not the table, and a
// lookup costs no allocation. Key and value share an 8-byte entry (pages below 2^32 - 1,
// which the pager checks): one cache miss per probe, eight entries a line.
class PageMap {
 public:
  explicit PageMap(int64_t entries);
  int32_t find(int64_t page) const;  // -1: absent
  void insert(int64_t page, int32_t slot);
  void erase(int64_t page);
  // Starts loading the entry a lookup of `page` reads first (batches issue these ahead).
  void prefetch(int64_t page) const { __builtin_prefetch(&entries_[home(page)]); }

 private:
  struct Entry {
    uint32_t key = 0;  // page + 1; 0: empty
    int32_t value = -1;
  };
  // A multiplicative hash mapped onto [0, capacity) by a multiply and a shift, so the
  // capacity need not be a power of two.
  size_t home(int64_t page) const {
    const uint64_t h = static_cast<uint64_t>(page) * 0x9e3779b97f4a7c15ull;
    return static_cast<size_t>((static_cast<unsigned __int128>(h) * capacity_) >> 64);
  }
  size_t next(size_t i) const { return i + 1 == capacity_ ? 0 : i + 1; }
  std::vector<Entry, HugePageAllocator<Entry>> entries_;
  size_t capacity_ = 0;
};

// The distinct values of one batch (pages, or rows) and how often each occurs, in the
// order first seen: an open-addressed table sized per batch and reused across batches, so
// deduplication costs no sort and no allocation once the largest batch has been seen.
class BatchSet {
 public:
  // Starts a batch of at most `count` values.
  void reset(int64_t count);
  // The value's index among the distinct values (new ones are appended).
  int32_t add(int64_t value);
  // The index of a value added before (it must have been).
  int32_t indexOf(int64_t value) const;
  size_t size() const { return values_.size(); }
  int64_t value(size_t i) const { return values_[i]; }
  int64_t count(size_t i) const { return counts_[i]; }

 private:
  size_t home(int64_t v) const { return static_cast<size_t>((static_cast<uint64_t>(v) * 0x9e3779b97f4a7c15ull) >> shift_); }
  std::vector<int64_t> keys_;  // -1: empty
  std::vector<int32_t> index_;
  std::vector<int64_t> values_, counts_;
  size_t mask_ = 0;
  int shift_ = 64;
};

struct PagerGeometry {
  int64_t rows = 0;           // table rows
  int64_t rowBytes = 0;       // bytes of one stored row
  int64_t scaleRowBytes = 0;  // fp8: UE8M0 bytes of one row (0 otherwise)
  int64_t pageRows = 0;
  int64_t slots = 0;    // page slots in the cache
  int64_t hotRows = 0;  // capacity of the hot region
  int64_t pages() const { return (rows + pageRows - 1) / pageRows; }
  int64_t cacheRows() const { return slots * pageRows + hotRows; }
};

// `rows` table rows from srcRow copied to cache rows from dstRow (a page, or one hot row).
struct RowCopy {
  int64_t srcRow;
  int64_t dstRow;
  int64_t rows;
};

// One row range of the table's home tier: bytes in memory (RAM, a mapping), or a file
// read with pread from these offsets. A table split across checkpoint shards has several.
struct SourcePart {
  int64_t firstRow = 0;
  int64_t rows = 0;
  const uint8_t* data = nullptr;
  const uint8_t* scales = nullptr;
  std::string path;  // non-empty: read with pread
  int64_t dataOffset = 0;
  int64_t scalesOffset = 0;
};

// Where the table's bytes live: its parts in row order, covering every row.
struct PageSource {
  std::vector<SourcePart> parts;
  bool inFiles() const { return !parts.empty() && !parts[0].path.empty(); }
  // The part holding `row`.
  size_t partOf(int64_t row) const;
  // A copy's rows cut at part boundaries: fn(part, row within it, cache row, rows).
  template <typename F>
  void forEachRange(const RowCopy& c, F&& fn) const {
    int64_t src = c.srcRow, dst = c.dstRow, left = c.rows;
    for (size_t i = partOf(src); left > 0; ++i) {
      const SourcePart& p = parts[i];
      const int64_t n = std::min(left, p.firstRow + p.rows - src);
      fn(p, i, src - p.firstRow, dst, n);
      src += n;
      dst += n;
      left -= n;
    }
  }
};

// The files of a file-tier source, opened read-only with random-access advice after
// checking that each holds its rows and scales (throws otherwise); closed with the object.
// Shared by the CPU and CUDA engines.
class SourceFiles {
 public:
  SourceFiles(const PageSource& source, const PagerGeometry& g);
  ~SourceFiles();
  SourceFiles(const SourceFiles&) = delete;
  SourceFiles& operator=(const SourceFiles&) = delete;
  bool open() const { return !fds_.empty(); }
  // `rows` rows from `row` of part i into data (and, with scales, their scales): pread
  // from the part's file, or memcpy from its memory when the source is not in files.
  void readRows(const SourcePart& part, size_t i, int64_t row, int64_t rows, uint8_t* data, uint8_t* scales) const;

 private:
  std::vector<int> fds_;
  PagerGeometry g_;
};

// pread of exactly `bytes` (EINTR retried); throws std::runtime_error on error or EOF.
void preadFully(int fd, uint8_t* dst, int64_t offset, int64_t bytes, const std::string& path);

// Runs copies in submission order: job ids grow by one from 1, and a job is complete
// only when every earlier one is.
class CopyEngine {
 public:
  virtual ~CopyEngine() = default;
  virtual uint64_t submit(std::vector<RowCopy> copies) = 0;
  // Blocks until `job` is complete; throws if any of `jobs` failed.
  virtual void wait(uint64_t job, const std::vector<uint64_t>& jobs) = 0;
  // Seconds the engine spent copying (and throttling), bytes it moved.
  virtual double busySeconds() const = 0;
};

// CPU backend: a copy thread (with `readers` threads reading a job's pages at once);
// bytesPerSecond > 0 caps its rate (emulating a PCIe link).
std::unique_ptr<CopyEngine> makeCpuCopyEngine(const PageSource& source, const PagerGeometry& g, uint8_t* cacheData,
                                              uint8_t* cacheScales, double bytesPerSecond, int readers);
// No copies at all: hit-rate simulation.
std::unique_ptr<CopyEngine> makeNullCopyEngine();
// CUDA backend: the cache in device memory, copies on a stream of their own from a
// pinned source (cuda: pager_copy.cu; CPU-only builds throw).
std::unique_ptr<CopyEngine> makeCudaCopyEngine(const PageSource& source, const PagerGeometry& g, uint8_t* deviceData,
                                               uint8_t* deviceScales, int deviceIndex);
// Device memory for a CUDA pager's cache (freed with the last owner; CPU-only builds throw).
std::shared_ptr<uint8_t> allocateDeviceCache(size_t bytes, int deviceIndex);

struct PagerStats {
  double lookups = 0, uniqueRows = 0, uniquePages = 0;
  double pageHits = 0, pageMisses = 0, rowHits = 0, rowMisses = 0, hotRowHits = 0;
  double bytesCopied = 0, evictions = 0, tickets = 0, stallSeconds = 0;
};

// Lookups per page for LFU. Exact (4 bytes a page) up to kExactPages pages; beyond that a
// count-min sketch (4 rows, width near 8x the cache's slots, conservative update) whose
// memory follows the cache, not the table: a 384 M-row table paged by rows would spend
// 1.5 GB on exact counts. Sketch counts never undercount, and stay exact until pages
// collide in all four rows.
class PageCounts {
 public:
  static constexpr int64_t kExactPages = int64_t{1} << 24;
  void reset(int64_t pages, int64_t slots);
  bool empty() const { return exact_.empty() && sketch_.empty(); }
  uint32_t get(int64_t page) const;
  // Adds n lookups; returns the page's new count (estimate).
  uint32_t add(int64_t page, uint64_t n);
  // Starts loading the counters of `page` (a batch issues these for all its pages first).
  void prefetch(int64_t page) const;

 private:
  static constexpr int kDepth = 4;
  uint64_t cell(int row, int64_t page) const;
  std::vector<uint32_t> exact_;
  std::vector<uint32_t> sketch_;  // [kDepth][width_]
  uint64_t width_ = 0;            // a power of two
};

class Pager {
 public:
  Pager(const PagerGeometry& g, Eviction eviction, std::unique_ptr<CopyEngine> engine);
  ~Pager();

  // Pins every page `rows` need, schedules copies of the missing ones and, when
  // `translated` is given, writes each row's cache row. Nothing changes if it throws
  // (row out of range; more missing pages than slots it may free).
  uint64_t acquire(const int32_t* rows32, const int64_t* rows64, int64_t count, int32_t* translated);
  // Blocks until the ticket's copies are done; the time counts as stall.
  void wait(uint64_t ticket);
  // Unpins the ticket's pages (Direct mode: drops them).
  void release(uint64_t ticket);
  // Makes `rows` (hottest first, at most hotRows) resident in the hot region for good.
  void setHotRows(const int64_t* rows, int64_t count);

  PagerStats stats() const;
  void resetStats();
  double copyBusySeconds() const { return engine_->busySeconds(); }
  int64_t residentPages() const;
  int64_t ticketsInFlight() const;
  const PagerGeometry& geometry() const { return g_; }

 private:
  // Everything the pager keeps per cache slot, 16 bytes: a batch touches a slot once, at
  // one miss, rather than once per field array, and a cache of millions of one-row slots
  // keeps its bookkeeping small (with the page table and the LRU queue, about 36 bytes a
  // slot where it took 75). LFU's counts live beside it (lfu_), only for LFU.
  struct Slot {
    uint32_t page1 = 0;  // page + 1 (the pager refuses tables of 2^32 - 1 pages or more); 0: free
    uint32_t stamp = 0;  // bumped whenever it stops or starts being evictable
    // The copy job that filled it (48 bits: 2.8e14 jobs, years at a million a second; the
    // pager refuses to go past them) and the tickets holding it (16 bits; a batch that
    // would pin a page 65,536 times is refused).
    uint64_t jobAndPins = 0;

    int64_t page() const { return static_cast<int64_t>(page1) - 1; }
    void setPage(int64_t page) { page1 = static_cast<uint32_t>(page + 1); }
    void clearPage() { page1 = 0; }
    bool resident() const { return page1 != 0; }
    uint64_t job() const { return jobAndPins & kJobMask; }
    void setJob(uint64_t job) { jobAndPins = (jobAndPins & ~kJobMask) | job; }
    uint32_t pins() const { return static_cast<uint32_t>(jobAndPins >> kJobBits); }
    void pin() { jobAndPins += uint64_t{1} << kJobBits; }
    uint32_t unpin() {
      jobAndPins -= uint64_t{1} << kJobBits;
      return pins();
    }
  };
  static constexpr int kJobBits = 48;
  static constexpr uint64_t kJobMask = (uint64_t{1} << kJobBits) - 1;
  static constexpr uint32_t kMaxPins = 0xffff;
  // LFU's per-slot fields: lookups of its page (the sketch's estimate at its last use) and
  // the low 32 bits of that use's batch tick (the tie-break: wraps after 4e9 batches, which
  // changes which of two equally counted pages goes first, never the bits served).
  struct LfuSlot {
    uint32_t count = 0;
    uint32_t lastUse = 0;
  };
  // Evictable slots wait in a queue (LRU: oldest release first) or a heap (LFU: fewest
  // lookups first). Pinning a slot again does not search for its entry: the slot's stamp
  // moves on and the old entry, now stale, is skipped when it surfaces. Entries are
  // contiguous, so a batch's victims are found without chasing pointers and their slots
  // can be loaded ahead.
  struct QueueEntry {
    int32_t slot;
    uint32_t stamp;
  };
  struct HeapEntry {
    uint32_t lastUse;
    uint32_t count;
    int32_t slot;
    uint32_t stamp;
    bool operator<(const HeapEntry& o) const {
      if (count != o.count) return count < o.count;
      if (lastUse != o.lastUse) return lastUse < o.lastUse;
      return slot < o.slot;
    }
  };
  struct Ticket {
    std::vector<int32_t> slots;   // pinned
    std::vector<int32_t> missed;  // slots filled by this ticket's job
    std::vector<uint64_t> jobs;   // copies it waits for
    uint64_t lastJob = 0;
  };
  std::exception_ptr settleCopies(uint64_t ticket, double* waitedSeconds);
  void makeEvictable(int32_t slot);
  void removeEvictable(int32_t slot);
  int32_t popVictim();
  int64_t evictableCount() const { return evictable_; }
  bool live(int32_t slot, uint32_t stamp) const { return slots_[static_cast<size_t>(slot)].stamp == stamp; }
  void compactEvictable();
  int64_t hotIndex(int64_t row) const;

  // acquire() in steps, all under the lock: planBatch reads the batch and the page table
  // (changing nothing; throws on a bad row), admit refuses a batch the cache cannot hold,
  // assignSlots pins, evicts and submits the copies, translate writes each row's cache row,
  // record counts the batch and files its ticket. The plan lives in the pager's batch
  // scratch (batchPages_, batchSlot_): no allocation per batch.
  struct BatchPlan {
    int64_t uniqueRows = 0;
    int64_t hotHits = 0;       // lookups served by the hot rows
    int64_t missingPages = 0;  // pages not resident
    int64_t residentIdle = 0;  // resident pages no ticket pins (they stop being evictable)
  };
  template <typename T>
  uint64_t acquireRows(const T* rows, int64_t count, int32_t* translated);
  template <typename T>
  BatchPlan planBatch(const T* rows, int64_t count);
  void admit(const BatchPlan& plan) const;
  Ticket assignSlots();
  template <typename T>
  void translate(const T* rows, int64_t count, const Ticket& t, int32_t* translated) const;
  uint64_t record(const BatchPlan& plan, int64_t count, Ticket t);
  Ticket newTicket();

  PagerGeometry g_;
  Eviction eviction_;
  std::unique_ptr<CopyEngine> engine_;
  mutable std::mutex mutex_;
  PageMap pageSlot_;  // resident pages only (a dense array would be 1.5 GB for 384 M rows)
  int32_t slotOf(int64_t page) const { return pageSlot_.find(page); }
  PageCounts pageFreq_;  // lookups per page (LFU)
  std::vector<Slot, HugePageAllocator<Slot>> slots_;
  std::vector<LfuSlot, HugePageAllocator<LfuSlot>> lfu_;  // LFU only
  // Free slots: those never used yet are [fresh_, slots); freeSlots_ holds the ones given
  // back (a failed copy, direct mode), taken first. No list of every slot up front.
  int64_t fresh_ = 0;
  std::vector<int32_t> freeSlots_;
  int64_t freeCount() const { return static_cast<int64_t>(freeSlots_.size()) + (g_.slots - fresh_); }
  int32_t takeFreeSlot();
  std::vector<QueueEntry> lruQueue_;  // LRU: [lruFront_, end) in release order
  size_t lruFront_ = 0;
  std::vector<HeapEntry> lfuHeap_;    // LFU: a min-heap (std::push_heap with greater)
  int64_t evictable_ = 0;             // live entries: unpinned resident slots
  std::vector<int32_t> victims_;      // this batch's victims
  BatchSet batchPages_;              // this batch's pages, first seen first
  BatchSet batchRows_;               // its rows (counted only when pages hold several)
  std::vector<int32_t> batchSlot_;   // the slot of each batch page (-1: not resident)
  std::vector<Ticket> spareTickets_; // released tickets' vectors, kept for their capacity
  std::vector<int64_t> hotKeys_;
  std::vector<int32_t> hotValues_;
  std::unordered_map<uint64_t, Ticket> tickets_;
  uint64_t nextTicket_ = 1;
  uint64_t tick_ = 0;
  PagerStats stats_;
};

}  // namespace engram
