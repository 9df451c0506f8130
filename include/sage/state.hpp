// Keyed state: values, lists and maps that an operator applied right after
// key_by keeps per key. A handle reads and writes the entry of the key of the
// record being processed. Handles belong to one operator instance and are used
// only by its thread. State values must be Serializable so that checkpoints
// can store them; keys must be Serializable only when checkpoints are on.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeindex>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sage/detail/channel_writer.hpp"
#include "sage/detail/key_slot_index.hpp"
#include "sage/detail/prefetch.hpp"
#include "sage/detail/state_tables.hpp"
#include "sage/error.hpp"
#include "sage/serialization.hpp"
#include "sage/stable_hash.hpp"

namespace sage {
namespace detail {

// The keyed state of one operator instance. Keys are mapped to dense slots so
// that tables are plain vectors and only one hash lookup happens per record,
// on the first state access for that record.
//
// Checkpoint format of one key group: varint format version, varint number of
// tables, then per table its name (string), the number of entries, their keys,
// and the entries' bytes as a length-prefixed string. Keys are decoded when
// the group is restored; the entries of a table that is not registered yet
// keep their bytes until it is.
class KeyedStateBackend {
 public:
  virtual ~KeyedStateBackend() = default;

  // Slot of the current record's key. Throws when no record is being processed.
  std::size_t current_slot() {
    if (slot_ == kNoSlot) [[unlikely]] {
      slot_ = static_cast<std::uint32_t>(resolve_current_slot());
    }
    return slot_;
  }

  virtual std::type_index key_type() const = 0;
  virtual const void* current_key() const = 0;

  // Checkpoints. snapshot(): every key's entries in every table, and the
  // restored entries still waiting for their table, serialized per key group
  // of `max_parallelism` (non-empty groups only), in place of what `groups`
  // held: a map kept from the last snapshot lends its strings' memory, so that
  // periodic snapshots do not fault in fresh pages each time. restore():
  // adds the keys of one group as snapshot() wrote them; the entries of a
  // table not registered yet wait for its registration. Both throw Error when
  // the key type is not Serializable; restore() throws SerializationError on
  // bytes that do not decode (the group may then be partly restored).
  virtual void snapshot(int max_parallelism, std::map<int, std::string>& groups) const = 0;
  virtual void restore(std::string_view group) = 0;

  // The table called `name`, created on first use. Throws InvalidPlanError when
  // the same name was registered with another kind of state, and
  // SerializationError when entries restored for it do not decode.
  template <class Table>
  Table& table(const std::string& name) {
    auto it = tables_.find(name);
    if (it == tables_.end()) {
      auto created = std::make_unique<Table>();
      created->resize(table_size_);
      it = tables_.emplace(name, Registered{std::move(created), typeid(Table)}).first;
      read_pending_entries(name, *it->second.table);
    } else if (it->second.type != typeid(Table)) {
      throw InvalidPlanError("keyed state '" + name +
                             "' was declared twice with different types; give each state its "
                             "own name");
    }
    return static_cast<Table&>(*it->second.table);
  }

 protected:
  static constexpr std::uint64_t kSnapshotFormat = 1;

  struct Registered {
    std::unique_ptr<StateTable> table;
    std::type_index type;
  };

  // What the current record's slot is not yet known as (KeySlotIndex has no
  // slot of that number).
  static constexpr std::uint32_t kNoSlot = 0xffff'ffff;
  void invalidate_slot() { slot_ = kNoSlot; }
  // The current record's slot, or kNoSlot when it is to be resolved.
  void set_slot(std::uint32_t slot) { slot_ = slot; }
  virtual std::size_t resolve_current_slot() = 0;

  // A key got the next slot. Tables grow ahead of the slots, doubling, so
  // that a new key costs no call per table.
  void add_slot() {
    if (++slot_count_ > table_size_) {
      table_size_ = std::max(2 * table_size_, kMinTableSize);
      for (auto& [name, registered] : tables_) registered.table->resize(table_size_);
    }
  }
  const std::map<std::string, Registered>& tables() const { return tables_; }

  // Restored entries of a table not registered yet: of one key group, as a
  // snapshot wrote them.
  struct PendingEntries {
    std::vector<std::uint32_t> slots;
    std::string bytes;
  };
  const std::map<std::string, std::vector<PendingEntries>>& pending() const { return pending_; }

