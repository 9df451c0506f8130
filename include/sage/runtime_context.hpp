// What a running operator instance knows about itself, handed to open() of
// every function: identity (job, operator, instance, node), the current key
// and keyed state of keyed operators, and its metrics. Owned by the engine,
// used only from the instance's thread.
#pragma once

#include <atomic>
#include <string>
#include <typeinfo>
#include <vector>

#include "sage/error.hpp"
#include "sage/metrics.hpp"
#include "sage/state.hpp"

namespace sage {

class RuntimeContext {
 public:
  struct Identity {
    std::string job_id;
    std::string operator_name;
    int parallel_index = 0;  // 0 .. parallelism-1
    int parallelism = 1;
    std::string node_id;       // the machine (host name) running this instance
    std::vector<int> gpu_ids;  // see gpu_ids()
  };

  // `stop_flag`: set when the job is asked to stop; null where no one can ask.
  RuntimeContext(Identity identity, Metrics& metrics, detail::KeyedStateBackend* keyed_state,
                 const std::atomic<bool>* stop_flag = nullptr)
      : identity_(std::move(identity)),
        metrics_(&metrics),
        keyed_state_(keyed_state),
        stop_flag_(stop_flag) {}

  const std::string& job_id() const { return identity_.job_id; }
  const std::string& operator_name() const { return identity_.operator_name; }
  int parallel_index() const { return identity_.parallel_index; }
  int parallelism() const { return identity_.parallelism; }
  const std::string& node_id() const { return identity_.node_id; }
  // The GPUs this instance holds (Resources::num_gpus) on a cluster, as CUDA
  // numbers them in this process (for cudaSetDevice or "cuda:N"): its task
  // process sees the GPUs of all its instances through CUDA_VISIBLE_DEVICES,
  // and these are this instance's. Empty without num_gpus, and in a
  // LocalEnvironment, which reserves nothing (every GPU is visible).
  const std::vector<int>& gpu_ids() const { return identity_.gpu_ids; }
  // "DistMapper[2/4]": how logs and errors name this instance.
  std::string instance_name() const {
    return identity_.operator_name + "[" + std::to_string(identity_.parallel_index) + "/" +
           std::to_string(identity_.parallelism) + "]";
  }

  Metrics& metrics() { return *metrics_; }

  // Whether the job was asked to stop (Environment::stop(), `sage job stop`):
  // its sources then end early, so an input that ends is not all the data. A
  // function that publishes a result in close() (a collection, a report) can
  // check it there and leave an incomplete result unpublished.
  bool stop_requested() const {
    return stop_flag_ != nullptr && stop_flag_->load(std::memory_order_relaxed);
  }

  // True for an operator applied directly after key_by.
  bool is_keyed() const { return keyed_state_ != nullptr; }

  // The key of the record being processed. K must be the key type returned by
  // the key_by function.
  template <class K>
  const K& current_key() const {
    auto& backend = require_keyed("current_key");
    if (backend.key_type() != typeid(K)) {
      throw InvalidPlanError("current_key<" + std::string(typeid(K).name()) + ">() in " +
                             instance_name() +
                             " does not match the key type of key_by; use the type the key "
                             "function returns");
    }
    const void* key = backend.current_key();
    if (key == nullptr) {
      throw InvalidPlanError("current_key() in " + instance_name() +
                             " was called outside of processing a record");
    }
    return *static_cast<const K*>(key);
  }

  template <class V>
  ValueState<V> value_state(const std::string& name) {
    static_assert(Serializable<V>, "keyed state values must be Serializable (see SAGE_FIELDS)");
    return ValueState<V>(require_keyed("value_state"), name);
  }
  template <class V>
  ListState<V> list_state(const std::string& name) {
    static_assert(Serializable<V>, "keyed state values must be Serializable (see SAGE_FIELDS)");
    return ListState<V>(require_keyed("list_state"), name);
  }
  template <class UK, class UV>
  MapState<UK, UV> map_state(const std::string& name) {
    static_assert(Serializable<UK> && Serializable<UV>,
                  "keyed state keys and values must be Serializable (see SAGE_FIELDS)");
    return MapState<UK, UV>(require_keyed("map_state"), name);
  }

 private:
  detail::KeyedStateBackend& require_keyed(const char* what) const {
    if (keyed_state_ == nullptr) {
      throw InvalidPlanError(std::string(what) + "() in " + instance_name() +
                             ": keyed state exists only in the operator applied directly after "
                             "key_by(...); apply key_by first");
    }
    return *keyed_state_;
  }

  Identity identity_;
  Metrics* metrics_;
  detail::KeyedStateBackend* keyed_state_;
  const std::atomic<bool>* stop_flag_;
};

}  // namespace sage
