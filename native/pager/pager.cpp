// The pager's host logic (see pager.hpp). One mutex guards the page table; copies run on
// the engine outside it, and a wait never holds it.
#include "pager/pager.hpp"

#include <exception>

#include <algorithm>
#include <chrono>

#include "common/common.hpp"
#include "pager/pager.cuh"

namespace engram {

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
  width_ = 1u << 16;
  while (width_ < static_cast<uint64_t>(8 * std::max<int64_t>(slots, 1)) && width_ < (uint64_t{1} << 28)) width_ <<= 1;
  sketch_.assign(static_cast<size_t>(kDepth * width_), 0);
}

uint64_t PageCounts::cell(int row, int64_t page) const {
  // SplitMix64 of (page, row): independent hashes per row.
  uint64_t z = static_cast<uint64_t>(page) * 0x9e3779b97f4a7c15ull + (static_cast<uint64_t>(row) + 1) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<uint64_t>(row) * width_ + (z & (width_ - 1));
}

uint32_t PageCounts::get(int64_t page) const {
  if (!exact_.empty()) return exact_[page];
  uint32_t least = UINT32_MAX;
  for (int r = 0; r < kDepth; ++r) least = std::min(least, sketch_[cell(r, page)]);
  return least;
}

void PageCounts::add(int64_t page, uint64_t n) {
  if (!exact_.empty()) {
    exact_[page] = static_cast<uint32_t>(std::min<uint64_t>(UINT32_MAX, exact_[page] + n));
    return;
  }
  // Conservative update: raise only the cells below the new estimate.
  const uint32_t target = static_cast<uint32_t>(std::min<uint64_t>(UINT32_MAX, get(page) + n));
  for (int r = 0; r < kDepth; ++r) {
    uint32_t& c = sketch_[cell(r, page)];
    c = std::max(c, target);
  }
}

Pager::Pager(const PagerGeometry& g, Eviction eviction, std::unique_ptr<CopyEngine> engine)
    : g_(g), eviction_(eviction), engine_(std::move(engine)), pageSlot_(g.slots) {
  EK_REQUIRE(g.rows > 0 && g.pageRows > 0 && g.slots >= 0 && g.hotRows >= 0, RangeError, "pager geometry out of range");
  EK_REQUIRE(g.slots > 0 || g.hotRows > 0, RangeError, "a pager needs at least one page slot or hot row");
  const int64_t pages = g.pages();
  EK_REQUIRE(g.slots <= pages || g.slots == 0, RangeError, "more page slots than the table has pages");
  EK_REQUIRE(g.cacheRows() <= INT32_MAX, RangeError, "the cache would hold more than 2^31 rows: use larger pages or a smaller cache");
  // Lookup counts per page only where LFU ranks by them.
  if (eviction == Eviction::Lfu) pageFreq_.reset(pages, g.slots);
  slotPage_.assign(g.slots, -1);
  slotPins_.assign(g.slots, 0);
  slotLastUse_.assign(g.slots, 0);
  slotJob_.assign(g.slots, 0);
  slotKey_.assign(g.slots, Key{});
  lruPrev_.assign(g.slots, -1);
  lfuPos_.assign(g.slots, -1);
  lruNext_.assign(g.slots, -1);
  freeSlots_.reserve(g.slots);
  for (int64_t s = g.slots - 1; s >= 0; --s) freeSlots_.push_back(s);  // slot 0 first
}

Pager::~Pager() {
  engine_.reset();  // joins the copy thread before the tables it writes go away
}

PageMap::PageMap(int64_t entries) {
  size_t capacity = 16;
  int bits = 4;
  while (capacity < static_cast<size_t>(2 * std::max<int64_t>(entries, 1))) {
    capacity <<= 1;
    ++bits;
  }
  keys_.assign(capacity, -1);
  values_.assign(capacity, -1);
  mask_ = capacity - 1;
  shift_ = 64 - bits;
}

int32_t PageMap::find(int64_t page) const {
  for (size_t i = home(page);; i = (i + 1) & mask_) {
    if (keys_[i] == page) return values_[i];
    if (keys_[i] < 0) return -1;
  }
}

void PageMap::insert(int64_t page, int32_t slot) {
  size_t i = home(page);
  while (keys_[i] >= 0 && keys_[i] != page) i = (i + 1) & mask_;
  keys_[i] = page;
  values_[i] = slot;
}

void PageMap::erase(int64_t page) {
  size_t i = home(page);
  while (keys_[i] != page) {
    if (keys_[i] < 0) return;
    i = (i + 1) & mask_;
  }
  // Backward shift: move later entries of the probe run into the hole when their home
  // position does not lie cyclically in (hole, entry].
  for (size_t j = (i + 1) & mask_; keys_[j] >= 0; j = (j + 1) & mask_) {
    const size_t h = home(keys_[j]);
    const bool stays = (i <= j) ? (i < h && h <= j) : (i < h || h <= j);
    if (stays) continue;
    keys_[i] = keys_[j];
    values_[i] = values_[j];
    i = j;
  }
  keys_[i] = -1;
  values_[i] = -1;
}

