// The table pager's host logic, shared by every backend: pages, the page table, LRU/LFU
// eviction with pins, hot-row residency, tickets and statistics. Copies go through a
// CopyEngine: the CPU backend's copy thread (pager_copy_cpu.cpp), a CUDA copy stream
// (pager_copy.cu), or none at all (simulation of hit rates).
#pragma once
#include <algorithm>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace engram {

enum class Eviction : int { Lru = 0, Lfu = 1, Direct = 2 };

// page -> slot for the resident pages: open addressing (linear probing, backward-shift
// deletion) sized by the cache, so its memory follows the cache, not the table, and a
// lookup costs no allocation.
class PageMap {
 public:
  explicit PageMap(int64_t entries);
  int32_t find(int64_t page) const;  // -1: absent
  void insert(int64_t page, int32_t slot);
  void erase(int64_t page);

 private:
  size_t home(int64_t page) const { return static_cast<size_t>((static_cast<uint64_t>(page) * 0x9e3779b97f4a7c15ull) >> shift_); }
  std::vector<int64_t> keys_;  // -1: empty
  std::vector<int32_t> values_;
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
  void add(int64_t page, uint64_t n);

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
  using Key = std::tuple<uint64_t, uint64_t, int64_t>;
  struct Ticket {
    std::vector<int64_t> slots;   // pinned
    std::vector<int64_t> missed;  // slots filled by this ticket's job
    std::vector<uint64_t> jobs;   // copies it waits for
    uint64_t lastJob = 0;
  };
  Key keyOf(int64_t slot) const;
  std::exception_ptr settleCopies(uint64_t ticket, double* waitedSeconds);
  void makeEvictable(int64_t slot);
  void removeEvictable(int64_t slot);
  int64_t popVictim();
  int64_t evictableCount() const { return eviction_ == Eviction::Lfu ? static_cast<int64_t>(lfuHeap_.size()) : lruCount_; }
  bool lfuLess(int64_t a, int64_t b) const { return slotKey_[a] < slotKey_[b]; }
  void lfuSiftUp(size_t i);
  void lfuSiftDown(size_t i);
  int64_t hotIndex(int64_t row) const;

  // acquire() in steps, all under the lock: planBatch reads the batch and the page table
  // (changing nothing; throws on a bad row), admit refuses a batch the cache cannot hold,
  // assignSlots pins, evicts and submits the copies, translate writes each row's cache row,
  // record counts the batch and files its ticket.
  struct BatchPlan {
    std::vector<std::pair<int64_t, int64_t>> pageLookups;  // (page, lookups), pages ascending
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
  Ticket assignSlots(const BatchPlan& plan);
  template <typename T>
  void translate(const T* rows, int64_t count, const BatchPlan& plan, const Ticket& t, int32_t* translated) const;
  uint64_t record(const BatchPlan& plan, int64_t count, Ticket t);

  PagerGeometry g_;
  Eviction eviction_;
  std::unique_ptr<CopyEngine> engine_;
  mutable std::mutex mutex_;
  PageMap pageSlot_;  // resident pages only (a dense array would be 1.5 GB for 384 M rows)
  int32_t slotOf(int64_t page) const { return pageSlot_.find(page); }
  PageCounts pageFreq_;             // lookups per page (LFU)
  std::vector<int64_t> slotPage_;   // slot -> page, -1 free
  std::vector<int32_t> slotPins_;
  std::vector<uint64_t> slotLastUse_;
  std::vector<uint64_t> slotJob_;   // job that filled the slot
  std::vector<Key> slotKey_;        // its eviction order key (LRU list, LFU heap)
  std::vector<int64_t> freeSlots_;
  // LFU: unpinned resident slots in an indexed min-heap by key (no allocation per change).
  std::vector<int64_t> lfuHeap_, lfuPos_;
  // LRU: the same order as an intrusive list (no allocation): ascending (last use, slot).
  std::vector<int64_t> lruPrev_, lruNext_;
  int64_t lruHead_ = -1, lruTail_ = -1, lruCount_ = 0;
  std::vector<int64_t> hotKeys_;
  std::vector<int32_t> hotValues_;
  std::unordered_map<uint64_t, Ticket> tickets_;
  uint64_t nextTicket_ = 1;
  uint64_t tick_ = 0;
  PagerStats stats_;
  std::vector<int64_t> scratch_;
};

}  // namespace engram
