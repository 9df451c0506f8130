// Test support: waiting on a condition with a deadline, never a bare sleep.
#pragma once

#include <chrono>
#include <thread>

namespace sage::testing {

// Polls `condition` until it holds or `timeout` passes.
template <class F>
inline bool eventually(F condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

}  // namespace sage::testing