Pager::Key Pager::keyOf(int64_t slot) const {
  const uint64_t last = slotLastUse_[slot];
  if (eviction_ == Eviction::Lfu) return Key{pageFreq_.get(slotPage_[slot]), last, slot};
  return Key{last, 0, slot};
}

void Pager::makeEvictable(int64_t slot) {
  slotKey_[slot] = keyOf(slot);
  if (eviction_ == Eviction::Lfu) {
    lfuPos_[slot] = static_cast<int64_t>(lfuHeap_.size());
    lfuHeap_.push_back(slot);
    lfuSiftUp(lfuHeap_.size() - 1);
    return;
  }
  // Tickets are usually released in the order they were taken: walking back from the
  // tail finds the place in a step or two.
  int64_t after = lruTail_;
  while (after >= 0 && slotKey_[after] > slotKey_[slot]) after = lruPrev_[after];
  const int64_t before = after >= 0 ? lruNext_[after] : lruHead_;
  lruPrev_[slot] = after;
  lruNext_[slot] = before;
  if (after >= 0) lruNext_[after] = slot;
  else lruHead_ = slot;
  if (before >= 0) lruPrev_[before] = slot;
  else lruTail_ = slot;
  ++lruCount_;
}

void Pager::removeEvictable(int64_t slot) {
  if (eviction_ == Eviction::Lfu) {
    const size_t i = static_cast<size_t>(lfuPos_[slot]);
    const int64_t last = lfuHeap_.back();
    lfuHeap_.pop_back();
    lfuPos_[slot] = -1;
    if (last != slot) {
      lfuHeap_[i] = last;
      lfuPos_[last] = static_cast<int64_t>(i);
      lfuSiftUp(i);
      lfuSiftDown(static_cast<size_t>(lfuPos_[last]));
    }
    return;
  }
  const int64_t p = lruPrev_[slot], n = lruNext_[slot];
  if (p >= 0) lruNext_[p] = n;
  else lruHead_ = n;
  if (n >= 0) lruPrev_[n] = p;
  else lruTail_ = p;
  lruPrev_[slot] = lruNext_[slot] = -1;
  --lruCount_;
}

void Pager::lfuSiftUp(size_t i) {
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (!lfuLess(lfuHeap_[i], lfuHeap_[parent])) break;
    std::swap(lfuHeap_[i], lfuHeap_[parent]);
    lfuPos_[lfuHeap_[i]] = static_cast<int64_t>(i);
    lfuPos_[lfuHeap_[parent]] = static_cast<int64_t>(parent);
    i = parent;
  }
}

void Pager::lfuSiftDown(size_t i) {
  for (;;) {
    const size_t l = 2 * i + 1, r = l + 1;
    size_t best = i;
    if (l < lfuHeap_.size() && lfuLess(lfuHeap_[l], lfuHeap_[best])) best = l;
    if (r < lfuHeap_.size() && lfuLess(lfuHeap_[r], lfuHeap_[best])) best = r;
    if (best == i) return;
    std::swap(lfuHeap_[i], lfuHeap_[best]);
    lfuPos_[lfuHeap_[i]] = static_cast<int64_t>(i);
    lfuPos_[lfuHeap_[best]] = static_cast<int64_t>(best);
    i = best;
  }
}

int64_t Pager::popVictim() {
  const int64_t slot = eviction_ == Eviction::Lfu ? lfuHeap_.front() : lruHead_;
  removeEvictable(slot);
  return slot;
}

int64_t Pager::hotIndex(int64_t row) const {
  return hotRowIndex(row, hotKeys_.data(), hotValues_.data(), static_cast<int64_t>(hotKeys_.size()));
}

template <typename T>
uint64_t Pager::acquireRows(const T* rows, int64_t count, int32_t* translated) {
  std::lock_guard<std::mutex> lock(mutex_);
  const BatchPlan plan = planBatch(rows, count);  // throws before anything changes
  admit(plan);                                     // likewise
  Ticket t = assignSlots(plan);
  if (translated != nullptr) translate(rows, count, plan, t, translated);
  return record(plan, count, std::move(t));
}

template <typename T>
Pager::BatchPlan Pager::planBatch(const T* rows, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const int64_t r = static_cast<int64_t>(rows[i]);
    if (r < 0 || r >= g_.rows) {
      EK_THROW(RangeError, "row id " + std::to_string(r) + " (lookup " + std::to_string(i) + ") is outside the table's " +
                               std::to_string(g_.rows) + " rows");
    }
  }
  BatchPlan plan;
  std::vector<int64_t>& paged = scratch_;  // the rows the hot region does not serve
  paged.clear();
  for (int64_t i = 0; i < count; ++i) {
    const int64_t r = static_cast<int64_t>(rows[i]);
    if (!hotKeys_.empty() && hotIndex(r) >= 0) {
      ++plan.hotHits;
      continue;
    }
    paged.push_back(r);
  }
  std::sort(paged.begin(), paged.end());
  for (size_t i = 0; i < paged.size(); ++i) plan.uniqueRows += i == 0 || paged[i] != paged[i - 1];
  // Rows sorted -> pages sorted; run lengths give lookups per page.
  for (int64_t r : paged) {
    const int64_t page = r / g_.pageRows;
    if (plan.pageLookups.empty() || plan.pageLookups.back().first != page) plan.pageLookups.emplace_back(page, 0);
    ++plan.pageLookups.back().second;
  }
  for (const auto& [page, lookups] : plan.pageLookups) {
    const int32_t s = slotOf(page);
    if (s < 0) ++plan.missingPages;
    else if (slotPins_[s] == 0) ++plan.residentIdle;
  }
  return plan;
}

