// When a source's partly filled batch is due: its `linger` deadline, checked
// between the source's calls. Reading the clock costs about as much as a cheap
// record (~20 ns), so while calls are cheap it is read after 1, 2, 4, ... up to
// `max_stride` records; after a call that took longer than kCheapRecord per
// record (a source that waits for its data), after every record again. So a
// source whose calls are all slow sends each record as soon as the linger has
// passed; a record waits past the linger only behind calls that were cheap and
// then one that blocks.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>

namespace sage::detail {

class LingerClock {
 public:
  using Clock = std::chrono::steady_clock;

  LingerClock(Clock::time_point deadline, std::size_t max_stride)
      : deadline_(deadline), last_(Clock::now()), max_stride_(max_stride) {}

  // After each record: whether the batch is due.
  bool due() {
    if (--until_check_ > 0) return false;
    const auto now = Clock::now();
    if (now >= deadline_) return true;
    const bool cheap = now - last_ < kCheapRecord * static_cast<long>(stride_);
    stride_ = cheap ? std::min(stride_ * 2, max_stride_) : 1;
    until_check_ = stride_;
    last_ = now;
    return false;
  }

 private:
  static constexpr std::chrono::nanoseconds kCheapRecord{1'000};

  Clock::time_point deadline_;
  Clock::time_point last_;  // of the last check (or of the start)
  std::size_t max_stride_;
  std::size_t stride_ = 1;       // records between the last check and the next
  std::size_t until_check_ = 1;  // records until the next check
};

}  // namespace sage::detail
