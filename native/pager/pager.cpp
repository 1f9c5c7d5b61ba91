// The pager's host logic (see pager.hpp). One mutex guards the page table; copies run on
// the engine outside it, and a wait never holds it.
#include "pager/pager.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <exception>

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <chrono>

#include "common/common.hpp"
#include "pager/pager.cuh"

namespace engram {

void* allocateHugePageBacked(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  if (bytes < 2 * kHuge) {
    // Cache-line aligned, so that a 64-byte block of the LFU sketch is one line.
    void* p = std::aligned_alloc(64, (std::max<size_t>(bytes, 1) + 63) / 64 * 64);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  void* p = std::aligned_alloc(kHuge, rounded);
  if (p == nullptr) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  ::madvise(p, rounded, MADV_HUGEPAGE);  // best effort
#endif
  return p;
}

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

void PageCounts::reset(int64_t pages, int64_t slots) {
  exact_.clear();
  sketch_.clear();
  if (pages <= kExactPages) {
    exact_.assign(static_cast<size_t>(pages), 0);
    return;
  }
  // As many counters as four rows of width near 2x the slots would hold (8 to 16 a slot),
  // as lines of 64.
  uint64_t width = 1u << 16;
  while (width < static_cast<uint64_t>(2 * std::max<int64_t>(slots, 1)) && width < (uint64_t{1} << 30)) width <<= 1;
  lines_ = kDepth * width / kLineCounters;
  sketch_.assign(static_cast<size_t>(lines_ * kLineCounters), 0);
}

Pager::Pager(const PagerGeometry& g, Eviction eviction, std::unique_ptr<CopyEngine> engine)
    : g_(g), eviction_(eviction), engine_(std::move(engine)) {
  EK_REQUIRE(g.rows > 0 && g.pageRows > 0 && g.slots >= 0 && g.hotRows >= 0, RangeError, "pager geometry out of range");
  EK_REQUIRE(g.slots > 0 || g.hotRows > 0, RangeError, "a pager needs at least one page slot or hot row");
  const int64_t pages = g.pages();
  EK_REQUIRE(g.slots <= pages || g.slots == 0, RangeError, "more page slots than the table has pages");
  EK_REQUIRE(pages < int64_t{UINT32_MAX}, RangeError,
             "the table has " + std::to_string(pages) + " pages, more than the page table's 2^32 - 2: use larger pages (pageRows)");
  EK_REQUIRE(g.cacheRows() <= INT32_MAX, RangeError, "the cache would hold more than 2^31 rows: use larger pages or a smaller cache");
  // Lookup counts per page only where LFU ranks by them.
  if (eviction == Eviction::Lfu) pageFreq_.reset(pages, g.slots);
  if (g.slots == pages) {
    identity_ = true;
    ways_ = 1;  // the whole table fits: page p lives in slot p, and nothing is ever evicted
    sets_ = pages;
  } else {
    ways_ = g.slots <= kOneSetSlots ? std::max<int64_t>(g.slots, 1) : kWays;
    sets_ = std::max<int64_t>(1, (g.slots + ways_ - 1) / ways_);
  }
  // Per set, 8 bytes a way: [pins u16][rank u8][uses u8][tag u32], so a set of 8 ways is
  // one cache line; the fill jobs, written at a miss, live apart.
  meta_.assign(static_cast<size_t>(sets_ * ways_ * kMetaBytes), 0);
  fill_.assign(static_cast<size_t>(g.slots), 0);
  if (eviction != Eviction::Direct) {
    for (int64_t s = 0; s < g.slots; ++s) rank(s) = static_cast<uint8_t>(s % ways_);
  }
  free_ = g.slots;
}

Pager::~Pager() {
  engine_.reset();  // joins the copy thread before the tables it writes go away
}

void BatchSet::reset(int64_t count) {
  // At most a quarter full: a value whose home is taken is a mispredicted branch, and at
  // half full (about 1.3 probes a value) the batch measured 4% slower for LRU; clearing
  // the larger table costs less than that.
  size_t capacity = 16;
  int bits = 4;
  while (capacity < static_cast<size_t>(4 * std::max<int64_t>(count, 1))) {
    capacity <<= 1;
    ++bits;
  }
  // The buffers grow to the largest batch seen; a batch uses (and clears) only the part
  // its own size needs.
  if (keys_.size() < capacity) {
    keys_.resize(capacity);
    index_.resize(capacity);
  }
  if (values_.size() < static_cast<size_t>(count)) {
    values_.resize(static_cast<size_t>(count));
    counts_.resize(static_cast<size_t>(count));
  }
  std::fill(keys_.begin(), keys_.begin() + static_cast<std::ptrdiff_t>(capacity), -1);
  mask_ = capacity - 1;
  shift_ = 64 - bits;
  size_ = 0;
}

[[gnu::always_inline]] inline int32_t BatchSet::add(int64_t value) {
  for (size_t i = home(value);; i = (i + 1) & mask_) {
    if (keys_[i] == value) {
      ++counts_[static_cast<size_t>(index_[i])];
      return index_[i];
    }
    if (keys_[i] < 0) {
      const int32_t at = static_cast<int32_t>(size_++);
      keys_[i] = value;
      index_[i] = at;
      values_[static_cast<size_t>(at)] = value;
      counts_[static_cast<size_t>(at)] = 1;
      return at;
    }
  }
}

namespace {
// A page's lookup count in the set's one byte: exact below 32, then a float with a 3-bit
// mantissa (within 12.5%) up to 2^32, so that LFU still ranks pages of many rows, whose
// counts pass 255 within a few batches (clamping them at 255 had made LFU plain LRU there).
uint8_t usesCode(uint32_t count) {
  if (count < 32) return static_cast<uint8_t>(count);
  const int e = 31 - __builtin_clz(count);  // 5..31
  return static_cast<uint8_t>(32 + (e - 5) * 8 + ((count >> (e - 3)) & 7));
}

// The way of eight holding `key`, or -1. Two 4-lane compares on x86 (SSE2 is in every
// x86-64 build); elsewhere a branch-free mask the compiler vectorises where it can.
int findTag8(const uint32_t* tags, uint32_t key) {
#if defined(__SSE2__)
  const __m128i k = _mm_set1_epi32(static_cast<int>(key));
  const __m128i lo = _mm_cmpeq_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tags)), k);
  const __m128i hi = _mm_cmpeq_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tags + 4)), k);
  const unsigned mask = static_cast<unsigned>(_mm_movemask_ps(_mm_castsi128_ps(lo))) |
                        static_cast<unsigned>(_mm_movemask_ps(_mm_castsi128_ps(hi))) << 4;
