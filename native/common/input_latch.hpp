// A one-shot signal that an async call's input has been copied in: the copy runs on the JS
// thread after the worker is queued, while the worker does the part of its work that does
// not read that input.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace engram {

class InputLatch {
 public:
  void open() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      open_.store(true, std::memory_order_release);
    }
    opened_.notify_all();
  }
  void wait() const {
    if (open_.load(std::memory_order_acquire)) return;
    std::unique_lock<std::mutex> lock(mutex_);
    opened_.wait(lock, [this] { return open_.load(std::memory_order_acquire); });
  }

 private:
  std::atomic<bool> open_{false};
  mutable std::mutex mutex_;
  mutable std::condition_variable opened_;
};

// For requests whose input may arrive late: nullptr means it is there already.
inline void waitForInput(const InputLatch* latch) {
  if (latch != nullptr) latch->wait();
}

}  // namespace engram
