// Keyed state: values, lists and maps that an operator applied right after
// key_by keeps per key. A handle reads and writes the entry of the key of the
// record being processed. Handles belong to one operator instance and are used
// only by its thread. State values must be Serializable so that checkpoints
// can store them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <typeindex>
#include <typeinfo>
#include <unordered_map>
#include <vector>

#include "sage/detail/key_slot_index.hpp"
#include "sage/error.hpp"
#include "sage/serialization.hpp"
#include "sage/stable_hash.hpp"

namespace sage {
namespace detail {

// One named state of one operator instance: an entry per key slot. The backend
// keeps every table as long as its key slots, so handles index without a check.
class StateTable {
 public:
  virtual ~StateTable() = default;
  virtual void resize(std::size_t slots) = 0;
};

template <class Entry>
class SlotTable final : public StateTable {
 public:
  Entry& operator[](std::size_t slot) { return entries_[slot]; }
  void resize(std::size_t slots) override { entries_.resize(slots); }

 private:
  std::vector<Entry> entries_;
};

// The keyed state of one operator instance. Keys are mapped to dense slots so
// that tables are plain vectors and only one hash lookup happens per record,
// on the first state access for that record.
class KeyedStateBackend {
 public:
  virtual ~KeyedStateBackend() = default;

  // Slot of the current record's key. Throws when no record is being processed.
  std::size_t current_slot() {
    if (!slot_valid_) {
      slot_ = resolve_current_slot();
      slot_valid_ = true;
    }
    return slot_;
  }

  virtual std::type_index key_type() const = 0;
  virtual const void* current_key() const = 0;

  // Checkpoints. snapshot(): every key's entries in every table, serialized
  // per key group of `max_parallelism` (non-empty groups only). restore():
  // adds the keys of one group as snapshot() wrote them; the entries of a
  // table not registered yet wait for its registration.
  virtual void snapshot(int max_parallelism, std::map<int, std::string>& groups) const = 0;
  virtual void restore(std::string_view group) = 0;

  // The table called `name`, created on first use. Throws InvalidPlanError when
  // the same name was registered with another kind of state.
  template <class Table>
  Table& table(const std::string& name) {
    auto it = tables_.find(name);
    if (it == tables_.end()) {
      auto created = std::make_unique<Table>();
      created->resize(slot_count_);
      it = tables_.emplace(name, Registered{std::move(created), typeid(Table)}).first;
    } else if (it->second.type != typeid(Table)) {
      throw InvalidPlanError("keyed state '" + name +
                             "' was declared twice with different types; give each state its "
                             "own name");
    }
    return static_cast<Table&>(*it->second.table);
  }

 protected:
  struct Registered {
    std::unique_ptr<StateTable> table;
    std::type_index type;
  };

  void invalidate_slot() { slot_valid_ = false; }
  virtual std::size_t resolve_current_slot() = 0;

  // A key got the next slot: every table grows by one entry.
  void add_slot() {
    ++slot_count_;
    for (auto& [name, registered] : tables_) registered.table->resize(slot_count_);
  }

 private:
  std::map<std::string, Registered> tables_;
  std::size_t slot_count_ = 0;
  std::size_t slot_ = 0;
  bool slot_valid_ = false;
};

template <class K>
class TypedKeyedStateBackend final : public KeyedStateBackend {
 public:
  // Called by the keyed operator before each record; `key` outlives the call
  // that processes the record.
  void set_current_key(const K& key) {
    current_ = &key;
    invalidate_slot();
  }
  void clear_current_key() {
    current_ = nullptr;
    invalidate_slot();
  }
  std::type_index key_type() const override { return typeid(K); }
  const void* current_key() const override { return current_; }
  std::size_t key_count() const { return index_.size(); }

  void snapshot(int, std::map<int, std::string>&) const override {
    throw Error(
        "keyed state snapshots: being written");  // TODO(state): replaced by the key-group format
  }
  void restore(std::string_view) override { throw Error("keyed state restore: being written"); }

 protected:
  std::size_t resolve_current_slot() override {
    if (current_ == nullptr) {
      throw InvalidPlanError(
          "keyed state was used outside of processing a record (e.g. in open() or close()); "
          "read and write it only while handling a record");
    }
    return slot_of(*current_);
  }

 private:
  std::uint32_t slot_of(const K& key) {
    const auto found = index_.find_or_add(key, stable_hash(key));
    if (found.added) add_slot();
    return found.slot;
  }

  const K* current_ = nullptr;
  KeySlotIndex<K> index_;
};

}  // namespace detail

// One value per key.
template <class V>
class ValueState {
 public:
  ValueState(detail::KeyedStateBackend& backend, const std::string& name)
      : backend_(&backend), table_(&backend.table<detail::SlotTable<std::optional<V>>>(name)) {}

  bool has_value() const { return entry().has_value(); }
  std::optional<V> value() const { return entry(); }
  V value_or(V fallback) const { return entry().value_or(std::move(fallback)); }
  void update(V value) { entry() = std::move(value); }
  void clear() { entry().reset(); }
  // The entry for the current key, set to `initial` first if the key has none:
  // `++count.get_or_init(0);` updates in place.
  V& get_or_init(V initial = V{}) {
    auto& e = entry();
    if (!e) e = std::move(initial);
    return *e;
  }

 private:
  std::optional<V>& entry() const { return (*table_)[backend_->current_slot()]; }
  detail::KeyedStateBackend* backend_;
  detail::SlotTable<std::optional<V>>* table_;
};

// A list of values per key.
template <class V>
class ListState {
 public:
  ListState(detail::KeyedStateBackend& backend, const std::string& name)
      : backend_(&backend), table_(&backend.table<detail::SlotTable<std::vector<V>>>(name)) {}

  void add(V value) { entry().push_back(std::move(value)); }
  const std::vector<V>& get() const { return entry(); }
  void update(std::vector<V> values) { entry() = std::move(values); }
  void clear() { entry().clear(); }

 private:
  std::vector<V>& entry() const { return (*table_)[backend_->current_slot()]; }
  detail::KeyedStateBackend* backend_;
  detail::SlotTable<std::vector<V>>* table_;
};

// A map per key.
template <class UK, class UV>
class MapState {
 public:
  using Map = std::unordered_map<UK, UV, StableHasher>;
  MapState(detail::KeyedStateBackend& backend, const std::string& name)
      : backend_(&backend), table_(&backend.table<detail::SlotTable<Map>>(name)) {}

  std::optional<UV> get(const UK& key) const {
    const auto& m = entry();
    auto it = m.find(key);
    return it == m.end() ? std::nullopt : std::optional<UV>(it->second);
  }
  bool contains(const UK& key) const { return entry().contains(key); }
  void put(UK key, UV value) { entry().insert_or_assign(std::move(key), std::move(value)); }
  void remove(const UK& key) { entry().erase(key); }
  const Map& entries() const { return entry(); }
  void clear() { entry().clear(); }

 private:
  Map& entry() const { return (*table_)[backend_->current_slot()]; }
  detail::KeyedStateBackend* backend_;
  detail::SlotTable<Map>* table_;
};

}  // namespace sage