#else
  unsigned mask = 0;
  for (int w = 0; w < 8; ++w) mask |= static_cast<unsigned>(tags[w] == key) << w;
#endif
  return mask == 0 ? -1 : __builtin_ctz(mask);
}

// The way of a full 8-way set (meta as laid out in the ctor) that a missing page takes:
// its first idle free way, else its idle way of least key (LRU: released longest ago; LFU:
// fewest lookups, then released longest ago); -1 when every way is pinned. One 16-bit key
// a way and a horizontal minimum, with no branch per way: LRU's compare-and-branch loop
// mispredicted on most sets (where the oldest way lies is random). A set's recency ranks
// are a permutation of 0..7, so the age fits in 3 bits beside LFU's 8-bit count.
int chooseWay8(const uint8_t* meta, bool lfu) {
#if defined(__SSE2__)
  const __m128i zero = _mm_setzero_si128();
  const __m128i held = _mm_loadu_si128(reinterpret_cast<const __m128i*>(meta));
  const __m128i ranks = _mm_unpacklo_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(meta + 16)), zero);
  const __m128i emptyLo = _mm_cmpeq_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(meta + 32)), zero);
  const __m128i emptyHi = _mm_cmpeq_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(meta + 48)), zero);
  const __m128i empty = _mm_packs_epi32(emptyLo, emptyHi);  // 16-bit lanes: all ones where the tag is 0
  const __m128i pinned = _mm_xor_si128(_mm_cmpeq_epi16(held, zero), _mm_set1_epi16(-1));
  __m128i key = _mm_sub_epi16(_mm_set1_epi16(8), ranks);  // 1 + (7 - rank)
  if (lfu) {
    const __m128i counts = _mm_unpacklo_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(meta + 24)), zero);
    key = _mm_add_epi16(key, _mm_slli_epi16(counts, 3));
  }
  const __m128i none = _mm_set1_epi16(0x7fff);
  key = _mm_andnot_si128(empty, key);                // free: 0
  key = _mm_or_si128(_mm_and_si128(pinned, none), _mm_andnot_si128(pinned, key));
  __m128i least = _mm_min_epi16(key, _mm_shuffle_epi32(key, 0x4e));
  least = _mm_min_epi16(least, _mm_shuffle_epi32(least, 0xb1));
  least = _mm_min_epi16(least, _mm_shufflehi_epi16(_mm_shufflelo_epi16(least, 0xb1), 0xb1));
  if ((_mm_cvtsi128_si32(least) & 0xffff) == 0x7fff) return -1;
  const unsigned at = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi16(key, least)));
  return __builtin_ctz(at) / 2;
