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

// u32 keys -> values by open addressing (linear probing, backward-shift deletion), growing
// by doubling at half load, so its memory follows the entries it holds: the pager keeps
// two, for the few pages placed outside their home set and the fills still in flight.
template <typename V>
class FlatMap {
 public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  size_t bytes() const { return entries_.size() * sizeof(Entry); }
  const V* find(uint32_t key) const {
    if (size_ == 0) return nullptr;
    for (size_t i = home(key);; i = (i + 1) & mask_) {
      if (entries_[i].key1 == key + 1) return &entries_[i].value;
      if (entries_[i].key1 == 0) return nullptr;
    }
  }
  void insert(uint32_t key, V value) {
    if (2 * (size_ + 1) > entries_.size()) grow();
    size_t i = home(key);
    while (entries_[i].key1 != 0 && entries_[i].key1 != key + 1) i = (i + 1) & mask_;
    if (entries_[i].key1 == 0) ++size_;
    entries_[i] = Entry{key + 1, value};
  }
  void erase(uint32_t key) {
    if (size_ == 0) return;
    size_t i = home(key);
    while (entries_[i].key1 != key + 1) {
      if (entries_[i].key1 == 0) return;
      i = (i + 1) & mask_;
    }
    // Backward shift: later entries of the probe run move into the hole unless their home
    // lies cyclically in (hole, entry].
    for (size_t j = (i + 1) & mask_; entries_[j].key1 != 0; j = (j + 1) & mask_) {
      const size_t h = home(entries_[j].key1 - 1);
      const bool stays = (i <= j) ? (i < h && h <= j) : (i < h || h <= j);
      if (stays) continue;
      entries_[i] = entries_[j];
      i = j;
    }
    entries_[i] = Entry{};
    --size_;
  }

 private:
  struct Entry {
    uint32_t key1 = 0;  // key + 1; 0: empty
    V value{};
  };
  size_t home(uint32_t key) const { return static_cast<size_t>((uint64_t{key} * 0x9e3779b97f4a7c15ull) >> shift_); }
  void grow() {
    std::vector<Entry> old = std::move(entries_);
    size_t capacity = 16;
    int bits = 4;
    while (capacity < 2 * (size_ + 1)) {
      capacity <<= 1;
      ++bits;
    }
    entries_.assign(capacity, Entry{});
    mask_ = capacity - 1;
    shift_ = 64 - bits;
    size_ = 0;
    for (const Entry& e : old) {
      if (e.key1 != 0) insert(e.key1 - 1, e.value);
    }
  }
  std::vector<Entry> entries_;
  size_t size_ = 0, mask_ = 0;
  int shift_ = 64;
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
  // add() of every value, each one's index written to indexOut, and onNew(index, value)
  // called for each value the first time it is seen: the batch's common case as one loop
  // that keeps the table's pointers and size in registers (add() reloads its size after
  // each store, which may alias it).
  template <typename T, typename F>
  void addAll(const T* values, int64_t n, int32_t* indexOut, F&& onNew);
  size_t size() const { return size_; }
  int64_t value(size_t i) const { return values_[i]; }
  int64_t count(size_t i) const { return counts_[i]; }

 private:
  size_t home(int64_t v) const { return static_cast<size_t>((static_cast<uint64_t>(v) * 0x9e3779b97f4a7c15ull) >> shift_); }
  std::vector<int64_t> keys_;  // -1: empty
  std::vector<int32_t> index_;
  // Sized for the largest batch at reset(): add() appends with a plain store, no growth check.
  std::vector<int64_t> values_;
  std::vector<int32_t> counts_;
  size_t size_ = 0;
  size_t mask_ = 0;
  int shift_ = 64;
};