  // Sets the entries of `slots` in table `name` from `bytes`, now or when the
  // table is registered.
  void restore_entries(const std::string& name, std::vector<std::uint32_t> slots,
                       std::string_view bytes) {
    auto it = tables_.find(name);
    if (it != tables_.end()) {
      read_entries(name, *it->second.table, slots, bytes);
    } else {
      pending_[name].push_back(PendingEntries{std::move(slots), std::string(bytes)});
    }
  }

 private:
  void read_pending_entries(const std::string& name, StateTable& table) {
    auto it = pending_.find(name);
    if (it == pending_.end()) return;
    const std::vector<PendingEntries> pending = std::move(it->second);
    pending_.erase(it);
    for (const auto& entries : pending) read_entries(name, table, entries.slots, entries.bytes);
  }

  static void read_entries(const std::string& name, StateTable& table,
                           std::span<const std::uint32_t> slots, std::string_view bytes) {
    Reader in(bytes);
    try {
      table.read_entries(in, slots);
    } catch (const SerializationError& e) {
      throw SerializationError("keyed state '" + name + "' in a checkpoint: " + e.what());
    }
    if (!in.at_end()) {
      throw SerializationError("keyed state '" + name +
                               "' in a checkpoint: " + std::to_string(in.remaining()) +
                               " bytes left after its entries (was it saved as another type?)");
    }
  }

  std::map<std::string, Registered> tables_;
  std::map<std::string, std::vector<PendingEntries>> pending_;
  static constexpr std::size_t kMinTableSize = 64;
  std::size_t slot_count_ = 0;
  std::size_t table_size_ = 0;  // of every table: at least slot_count_
  std::uint32_t slot_ = kNoSlot;
};

template <class K>
class TypedKeyedStateBackend final : public KeyedStateBackend {
 public:
  // Called by the keyed operator before each record; `key` outlives the call
  // that processes the record, and `hash` is its stable_hash.
  void set_current_key(const K& key, std::uint64_t hash) {
    current_ = &key;
    current_hash_ = hash;
    invalidate_slot();
  }
  void set_current_key(const K& key) { set_current_key(key, stable_hash(key)); }
  // The same, with the key's slot as find_slots() gave it (kNoSlot: a key
  // without one yet, which gets one if the record uses state).
  void set_current_key(const K& key, std::uint64_t hash, std::uint32_t slot) {
    current_ = &key;
    current_hash_ = hash;
    set_slot(slot);
  }
  static_assert(kNoSlot == KeySlotIndex<K>::kNoSlot);
  // The slots of a batch's keys (with their stable hashes), looked up
  // together, before its first record: kNoSlot for a key that has none. This
  // adds no key, so a record that does not use state leaves none behind.
  void find_slots(std::span<const K> keys, std::span<const std::uint64_t> hashes,
                  std::uint32_t* slots) const {
    index_.find_all(keys, hashes, slots);
  }
  void clear_current_key() {
    current_ = nullptr;
    invalidate_slot();
  }
  std::type_index key_type() const override { return typeid(K); }
  const void* current_key() const override { return current_; }
  std::size_t key_count() const { return index_.size(); }

  void snapshot(int max_parallelism, std::map<int, std::string>& groups) const override {
    if constexpr (Serializable<K>) {
      if (max_parallelism < 1) {
        throw Error("keyed state snapshot: max_parallelism must be at least 1, got " +
                    std::to_string(max_parallelism));
      }
      SlotsByKeyGroup& by_group = snapshot_order_;
      slots_by_key_group(max_parallelism, by_group);
      const auto pending_by_group = pending_by_key_group(max_parallelism);
      GroupWriter writer(index_, tables(), snapshot_sections_);
      std::map<int, std::string> last = std::move(groups);
      groups.clear();
      for (int group = 0; group < max_parallelism; ++group) {
        const auto first = by_group.slots.begin() + by_group.start[group];
        const auto last_slot = by_group.slots.begin() + by_group.start[group + 1];
        if (first == last_slot) continue;
        auto node = last.extract(group);
        std::string bytes = node ? std::move(node.mapped()) : std::string();
        writer.write({first, last_slot}, pending_by_group[group], bytes);
        if (!bytes.empty()) groups.emplace(group, std::move(bytes));
      }
    } else {
      throw Error(not_serializable_message());
    }
  }