#else
  const uint16_t* held = reinterpret_cast<const uint16_t*>(meta);
  const uint32_t* tags = reinterpret_cast<const uint32_t*>(meta + 32);
  uint32_t best = 0x7fff;
  int way = -1;
  for (int w = 0; w < 8; ++w) {
    uint32_t key = 8u - meta[16 + w] + (lfu ? uint32_t{meta[24 + w]} << 3 : 0u);
    if (tags[w] == 0) key = 0;
    if (held[w] != 0) key = 0x7fff;
    way = key < best ? w : way;
    best = std::min(best, key);
  }
  return way;
#endif
}
}  // namespace

[[gnu::always_inline]] inline int32_t Pager::findSlot(int64_t page, size_t set) const {
  const uint32_t key = static_cast<uint32_t>(page + 1);
  const uint32_t* tags = setTags(set);
  const int64_t first = setFirst(set), ways = setEnd(set) - first;
  if (ways == 8) {
    if (const int w = findTag8(tags, key); w >= 0) return static_cast<int32_t>(first + w);
  } else {
    for (int64_t w = 0; w < ways; ++w) {
      if (tags[w] == key) return static_cast<int32_t>(first + w);
    }
  }
  if (elsewhere_.empty()) return -1;
  const int32_t* s = elsewhere_.find(static_cast<uint32_t>(page));
  return s == nullptr ? -1 : *s;
}

[[gnu::always_inline]] inline void Pager::touch(int64_t slot) {
  const size_t set = setOfSlot(slot);
  uint8_t* ranks = setMeta(set) + 2 * ways_;
  const int64_t ways = setEnd(set) - setFirst(set);
  const uint8_t r = rank(slot);
  for (int64_t w = 0; w < ways; ++w) ranks[w] = static_cast<uint8_t>(ranks[w] + (ranks[w] < r));
  rank(slot) = 0;
}

void Pager::forgetPage(int64_t slot) {
  const int64_t page = static_cast<int64_t>(tag(slot)) - 1;
  if (setOf(page) != setOfSlot(slot)) elsewhere_.erase(static_cast<uint32_t>(page));
}

int32_t Pager::sweep(bool wantFree) {
  for (int64_t n = 0; n < g_.slots; ++n) {
    const int64_t s = hand_;
    hand_ = hand_ + 1 == g_.slots ? 0 : hand_ + 1;
    if (pins(s) == 0 && (tag(s) == 0) == wantFree) return static_cast<int32_t>(s);
  }
  EK_THROW(Error, "the pager found no free or evictable slot where its counts promised one (a bug: please report it)");
}

