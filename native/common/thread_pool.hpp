// A small fixed pool for the CPU backend. parallelFor splits [0, count) into contiguous
// chunks, one per thread, the calling thread taking the first; results never depend on
// the thread count because every index is computed by the same body.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace engram {

class ThreadPool {
 public:
  // name: the workers' thread names, with their index ("ek-pool-1"), as profilers and
  // debuggers show them (at most 12 characters).
  explicit ThreadPool(int workers, const char* name = "ek-pool");
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads a call may use at most (workers + the caller).
  int maxThreads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs body(begin, end) over [0, count) on up to `threads` threads (<= 0: all). Calls
  // are serialised; an exception thrown by any chunk is rethrown here.
  void parallelFor(int64_t count, int threads, const std::function<void(int64_t, int64_t)>& body);

 private:
  void workerLoop(int index);
  std::string name_;

  std::vector<std::thread> workers_;
  std::mutex callMutex_;  // one parallelFor at a time
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int64_t, int64_t)>* body_ = nullptr;
  int64_t count_ = 0;
  int chunks_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
};

// Default pool size: every hardware thread.
int hardwareThreads();

// Names the calling thread (Linux: at most 15 characters are kept; elsewhere nothing).
void setThreadName(const std::string& name);

}  // namespace engram