template <typename T, typename F>
void BatchSet::addAll(const T* in, int64_t n, int32_t* indexOut, F&& onNew) {
  int64_t* keys = keys_.data();
  int32_t* index = index_.data();
  int64_t* values = values_.data();
  int32_t* counts = counts_.data();
  const size_t mask = mask_;
  const int shift = shift_;
  int32_t size = static_cast<int32_t>(size_);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t v = static_cast<int64_t>(in[k]);
    size_t i = static_cast<size_t>((static_cast<uint64_t>(v) * 0x9e3779b97f4a7c15ull) >> shift);
    int64_t key = keys[i];
    while (key != v && key >= 0) {
      i = (i + 1) & mask;
      key = keys[i];
    }
    if (key == v) {
      const int32_t at = index[i];
      ++counts[at];
      indexOut[k] = at;
    } else {
      keys[i] = v;
      index[i] = size;
      values[size] = v;
      counts[size] = 1;
      onNew(static_cast<size_t>(size), v);
      indexOut[k] = size++;
    }
  }
  size_ = static_cast<size_t>(size);
}

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
  int fd(size_t part) const { return fds_[part]; }
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
  // How a file-tier home is read: "io_uring", "pread"; "memory" for a home in memory
  // (RAM or a mapping), "none" for engines that copy nothing.
  virtual const char* readMethod() const { return "none"; }
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
// count-min sketch (four one-byte counters a page, saturating at 255, conservative update)
// whose memory follows the cache, not the table: a 384 M-row table paged by rows would
// spend 1.5 GB on exact counts, and the sketch costs 8 to 16 bytes a slot. The sketch is
// blocked: a page's four counters lie in one 64-byte line (one in each quarter, as
// Caffeine's TinyLFU sketch does), so a page costs one cache miss, not four. Sketch counts
// never undercount below the saturation, and stay exact until pages collide in all four
// counters; past 255 lookups LFU ranks pages by recency.
class PageCounts {
 public:
  static constexpr int64_t kExactPages = int64_t{1} << 24;
  void reset(int64_t pages, int64_t slots);
  bool empty() const { return exact_.empty() && sketch_.empty(); }
  // Where `page`'s counters are, as one word (the page itself for exact counts; its
  // counter line and the four counters' places in it for the sketch), and a prefetch of
  // their line: a batch locates each of its pages once, when it first sees it, ahead of
  // adding to them.
  [[gnu::always_inline]] uint64_t locate(int64_t page) const {
    if (!exact_.empty()) {
      __builtin_prefetch(exact_.data() + page, 1);
      return static_cast<uint64_t>(page);
    }
    // SplitMix64 of the page: the low bits pick its line of 64 counters, bits 40-55 one
    // counter in each quarter of that line.
    uint64_t z = static_cast<uint64_t>(page) * 0x9e3779b97f4a7c15ull + 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    __builtin_prefetch(sketch_.data() + (z & (lines_ - 1)) * kLineCounters, 1);
    return z;
  }
  // Adds n lookups to the page `at` locates; returns its new count (an estimate).
  [[gnu::always_inline]] uint32_t add(uint64_t at, uint64_t n) {
    if (!exact_.empty()) {
      uint32_t& c = exact_[at];
      c = static_cast<uint32_t>(std::min<uint64_t>(UINT32_MAX, c + n));
      return c;
    }
    // Conservative update: only the cells below the new estimate are raised.
    uint8_t* line = sketch_.data() + (at & (lines_ - 1)) * kLineCounters;
    const uint64_t within = at >> 40;
    uint8_t* cell[kDepth];
    uint32_t least = 0xff;
    for (int r = 0; r < kDepth; ++r) {
      cell[r] = line + r * (kLineCounters / kDepth) + ((within >> (4 * r)) & 15);
      least = std::min<uint32_t>(least, *cell[r]);
    }
    const uint8_t target = static_cast<uint8_t>(std::min<uint64_t>(0xff, least + n));
    for (int r = 0; r < kDepth; ++r) *cell[r] = std::max(*cell[r], target);
    return target;
  }

 private:
  static constexpr int kDepth = 4;
  static constexpr uint64_t kLineCounters = 64;  // one-byte counters in a cache line
  std::vector<uint32_t> exact_;
  std::vector<uint8_t, HugePageAllocator<uint8_t>> sketch_;  // [lines_][kLineCounters], line-aligned
  uint64_t lines_ = 0;                                       // a power of two
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
  const char* readMethod() const { return engine_->readMethod(); }
  int64_t residentPages() const;
  int64_t ticketsInFlight() const;
  const PagerGeometry& geometry() const { return g_; }

 private:
  // Placement is set-associative: a page's home set (8 ways, contiguous slots) is a hash of
  // the page, and the set's tags are the page table, so a lookup reads one line instead of
  // a hash table, a slot record and a queue, and the bookkeeping is 12 bytes a slot (LFU:
  // plus its sketch) where it took 44.5. Eviction is within the set. A page whose set is
  // all pinned goes to any free slot, else any evictable one, and is listed in elsewhere_:
  // admission stays the fully associative rule (missing pages <= free + evictable slots),
  // so no batch the old pager admitted is refused. Caches of up to 64 slots are one set
  // (exact LRU/LFU); a cache holding every page maps page p to slot p.
  static constexpr uint32_t kMaxPins = 0xffff;  // tickets holding one slot (16 bits)
  static constexpr size_t kPrefetchAhead = 16;   // batch pages whose lines load ahead of use
  static constexpr int64_t kWays = 8;
  static constexpr int64_t kOneSetSlots = 64;
  size_t setOf(int64_t page) const {
    if (identity_) return static_cast<size_t>(page);
    const uint64_t h = static_cast<uint64_t>(page) * 0x9e3779b97f4a7c15ull;
    return static_cast<size_t>((static_cast<unsigned __int128>(h) * static_cast<uint64_t>(sets_)) >> 64);
  }
  size_t setOfSlot(int64_t slot) const { return static_cast<size_t>(ways_ == kWays ? slot >> 3 : slot / ways_); }
  int64_t setFirst(size_t set) const { return static_cast<int64_t>(set) * ways_; }
  int64_t setEnd(size_t set) const { return std::min(g_.slots, static_cast<int64_t>(set + 1) * ways_); }
  int32_t findSlot(int64_t page, size_t set) const;
  // A slot for a missing page (its set's free way, any free slot, its set's victim, any
  // evictable slot: in that order), evicting what it held; admission guarantees one.
  // *home: false when the slot is outside the page's set.
  int32_t placeMissing(size_t set, bool* home);
  // The next slot from the sweeping hand that is unpinned and free (or resident).
  int32_t sweep(bool wantFree);
  // The slot becomes its set's most recently used.
  void touch(int64_t slot);
  void forgetPage(int64_t slot);  // drops the slot's page from elsewhere_ if listed there