[[gnu::always_inline]] inline int32_t Pager::placeMissing(size_t set, bool* home) {
  const int64_t first = setFirst(set), ways = setEnd(set) - first;
  const uint8_t* meta = setMeta(set);
  const uint16_t* held = reinterpret_cast<const uint16_t*>(meta);
  const uint8_t* ranks = meta + 2 * ways_;
  const uint8_t* counts = meta + 3 * ways_;
  const uint32_t* tags = setTags(set);
  const bool lfu = eviction_ == Eviction::Lfu, direct = eviction_ == Eviction::Direct;
  *home = true;
  // The victim is the idle way released longest ago (LRU), or with the fewest lookups and
  // then released longest ago (LFU): chooseWay8 for a full set of 8 ways, a loop for the
  // others (a short last set, caches of up to 64 slots) and for Direct, which takes free
  // ways only.
  int64_t victim = -1;
  if (ways == kWays && !direct) {
    const int w = chooseWay8(meta, lfu);
    if (w >= 0 && tags[w] == 0) {
      --free_;
      return static_cast<int32_t>(first + w);
    }
    victim = w;
  } else {
    for (int64_t w = 0; w < ways; ++w) {
      if (held[w] != 0) continue;
      if (tags[w] == 0) {
        --free_;
        return static_cast<int32_t>(first + w);
      }
      if (direct) continue;
      const bool before = victim < 0 || (lfu && counts[w] != counts[victim] ? counts[w] < counts[victim] : ranks[w] > ranks[victim]);
      if (before) victim = w;
    }
  }
  if (victim >= 0) {
    const int64_t old = static_cast<int64_t>(tags[victim]) - 1;
    if (setOf(old) != set) elsewhere_.erase(static_cast<uint32_t>(old));  // it had come from another set
    victim += first;
  } else {
    // Only when its set is all pinned does a page go elsewhere: a free slot first, then any
    // evictable one. (Taking other sets' free ways while the cache fills would push their
    // own pages out of them in turn.)
    *home = false;
    if (free_ > 0) {
      --free_;
      return sweep(true);
    }
    victim = sweep(false);
    forgetPage(victim);
  }
  --evictable_;
  stats_.evictions += 1;
  return static_cast<int32_t>(victim);
}

int64_t Pager::hotIndex(int64_t row) const {
  return hotRowIndex(row, hotKeys_.data(), hotValues_.data(), static_cast<int64_t>(hotKeys_.size()));
}

template <typename T>
uint64_t Pager::acquireRows(const T* rows, int64_t count, int32_t* translated) {
  std::lock_guard<std::mutex> lock(mutex_);
  const BatchPlan plan = planBatch(rows, count);  // throws before anything changes
  admit(plan);                                     // likewise
  Ticket t = assignSlots(plan.missingPages);
  if (translated != nullptr) translate(rows, count, t, translated);
  return record(plan, count, std::move(t));
}

template <typename T>
Pager::BatchPlan Pager::planBatch(const T* rows, int64_t count) {
  BatchPlan plan;
  // The batch's distinct pages (and rows, where a page holds several), first seen first.
  // The sets are scratch: a row out of range throws here before the pager changes.
  batchPages_.reset(count);
  const bool rowPages = g_.pageRows == 1;
  if (!rowPages) batchRows_.reset(count);
  batchLookup_.resize(static_cast<size_t>(count));
  // A page's set line (tags, pins, ranks: one line for 8 ways) and LFU's counter line are
  // requested when the page is first seen, so deduplication's own work paces the requests
  // and overlaps their misses; by the lookups below the lines have arrived. (Requesting
  // them in a second pass, a fixed distance ahead, left that pass waiting on memory.)
  const bool counted = !pageFreq_.empty();
  if (batchSet_.size() < static_cast<size_t>(count)) batchSet_.resize(static_cast<size_t>(count));
  if (counted && batchCells_.size() < static_cast<size_t>(count)) batchCells_.resize(static_cast<size_t>(count));
  const auto firstSeen = [&](size_t at, int64_t page) {
    const size_t set = setOf(page);
    batchSet_[at] = static_cast<uint32_t>(set);
    __builtin_prefetch(setMeta(set), 1);
    if (counted) batchCells_[at] = pageFreq_.locate(page);  // and loads their line
  };
  // One-row pages and no hot rows: the rows are checked by their least and greatest (a
  // loop the compiler vectorises), then deduplicated in one tight loop. A row out of range
  // leaves that to the general loop, which names it.
  bool done = false;
  if (rowPages && hotKeys_.empty() && count > 0) {
    T least = rows[0], greatest = rows[0];
    for (int64_t i = 1; i < count; ++i) {
      least = std::min(least, rows[i]);
      greatest = std::max(greatest, rows[i]);
    }
    if (static_cast<int64_t>(least) >= 0 && static_cast<int64_t>(greatest) < g_.rows) {
      batchPages_.addAll(rows, count, batchLookup_.data(), firstSeen);
      done = true;
    }
  }
  for (int64_t i = 0; i < count && !done; ++i) {
    const int64_t r = static_cast<int64_t>(rows[i]);
    if (r < 0 || r >= g_.rows) {
      EK_THROW(RangeError, "row id " + std::to_string(r) + " (lookup " + std::to_string(i) + ") is outside the table's " +
                               std::to_string(g_.rows) + " rows");
    }
    if (!hotKeys_.empty()) {
      if (const int64_t hot = hotIndex(r); hot >= 0) {
        ++plan.hotHits;
        batchLookup_[static_cast<size_t>(i)] = static_cast<int32_t>(-2 - hot);
        continue;
      }
    }
    const int64_t page = rowPages ? r : r / g_.pageRows;
    const size_t known = batchPages_.size();
    const int32_t at = batchPages_.add(page);
    if (batchPages_.size() != known) firstSeen(static_cast<size_t>(at), page);
    batchLookup_[static_cast<size_t>(i)] = at;
    if (!rowPages) batchRows_.add(r);
  }
  const size_t pages = batchPages_.size();
  plan.uniqueRows = static_cast<int64_t>(rowPages ? pages : batchRows_.size());
  batchSlot_.resize(pages);
  for (size_t i = 0; i < pages; ++i) {
    const size_t set = batchSet_[i];
    const int32_t s = findSlot(batchPages_.value(i), set);
    batchSlot_[i] = s;
    if (s < 0) {
      ++plan.missingPages;
      __builtin_prefetch(&fill_[static_cast<size_t>(setFirst(set))], 1);  // written when it is filled
    } else if (const uint32_t held = pins(s); held == 0) ++plan.residentIdle;
    else if (held == kMaxPins) {
      EK_THROW(RangeError, "page " + std::to_string(batchPages_.value(i)) + " is held by " + std::to_string(kMaxPins) +
                               " tickets in flight, the most one page can have: release tickets before prefetching more");
    }
  }
  return plan;
}