  void restore(std::string_view group) override {
    if constexpr (Serializable<K>) {
      Reader in(group);
      const std::uint64_t format = in.read_varint();
      if (format != kSnapshotFormat) {
        throw SerializationError("keyed state in a checkpoint: unknown format " +
                                 std::to_string(format) + " (this build reads format " +
                                 std::to_string(kSnapshotFormat) + ")");
      }
      // A table takes at least 3 bytes: its name's length, its number of
      // entries and their length.
      const std::size_t table_count = in.read_count(3);
      for (std::size_t t = 0; t < table_count; ++t) {
        const std::string name = in.read<std::string>();
        const std::size_t count = in.read_count(min_encoded_size<K>());
        std::vector<std::uint32_t> slots;
        slots.reserve(count);
        for (std::size_t i = 0; i < count; ++i) {
          const K key = in.read<K>();
          slots.push_back(slot_of(key, stable_hash(key)));
        }
        const std::size_t length = in.read_count(1);
        restore_entries(name, std::move(slots), in.read_view(length));
      }
      if (!in.at_end()) {
        throw SerializationError("keyed state in a checkpoint: " + std::to_string(in.remaining()) +
                                 " bytes after the last table");
      }
    } else {
      throw Error(not_serializable_message());
    }
  }

 protected:
  std::size_t resolve_current_slot() override {
    if (current_ == nullptr) {
      throw InvalidPlanError(
          "keyed state was used outside of processing a record (e.g. in open() or close()); "
          "read and write it only while handling a record");
    }
    return slot_of(*current_, current_hash_);
  }

 private:
  std::uint32_t slot_of(const K& key, std::uint64_t hash) {
    const auto found = index_.find_or_add(key, hash);
    if (found.added) add_slot();
    return found.slot;
  }

  // Every slot, ordered by key group and by slot within a group: the slots of
  // group g are slots[start[g] .. start[g + 1]).
  struct SlotsByKeyGroup {
    std::vector<std::uint32_t> slots;
    std::vector<std::size_t> start;
  };
  // Fills `ordered`, whose vectors keep their memory from the last snapshot.
  void slots_by_key_group(int max_parallelism, SlotsByKeyGroup& ordered) const {
    // A counting sort. Each slot's group is computed twice rather than kept:
    // a second modulo costs less than memory to allocate and touch per key.
    const auto group_of = [&](std::uint32_t slot) {
      return static_cast<std::size_t>(key_group_of(index_.hash(slot), max_parallelism));
    };
    std::vector<std::size_t>& start = ordered.start;
    start.assign(static_cast<std::size_t>(max_parallelism) + 1, 0);
    for (std::uint32_t slot = 0; slot < index_.size(); ++slot) ++start[group_of(slot) + 1];
    for (std::size_t g = 1; g < start.size(); ++g) start[g] += start[g - 1];
    ordered.slots.resize(index_.size());
    std::vector<std::size_t> next(start.begin(), start.end() - 1);
    for (std::uint32_t slot = 0; slot < index_.size(); ++slot) {
      ordered.slots[next[group_of(slot)]++] = slot;
    }
  }

  // The restored entries of tables not registered yet, by key group: a
  // snapshot writes them again as they are.
  struct PendingSection {
    const std::string* name;
    const PendingEntries* entries;
  };
  std::vector<std::vector<PendingSection>> pending_by_key_group(int max_parallelism) const {
    std::vector<std::vector<PendingSection>> by_group(static_cast<std::size_t>(max_parallelism));
    for (const auto& [name, chunks] : pending()) {
      for (const auto& chunk : chunks) {
        if (chunk.slots.empty()) continue;
        const int group = key_group_of(index_.hash(chunk.slots.front()), max_parallelism);
        for (const auto slot : chunk.slots) {
          if (key_group_of(index_.hash(slot), max_parallelism) != group) {
            throw Error("keyed state '" + name +
                        "' was restored from a checkpoint of another max_parallelism and "
                        "cannot be checkpointed before it is declared again");
          }
        }
        by_group[group].push_back(PendingSection{&name, &chunk});
      }
    }
    return by_group;
  }

  // Writes the entries of the slots of one key group. Each table's keys and
  // entries go to buffers reused from group to group first, so that the
  // group's bytes are allocated once, at their size.
  // One table's part of the group being written.
  struct Section {
    std::vector<std::uint32_t> slots;  // those with non-empty entries
    Writer keys;
    Writer entries;
    void clear() {
      slots.clear();
      keys.buffer().clear();
      entries.buffer().clear();
    }
  };

