// What a data-plane receiver logs about connections it turned away: a flood
// of them (a port scanner, an attacker) must not flood the log. Per interval
// the first few rejections are logged in full, the rest only counted, and the
// count is logged once the interval is over. Time is passed in, so that the
// owner decides when to look; not thread-safe (the owner locks).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace sage::net {

// Rejections logged in full per interval; the rest of the interval's are counted.
constexpr std::size_t kRejectionsLoggedInFull = 5;
constexpr auto kRejectionLogInterval = std::chrono::seconds(10);

class RejectionLog {
 public:
  using Clock = std::chrono::steady_clock;

  // `subject` starts every line, e.g. "data plane of job job-1".
  explicit RejectionLog(std::string subject) : subject_(std::move(subject)) {}

  // A connection from `peer` was turned away for `reason`: the lines to log
  // now (the count of an interval that ended, this one in full), or none
  // when this interval's lines are used up.
  std::vector<std::string> add(const std::string& peer, const std::string& reason,
                               Clock::time_point now) {
    std::vector<std::string> lines;
    if (auto counted = summary(now)) lines.push_back(std::move(*counted));
    if (!interval_end_ || now >= *interval_end_) {
      interval_end_ = now + kRejectionLogInterval;
      logged_ = 0;
    }
    if (logged_ < kRejectionsLoggedInFull) {
      ++logged_;
      lines.push_back(subject_ + ": rejected a connection from " + peer + ": " + reason);
    } else {
      ++held_back_;
    }
    return lines;
  }

  // The count of rejections held back, once their interval is over (any
  // time with `now` = Clock::time_point::max(), e.g. at the end).
  std::optional<std::string> summary(Clock::time_point now) {
    if (held_back_ == 0 || !interval_end_ || now < *interval_end_) return std::nullopt;
    const std::string interval = std::to_string(kRejectionLogInterval.count()) + " s";
    std::string line = subject_ + ": rejected " + std::to_string(held_back_) +
                       " more connections within " + interval + " (only the first " +
                       std::to_string(kRejectionsLoggedInFull) + " of every " + interval +
                       " are logged in full)";
    held_back_ = 0;
    interval_end_.reset();
    return line;
  }

  // When summary() will have a line; nothing while no rejection is held back.
  std::optional<Clock::time_point> summary_due() const {
    if (held_back_ == 0) return std::nullopt;
    return interval_end_;
  }

 private:
  std::string subject_;
  std::optional<Clock::time_point> interval_end_;  // of the current interval
  std::size_t logged_ = 0;                         // in full, this interval
  std::size_t held_back_ = 0;                      // counted only, this interval
};

}  // namespace sage::net