void Pager::admit(const BatchPlan& plan) const {
  const int64_t freeable = free_ + evictable_ - plan.residentIdle;
  if (plan.missingPages > freeable) {
    EK_THROW(RangeError, "the cache has " + std::to_string(g_.slots) + " page slots but this batch needs " +
                             std::to_string(batchPages_.size()) + " pages (" + std::to_string(plan.missingPages) + " missing, " +
                             std::to_string(freeable) +
                             " slots free or evictable while other tickets are in flight): raise cacheBytes, use smaller pages, or split the batch");
  }
}

Pager::Ticket Pager::newTicket() {
  if (spareTickets_.empty()) return Ticket{};
  Ticket t = std::move(spareTickets_.back());
  spareTickets_.pop_back();
  t.slots.clear();
  t.missed.clear();
  t.jobs.clear();
  t.lastJob = 0;
  return t;
}

Pager::Ticket Pager::assignSlots(int64_t missing) {
  Ticket t = newTicket();
  std::vector<RowCopy> copies;
  copies.reserve(static_cast<size_t>(missing));  // one allocation, not one per doubling
  t.missed.reserve(static_cast<size_t>(missing));
  const size_t pages = batchPages_.size();
  t.slots.assign(pages, -1);  // one slot per batch page, in batchPages_ order
  // The batch's resident pages are pinned first, so that no slot a later page of the same
  // batch lives in is taken as a victim for one of its missing pages.
  // Counted in integers and added to the (floating) stats once: a += on a double field per
  // page chains every page's update through memory.
  int64_t pageHits = 0, rowHits = 0, pageMisses = 0, rowMisses = 0, bytesCopied = 0;
  for (size_t i = 0; i < pages; ++i) {
    const int32_t s = batchSlot_[i];
    if (s < 0) continue;
    ++pageHits;
    rowHits += batchPages_.count(i);
    uint16_t& held = pins(s);
    if (held == 0) {
      --evictable_;
    } else {
      t.jobs.push_back(fillJobOf(s));  // pinned by another ticket: its copy may still run
    }
    ++held;
    t.slots[i] = s;
  }
  for (size_t i = 0; i < pages; ++i) {
    const int64_t page = batchPages_.value(i);
    const int64_t lookups = batchPages_.count(i);
    if (i + kPrefetchAhead < pages) {
      // Again here: by now the lines planBatch loaded may have left the L1.
      const size_t ahead = i + kPrefetchAhead;
      if (batchSlot_[ahead] < 0) __builtin_prefetch(setMeta(batchSet_[ahead]), 1);
    }
    uint8_t uses = 0;
    // The counters' line was loaded by planBatch and is still in the L2.
    if (!pageFreq_.empty()) uses = usesCode(pageFreq_.add(batchCells_[i], static_cast<uint64_t>(lookups)));
    if (batchSlot_[i] >= 0) {
      if (eviction_ == Eviction::Lfu) this->uses(batchSlot_[i]) = uses;
      continue;
    }
    ++pageMisses;
    rowMisses += lookups;
    const size_t set = batchSet_[i];
    bool home = true;
    const int32_t s = placeMissing(set, &home);
    tag(s) = static_cast<uint32_t>(page + 1);
    ++pins(s);
    if (!home && setOfSlot(s) != set) elsewhere_.insert(static_cast<uint32_t>(page), s);
    if (eviction_ == Eviction::Lfu) this->uses(s) = uses;
    const int64_t first = page * g_.pageRows;
    const int64_t rowsInPage = std::min(g_.pageRows, g_.rows - first);  // the last page may be short
    copies.push_back(RowCopy{first, static_cast<int64_t>(s) * g_.pageRows, rowsInPage});
    bytesCopied += rowsInPage * (g_.rowBytes + g_.scaleRowBytes);
    t.missed.push_back(s);
    t.slots[i] = s;
  }
  stats_.pageHits += static_cast<double>(pageHits);
  stats_.rowHits += static_cast<double>(rowHits);
  stats_.pageMisses += static_cast<double>(pageMisses);
  stats_.rowMisses += static_cast<double>(rowMisses);
  stats_.bytesCopied += static_cast<double>(bytesCopied);
  if (!copies.empty()) {
    const uint64_t job = engine_->submit(std::move(copies));
    lastJob_ = job;
    for (int32_t s : t.missed) fill(s) = static_cast<uint32_t>(job);
    t.jobs.push_back(job);
  }
  for (uint64_t j : t.jobs) t.lastJob = std::max(t.lastJob, j);
  return t;
}

