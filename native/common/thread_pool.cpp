#include "common/thread_pool.hpp"
#include "common/mapped_guard.hpp"

#include <algorithm>
#include <chrono>
#include <exception>

#include <pthread.h>

namespace engram {

int hardwareThreads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void setThreadName(const std::string& name) {
#if defined(__linux__)
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
#else
  (void)name;
#endif
}

ThreadPool::ThreadPool(int workers, const char* name) : name_(name) {
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this, i] { workerLoop(i + 1); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

// Back-to-back calls (a decode loop, a benchmark) arrive within microseconds: a worker
// that has just finished, and a caller waiting for its workers, poll for this long before
// sleeping on the condition variable, which costs tens of microseconds to wake from.
static constexpr auto kSpin = std::chrono::microseconds(50);

static inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

template <typename Done>
static void spinUntil(Done done) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (int i = 1; !done(); ++i) {
    cpuRelax();
    if ((i & 63) == 0 && std::chrono::steady_clock::now() > until) return;
  }
}

static void chunkRange(int64_t count, int chunks, int index, int64_t* begin, int64_t* end) {
  const int64_t base = count / chunks, extra = count % chunks;
  *begin = index * base + std::min<int64_t>(index, extra);
  *end = *begin + base + (index < extra ? 1 : 0);
}

void ThreadPool::workerLoop(int index) {
  setThreadName(name_ + "-" + std::to_string(index));
  // Every task here is the addon's native work, whose owner checks for mapped-file faults
  // when it ends: guarded for the thread's whole life.
  const MappedReadGuard guard;
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int64_t, int64_t)>* body;
    int64_t count;
    int chunks;
    spinUntil([&] { return stop_.load() || generation_.load(std::memory_order_acquire) != seen; });
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
      if (stop_) return;
      seen = generation_.load();
      body = body_;
      count = count_;
      chunks = chunks_;
    }
    if (index < chunks) {
      int64_t b, e;
      chunkRange(count, chunks, index, &b, &e);
      try {
        if (b < e) (*body)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);  // the caller checks pending_ under it
        done_.notify_one();
      }
    }
  }
}

void ThreadPool::parallelFor(int64_t count, int threads,
                             const std::function<void(int64_t, int64_t)>& body) {
  if (count <= 0) return;
  int chunks = threads <= 0 ? maxThreads() : std::min(threads, maxThreads());
  chunks = static_cast<int>(std::min<int64_t>(chunks, count));
  if (chunks <= 1) {
    body(0, count);
    return;
  }
  std::lock_guard<std::mutex> call(callMutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    body_ = &body;
    count_ = count;
    chunks_ = chunks;
    pending_ = chunks - 1;
    error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  std::exception_ptr mine;
  try {
    int64_t b, e;
    chunkRange(count, chunks, 0, &b, &e);
    body(b, e);
  } catch (...) {
    mine = std::current_exception();
  }
  spinUntil([&] { return pending_.load(std::memory_order_acquire) == 0; });
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return pending_.load() == 0; });
  body_ = nullptr;
  if (mine) std::rethrow_exception(mine);
  if (error_) std::rethrow_exception(error_);
}

}  // namespace engram