  class GroupWriter {
   public:
    // `sections`: scratch space, kept by the backend from one snapshot to the next.
    GroupWriter(const KeySlotIndex<K>& index, const std::map<std::string, Registered>& tables,
                std::vector<Section>& sections)
        : index_(index), tables_(tables), sections_(sections) {
      sections_.resize(tables.size());
    }

    // Replaces `bytes` (keeping its memory) with the group's bytes; empty when
    // every entry of its slots is empty and nothing is pending.
    void write(std::span<const std::uint32_t> slots, std::span<const PendingSection> pending,
               std::string& bytes) {
      bytes.clear();
      constexpr std::size_t kMaxVarint = 10;
      std::size_t table_count = 0;
      std::size_t size = 2 * kMaxVarint;
      auto section = sections_.begin();
      for (const auto& [name, registered] : tables_) {
        section->clear();
        registered.table->write_non_empty(section->entries, slots, section->slots);
        if (!section->slots.empty()) {
          ++table_count;
          write_keys(section->slots, section->keys);
          size += 3 * kMaxVarint + name.size() + section->keys.size() + section->entries.size();
        }
        ++section;
      }
      for (const auto& [name, entries] : pending) {
        ++table_count;
        size += 3 * kMaxVarint + name->size() + entries->slots.size() * sizeof(K) +
                entries->bytes.size();
      }
      if (table_count == 0) return;
      bytes.reserve(size);
      Writer out(std::move(bytes));
      out.write_varint(kSnapshotFormat);
      out.write_varint(table_count);
      section = sections_.begin();
      for (const auto& [name, registered] : tables_) {
        const Section& written = *section++;
        if (written.slots.empty()) continue;
        out.write(name);
        out.write_varint(written.slots.size());
        out.write_bytes(written.keys.buffer().data(), written.keys.size());
        out.write(written.entries.buffer());
      }
      for (const auto& [name, entries] : pending) {
        out.write(*name);
        out.write_varint(entries->slots.size());
        write_keys(entries->slots, out);
        out.write(entries->bytes);
      }
      bytes = out.take();
    }

   private:
    void write_keys(std::span<const std::uint32_t> slots, Writer& out) const {
      for (std::size_t i = 0; i < slots.size(); ++i) {
        if (i + kPrefetchDistance < slots.size())
          prefetch(&index_.key(slots[i + kPrefetchDistance]));
        out.write(index_.key(slots[i]));
      }
    }

    const KeySlotIndex<K>& index_;
    const std::map<std::string, Registered>& tables_;
    std::vector<Section>& sections_;  // in the order of tables_
  };

  static std::string not_serializable_message() {
    return std::string("keyed state cannot be checkpointed: its key type (") + typeid(K).name() +
           ") is not Serializable; add SAGE_FIELDS(...) to the key type or specialize "
           "sage::Serializer for it (see docs/serialization.md), or turn checkpoints off";
  }

  const K* current_ = nullptr;
  std::uint64_t current_hash_ = 0;
  KeySlotIndex<K> index_;
  // A snapshot's scratch space, kept for the next one (snapshot() is const:
  // this is no state).
  mutable SlotsByKeyGroup snapshot_order_;
  mutable std::vector<Section> snapshot_sections_;
};

}  // namespace detail

// One value per key.
template <class V>
class ValueState {
 public:
  ValueState(detail::KeyedStateBackend& backend, const std::string& name)
      : backend_(&backend), table_(&backend.table<detail::ValueTable<V>>(name)) {}

  bool has_value() const { return entry() != nullptr; }
  std::optional<V> value() const {
    const V* e = entry();
    return e ? std::optional<V>(*e) : std::nullopt;
  }
  V value_or(V fallback) const {
    const V* e = entry();
    return e ? *e : fallback;
  }
  void update(V value) { table_->set(backend_->current_slot(), std::move(value)); }
  void clear() { table_->reset(backend_->current_slot()); }
  // The entry for the current key, set to `initial` first if the key has none:
  // `++count.get_or_init(0);` updates in place.
  V& get_or_init(V initial = V{}) {
    return table_->get_or_init(backend_->current_slot(), std::move(initial));
  }

 private:
  V* entry() const { return table_->find(backend_->current_slot()); }
  detail::KeyedStateBackend* backend_;
  detail::ValueTable<V>* table_;
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