template <typename T>
void Pager::translate(const T* rows, int64_t count, const Ticket& t, int32_t* translated) const {
  // planBatch left each lookup's batch page (or hot row) in batchLookup_: no hashing here.
  if (g_.pageRows == 1 && hotKeys_.empty()) {
    for (int64_t i = 0; i < count; ++i) translated[i] = t.slots[static_cast<size_t>(batchLookup_[static_cast<size_t>(i)])];
    return;
  }
  for (int64_t i = 0; i < count; ++i) {
    const int32_t at = batchLookup_[static_cast<size_t>(i)];
    const int64_t hot = at < 0 ? -2 - static_cast<int64_t>(at) : -1;
    const int32_t slot = at < 0 ? -1 : t.slots[static_cast<size_t>(at)];
    translated[i] = static_cast<int32_t>(pagedCacheRow(static_cast<int64_t>(rows[i]), g_.pageRows, slot, g_.slots, hot));
  }
}

uint64_t Pager::record(const BatchPlan& plan, int64_t count, Ticket t) {
  stats_.lookups += static_cast<double>(count);
  stats_.uniqueRows += static_cast<double>(plan.uniqueRows);
  stats_.uniquePages += static_cast<double>(batchPages_.size());
  stats_.hotRowHits += static_cast<double>(plan.hotHits);
  stats_.rowHits += static_cast<double>(plan.hotHits);
  stats_.tickets += 1;
  const uint64_t id = nextTicket_++;
  tickets_.emplace(id, std::move(t));
  return id;
}

uint64_t Pager::acquire(const int32_t* rows32, const int64_t* rows64, int64_t count, int32_t* translated) {
  return rows64 != nullptr ? acquireRows(rows64, count, translated) : acquireRows(rows32, count, translated);
}

// Waits for the ticket's copies; the error of one that failed (null when all landed),
// after which the pages the ticket filled are not resident any more (a failed copy must
// never be served as a hit).
std::exception_ptr Pager::settleCopies(uint64_t ticket, double* waitedSeconds) {
  uint64_t last = 0;
  std::vector<uint64_t> jobs;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = tickets_.find(ticket);
    EK_REQUIRE(it != tickets_.end(), Error, "ticket " + std::to_string(ticket) + " is not in flight (already released?)");
    last = it->second.lastJob;
    jobs = it->second.jobs;
  }
  if (last == 0) return nullptr;
  const double start = now();
  try {
    engine_->wait(last, jobs);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    *waitedSeconds = now() - start;
    const auto it = tickets_.find(ticket);
    if (it != tickets_.end()) {
      for (int32_t s : it->second.missed) {
        if (tag(s) == 0) continue;
        forgetPage(s);
        tag(s) = 0;
      }
    }
    return std::current_exception();
  }
  *waitedSeconds = now() - start;
  return nullptr;
}