void Pager::admit(const BatchPlan& plan) const {
  const int64_t freeable = static_cast<int64_t>(freeSlots_.size()) + evictableCount() - plan.residentIdle;
  if (plan.missingPages > freeable) {
    EK_THROW(RangeError, "the cache has " + std::to_string(g_.slots) + " page slots but this batch needs " +
                             std::to_string(plan.pageLookups.size()) + " pages (" + std::to_string(plan.missingPages) + " missing, " +
                             std::to_string(freeable) +
                             " slots free or evictable while other tickets are in flight): raise cacheBytes, use smaller pages, or split the batch");
  }
}

Pager::Ticket Pager::assignSlots(const BatchPlan& plan) {
  ++tick_;
  Ticket t;
  std::vector<RowCopy> copies;
  for (const auto& [page, lookups] : plan.pageLookups) {
    if (!pageFreq_.empty()) pageFreq_.add(page, lookups);
    int64_t s = slotOf(page);
    if (s >= 0) {
      stats_.pageHits += 1;
      stats_.rowHits += static_cast<double>(lookups);
      if (slotPins_[s] == 0) removeEvictable(s);
      if (slotJob_[s] != 0) t.jobs.push_back(slotJob_[s]);  // may still be in flight
    } else {
      stats_.pageMisses += 1;
      stats_.rowMisses += static_cast<double>(lookups);
      if (!freeSlots_.empty()) {
        s = freeSlots_.back();
        freeSlots_.pop_back();
      } else {
        s = popVictim();
        pageSlot_.erase(slotPage_[s]);
        stats_.evictions += 1;
      }
      pageSlot_.insert(page, static_cast<int32_t>(s));
      slotPage_[s] = page;
      const int64_t first = page * g_.pageRows;
      const int64_t rowsInPage = std::min(g_.pageRows, g_.rows - first);  // the last page may be short
      copies.push_back(RowCopy{first, s * g_.pageRows, rowsInPage});
      stats_.bytesCopied += static_cast<double>(rowsInPage * (g_.rowBytes + g_.scaleRowBytes));
      t.missed.push_back(s);
    }
    ++slotPins_[s];
    slotLastUse_[s] = tick_;
    t.slots.push_back(s);  // one slot per page, in page order
  }
  if (!copies.empty()) {
    const uint64_t job = engine_->submit(std::move(copies));
    for (int64_t s : t.missed) slotJob_[s] = job;
    t.jobs.push_back(job);
  }
  for (uint64_t j : t.jobs) t.lastJob = std::max(t.lastJob, j);
  return t;
}

template <typename T>
void Pager::translate(const T* rows, int64_t count, const BatchPlan& plan, const Ticket& t, int32_t* translated) const {
  const auto& pages = plan.pageLookups;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t r = static_cast<int64_t>(rows[i]);
    const int64_t hot = hotKeys_.empty() ? -1 : hotIndex(r);
    int64_t slot = -1;
    if (hot < 0) {  // the row's page is in the plan, which is sorted: its index is its slot's
      const int64_t page = r / g_.pageRows;
      const auto it = std::lower_bound(pages.begin(), pages.end(), page, [](const std::pair<int64_t, int64_t>& a, int64_t b) { return a.first < b; });
      slot = t.slots[static_cast<size_t>(it - pages.begin())];
    }
    translated[i] = static_cast<int32_t>(pagedCacheRow(r, g_.pageRows, static_cast<int32_t>(slot), g_.slots, hot));
  }
}

uint64_t Pager::record(const BatchPlan& plan, int64_t count, Ticket t) {
  stats_.lookups += static_cast<double>(count);
  stats_.uniqueRows += static_cast<double>(plan.uniqueRows);
  stats_.uniquePages += static_cast<double>(plan.pageLookups.size());
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
      for (int64_t s : it->second.missed) {
        if (slotPage_[s] >= 0) pageSlot_.erase(slotPage_[s]);
        slotPage_[s] = -1;
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
  for (int64_t s : it->second.slots) {
    if (--slotPins_[s] > 0) continue;
    if (slotPage_[s] < 0) {
      freeSlots_.push_back(s);  // a failed copy
    } else if (eviction_ == Eviction::Direct) {
      pageSlot_.erase(slotPage_[s]);  // no reuse across batches
      slotPage_[s] = -1;
      freeSlots_.push_back(s);
    } else {
      makeEvictable(s);
    }
  }
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
  return g_.slots - static_cast<int64_t>(freeSlots_.size());
}

int64_t Pager::ticketsInFlight() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(tickets_.size());
}

}  // namespace engram
