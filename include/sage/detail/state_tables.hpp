// The tables of keyed state (state.hpp): one per named state of an operator
// instance, an entry per key slot, and how their entries go into a checkpoint
// key group by key group.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sage/detail/prefetch.hpp"
#include "sage/serialization.hpp"

namespace sage::detail {

// One named state of one operator instance: an entry per key slot. The backend
// keeps every table at least as long as its key slots, so handles index
// without a check.
// Checkpoints reach the entries through the virtuals, one call per table and
// key group.
class StateTable {
 public:
  virtual ~StateTable() = default;
  virtual void resize(std::size_t slots) = 0;
  // Writes the entry of each of `slots` that is not empty (a cleared value,
  // an empty list or map) and appends that slot to `written`: only those are
  // in a checkpoint.
  virtual void write_non_empty(Writer& out, std::span<const std::uint32_t> slots,
                               std::vector<std::uint32_t>& written) const = 0;
  // Sets the entry of each of `slots`, in order; throws SerializationError on
  // bytes that do not decode.
  virtual void read_entries(Reader& in, std::span<const std::uint32_t> slots) = 0;
};

// A snapshot reads the entries key group by key group, which jumps through
// memory, so it asks for them this many keys ahead (without this a snapshot
// took half again as long).
constexpr std::size_t kPrefetchDistance = 16;

// How a list or map entry goes into a checkpoint (values: ValueTable).
template <class Container>
bool entry_is_empty(const Container& entry) {
  return entry.empty();
}
template <class Container>
void write_entry(Writer& out, const Container& entry) {
  out.write(entry);
}
template <class Container>
void read_entry(Reader& in, Container& entry) {
  entry = in.read<Container>();
}

template <class Entry>
class SlotTable final : public StateTable {
 public:
  Entry& operator[](std::size_t slot) { return entries_[slot]; }

  void resize(std::size_t slots) override { entries_.resize(slots); }
  void write_non_empty(Writer& out, std::span<const std::uint32_t> slots,
                       std::vector<std::uint32_t>& written) const override {
    for (std::size_t i = 0; i < slots.size(); ++i) {
      if (i + kPrefetchDistance < slots.size()) prefetch(&entries_[slots[i + kPrefetchDistance]]);
      const Entry& entry = entries_[slots[i]];
      if (entry_is_empty(entry)) continue;
      write_entry(out, entry);
      written.push_back(slots[i]);
    }
  }
  void read_entries(Reader& in, std::span<const std::uint32_t> slots) override {
    for (const auto slot : slots) read_entry(in, entries_[slot]);
  }

 private:
  std::vector<Entry> entries_;
};

// The entries of a ValueState<V>. A V that is trivially copyable and default
// constructible (numbers, small plain structs: counters and sums, the
// commonest keyed state) is kept unwrapped, with a bitmap of which slots have
// a value: half the memory of std::optional<long long> (8 bytes and a bit
// rather than 16), so that more of a large state stays in cache. Any other V
// is kept as std::optional<V>. Both write the same checkpoint bytes (each set
// value as V).
template <class V>
class ValueTable final : public StateTable {
  // (Not bool: std::vector<bool> hands out no references.)
  static constexpr bool kPacked = std::is_trivially_copyable_v<V> &&
                                  std::is_default_constructible_v<V> && !std::is_same_v<V, bool>;

 public:
  // The value of `slot`, or null.
  V* find(std::size_t slot) {
    if constexpr (kPacked) {
      return is_set(slot) ? &values_[slot] : nullptr;
    } else {
      return values_[slot] ? &*values_[slot] : nullptr;
    }
  }
  // The value of `slot`, set to `initial` first if it has none.
  V& get_or_init(std::size_t slot, V&& initial) {
    if constexpr (kPacked) {
      if (!is_set(slot)) {
        values_[slot] = std::move(initial);
        set_[slot / 64] |= bit(slot);
      }
      return values_[slot];
    } else {
      if (!values_[slot]) values_[slot] = std::move(initial);
      return *values_[slot];
    }
  }
  void set(std::size_t slot, V&& value) {
    if constexpr (kPacked) {
      values_[slot] = std::move(value);
      set_[slot / 64] |= bit(slot);
    } else {
      values_[slot] = std::move(value);
    }
  }
  void reset(std::size_t slot) {
    if constexpr (kPacked) {
      set_[slot / 64] &= ~bit(slot);
    } else {
      values_[slot].reset();
    }
  }

  void resize(std::size_t slots) override {
    values_.resize(slots);
    if constexpr (kPacked) set_.resize((slots + 63) / 64);
  }
  void write_non_empty(Writer& out, std::span<const std::uint32_t> slots,
                       std::vector<std::uint32_t>& written) const override {
    for (std::size_t i = 0; i < slots.size(); ++i) {
      if (i + kPrefetchDistance < slots.size()) prefetch(&values_[slots[i + kPrefetchDistance]]);
      const std::uint32_t slot = slots[i];
      if constexpr (kPacked) {
        if (!is_set(slot)) continue;
        out.write(values_[slot]);
      } else {
        if (!values_[slot]) continue;
        out.write(*values_[slot]);
      }
      written.push_back(slot);
    }
  }
  void read_entries(Reader& in, std::span<const std::uint32_t> slots) override {
    for (const auto slot : slots) set(slot, in.read<V>());
  }

 private:
  static std::uint64_t bit(std::size_t slot) { return std::uint64_t{1} << (slot % 64); }
  bool is_set(std::size_t slot) const { return (set_[slot / 64] & bit(slot)) != 0; }

  std::vector<std::conditional_t<kPacked, V, std::optional<V>>> values_;
  std::vector<std::uint64_t> set_;  // kPacked: bit slot % 64 of word slot / 64
};

}  // namespace sage::detail