void Pager::wait(uint64_t ticket) {
  double waited = 0;
  const std::exception_ptr failure = settleCopies(ticket, &waited);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.stallSeconds += waited;
  }
  if (failure) std::rethrow_exception(failure);
}

void Pager::release(uint64_t ticket) {
  // A ticket released without a wait (unused, or another layer's wait failed first) still
  // has to learn how its copies ended, and a slot must not be reused while its copy runs.
  double waited = 0;
  settleCopies(ticket, &waited);
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = tickets_.find(ticket);
  EK_REQUIRE(it != tickets_.end(), Error, "ticket " + std::to_string(ticket) + " is not in flight (already released?)");
  const std::vector<int32_t>& slots = it->second.slots;
  // The slots' set lines, a fixed distance ahead: a forward has run since acquire() and
  // has pushed them out of the caches.
  const size_t n = slots.size();
  for (size_t i = 0; i < std::min(n, kPrefetchAhead); ++i) __builtin_prefetch(setMeta(setOfSlot(slots[i])), 1);
  for (size_t i = 0; i < n; ++i) {
    if (i + kPrefetchAhead < n) __builtin_prefetch(setMeta(setOfSlot(slots[i + kPrefetchAhead])), 1);
    const int32_t s = slots[i];
    if (--pins(s) > 0) continue;
    if (tag(s) == 0) {
      ++free_;  // a failed copy
    } else if (eviction_ == Eviction::Direct) {
      forgetPage(s);  // no reuse across batches
      tag(s) = 0;
      ++free_;
    } else {
      ++evictable_;
      touch(s);
    }
  }
  if (spareTickets_.size() < 8) spareTickets_.push_back(std::move(it->second));  // its vectors' capacity serves the next one
  tickets_.erase(it);
}

void Pager::setHotRows(const int64_t* rows, int64_t count) {
  std::lock_guard<std::mutex> lock(mutex_);
  EK_REQUIRE(tickets_.empty(), Error, "hot rows can only change while no ticket is in flight");
  EK_REQUIRE(count >= 0 && count <= g_.hotRows, RangeError,
             std::to_string(count) + " hot rows asked for but the hot region holds " + std::to_string(g_.hotRows));
  for (int64_t i = 0; i < count; ++i) {
    EK_REQUIRE(rows[i] >= 0 && rows[i] < g_.rows, RangeError,
               "hot row " + std::to_string(rows[i]) + " is outside the table's " + std::to_string(g_.rows) + " rows");
  }
  int64_t capacity = 0;
  if (count > 0) {
    capacity = 1;
    while (capacity < 2 * count) capacity <<= 1;
  }
  std::vector<int64_t> keys(capacity, -1);
  std::vector<int32_t> values(capacity, -1);
  std::vector<RowCopy> copies;
  int32_t next = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (hotRowIndex(rows[i], keys.data(), values.data(), capacity) >= 0) continue;  // listed twice
    uint64_t h = static_cast<uint64_t>(rows[i]) * 0x9e3779b97f4a7c15ull;
    for (int64_t probe = 0;; ++probe) {
      const int64_t at = static_cast<int64_t>((h >> 17) + static_cast<uint64_t>(probe)) & (capacity - 1);
      if (keys[at] < 0) {
        keys[at] = rows[i];
        values[at] = next;
        break;
      }
    }
    copies.push_back(RowCopy{rows[i], g_.slots * g_.pageRows + next, 1});
    stats_.bytesCopied += static_cast<double>(g_.rowBytes + g_.scaleRowBytes);
    ++next;
  }
  if (!copies.empty()) {
    const uint64_t job = engine_->submit(std::move(copies));
    lastJob_ = job;
    engine_->wait(job, {job});
  }
  hotKeys_ = std::move(keys);
  hotValues_ = std::move(values);
}

PagerStats Pager::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void Pager::resetStats() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_ = PagerStats{};
}

int64_t Pager::residentPages() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return g_.slots - free_;
}

int64_t Pager::ticketsInFlight() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(tickets_.size());
}

}  // namespace engram