  struct Ticket {
    std::vector<int32_t> slots;   // pinned
    std::vector<int32_t> missed;  // slots filled by this ticket's job
    std::vector<uint64_t> jobs;   // copies it waits for
    uint64_t lastJob = 0;
  };
  std::exception_ptr settleCopies(uint64_t ticket, double* waitedSeconds);
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
  Ticket assignSlots(int64_t missing);
  template <typename T>
  void translate(const T* rows, int64_t count, const Ticket& t, int32_t* translated) const;
  uint64_t record(const BatchPlan& plan, int64_t count, Ticket t);
  Ticket newTicket();

  PagerGeometry g_;
  Eviction eviction_;
  std::unique_ptr<CopyEngine> engine_;
  mutable std::mutex mutex_;
  int64_t ways_ = 1, sets_ = 1;
  bool identity_ = false;  // one slot per page: page p in slot p
  // Per slot: its page + 1 (0: free), the tickets pinning it, its recency rank within its
  // set (0: most recently released; LRU and LFU), for LFU its page's lookups (the count at
  // its last use, saturating at 255: past it, LFU ranks by recency) and the low 32 bits of
  // the copy job that filled it: a hit on a slot whose copy may still run waits for it.
  // The full id is the latest job's less the distance in 32 bits, exact while the fill is
  // among the last 2^32 jobs; older ones are long complete (jobs complete in order), and a
  // failed one has been dropped from the cache by the ticket that filled it unless that
  // ticket stays in flight across 4e9 later batches. Laid out set by set (see the ctor).
  static constexpr int64_t kMetaBytes = 8;
  std::vector<uint8_t, HugePageAllocator<uint8_t>> meta_;
  std::vector<uint32_t, HugePageAllocator<uint32_t>> fill_;  // read only for pinned hits
  uint8_t* setMeta(size_t set) { return meta_.data() + set * static_cast<size_t>(ways_ * kMetaBytes); }
  const uint8_t* setMeta(size_t set) const { return meta_.data() + set * static_cast<size_t>(ways_ * kMetaBytes); }
  const uint32_t* setTags(size_t set) const { return reinterpret_cast<const uint32_t*>(setMeta(set) + 4 * ways_); }
  template <typename T>
  T& field(int64_t slot, int64_t offsetPerWay, int64_t bytes) const {
    const size_t set = setOfSlot(slot);
    const int64_t way = slot - static_cast<int64_t>(set) * ways_;
    return *reinterpret_cast<T*>(const_cast<uint8_t*>(setMeta(set)) + offsetPerWay * ways_ + way * bytes);
  }
  uint16_t& pins(int64_t slot) const { return field<uint16_t>(slot, 0, 2); }
  uint8_t& rank(int64_t slot) const { return field<uint8_t>(slot, 2, 1); }
  uint8_t& uses(int64_t slot) const { return field<uint8_t>(slot, 3, 1); }
  uint32_t& tag(int64_t slot) const { return field<uint32_t>(slot, 4, 4); }
  uint32_t& fill(int64_t slot) const { return const_cast<uint32_t&>(fill_[static_cast<size_t>(slot)]); }
  uint64_t lastJob_ = 0;
  uint64_t fillJobOf(int64_t slot) const {
    const uint32_t back = static_cast<uint32_t>(lastJob_) - fill(slot);
    return lastJob_ - back;
  }
  FlatMap<int32_t> elsewhere_;  // page -> slot for pages outside their home set
  int64_t free_ = 0;       // slots neither resident nor pinned
  int64_t evictable_ = 0;  // resident slots no ticket pins
  int64_t hand_ = 0;       // where sweep() looks next
  PageCounts pageFreq_;    // lookups per page (LFU)
  std::vector<uint64_t> batchCells_;  // where each batch page's counters are (LFU: PageCounts::locate)
  BatchSet batchPages_;              // this batch's pages, first seen first
  BatchSet batchRows_;               // its rows (counted only when pages hold several)
  std::vector<int32_t> batchSlot_;   // the slot of each batch page (-1: not resident)
  std::vector<uint32_t> batchSet_;   // the home set of each batch page (hashed once)
  std::vector<int32_t> batchLookup_; // per lookup: its page's index in batchPages_, or -2 - its hot row
  std::vector<Ticket> spareTickets_; // released tickets' vectors, kept for their capacity
  std::vector<int64_t> hotKeys_;
  std::vector<int32_t> hotValues_;
  std::unordered_map<uint64_t, Ticket> tickets_;
  uint64_t nextTicket_ = 1;
  PagerStats stats_;
};

}  // namespace engram
