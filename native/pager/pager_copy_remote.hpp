// The remote tier's copy engine: the pages live in a store JS talks to (Redis Cluster
// through a JS client), so the engine only queues jobs; JS takes them, fetches and
// verifies the pages, fills the cache rows and completes each job. A worker waiting on a
// ticket (waitAsync) blocks until then; the JS thread itself never may (it is the one
// fetching), so a wait there on pages still in flight fails at once instead of hanging.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pager/pager.hpp"

namespace engram {

class RemoteCopyEngine final : public CopyEngine {
 public:
  RemoteCopyEngine(const PagerGeometry& g, uint8_t* cacheData, uint8_t* cacheScales);

  uint64_t submit(std::vector<RowCopy> copies) override;
  void wait(uint64_t job, const std::vector<uint64_t>& jobs) override;
  double busySeconds() const override;

  struct Job {
    uint64_t id;
    std::vector<RowCopy> copies;
  };
  // The jobs submitted since the last call, for JS to fetch.
  std::vector<Job> takeJobs();
  // Copies `rows` rows (and fp8 scales) into the cache from dstRow, for job `job`. False
  // when the job is no longer wanted (abandoned: its ticket was released or waited on the
  // JS thread first): nothing is written then. Throws on rows outside the job's copies.
  bool fill(uint64_t job, int64_t dstRow, int64_t rows, const uint8_t* data, size_t dataBytes, const uint8_t* scales, size_t scaleBytes);
  // The job's pages as the store returned them: values[i] (lengths[i] bytes) is the
  // stored value of page pages[i], a 32-byte header (see src/table/remote/page-format.ts:
  // magic, version, the table's 8-byte tag, page, rows, payload bytes, CRC32C of the
  // payload), then the page's rows, then their scales. Every value is checked whole before
  // any row is written; then each of the job's copies is taken from its pages. Returns
  // kPagesWritten, kJobAbandoned (nothing written), or the index of the first value that
  // fails a check (nothing written; JS says what is wrong with it). Throws when a page the
  // job needs is not among `pages`. The values must not change during the call.
  static constexpr int64_t kPagesWritten = -1;
  static constexpr int64_t kJobAbandoned = -2;
  int64_t fillPages(uint64_t job, size_t count, const double* pages, const uint8_t* const* values, const size_t* lengths, const uint8_t tableTag[8]);
  // Ends a job: failure empty when every page arrived intact, else the error its waiters get.
  void complete(uint64_t job, const std::string& failure, double seconds);

 private:
  bool doneLocked(uint64_t job) const { return job <= settledUpTo_ || done_.count(job) > 0; }
  PagerGeometry g_;
  uint8_t* cacheData_;
  uint8_t* cacheScales_;
  std::thread::id jsThread_;
  mutable std::mutex mutex_;
  std::condition_variable doneCv_;
  std::vector<Job> pending_;                   // submitted, not yet taken by JS
  // Taken, not yet complete: each job's copies sorted by cache row (a fill is checked
  // against them with a binary search).
  std::map<uint64_t, std::vector<RowCopy>> inFlight_;
  bool insideJob(const std::vector<RowCopy>& sorted, int64_t dstRow, int64_t rows) const;
  std::set<uint64_t> done_;                    // ended (ok or failed) after settledUpTo_
  std::map<uint64_t, std::string> failures_;
  uint64_t submitted_ = 0;
  uint64_t settledUpTo_ = 0;  // every job up to here has ended (see complete)
  double busy_ = 0;
};

}  // namespace engram
