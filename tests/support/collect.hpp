// Test support: a sink class whose instances gather records locally and hand
// them to one shared list at close(), so tests can compare exact multisets.
#pragma once

#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

#include <sage/sage.hpp>

namespace sage::testing {

template <class T>
class Collected {
 public:
  void add(std::vector<T> records) {
    std::lock_guard lock(mutex_);
    records_.insert(records_.end(), std::make_move_iterator(records.begin()),
                    std::make_move_iterator(records.end()));
    ++closed_instances_;
  }
  std::vector<T> sorted() const {
    std::lock_guard lock(mutex_);
    auto copy = records_;
    std::sort(copy.begin(), copy.end());
    return copy;
  }
  int closed_instances() const {
    std::lock_guard lock(mutex_);
    return closed_instances_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<T> records_;
  int closed_instances_ = 0;
};

template <class T>
class CollectSink : public sage::Function {
 public:
  explicit CollectSink(std::shared_ptr<Collected<T>> target) : target_(std::move(target)) {}
  void sink(const T& record) { local_.push_back(record); }
  void close() override { target_->add(std::move(local_)); }

 private:
  std::shared_ptr<Collected<T>> target_;
  std::vector<T> local_;
};

}  // namespace sage::testing
