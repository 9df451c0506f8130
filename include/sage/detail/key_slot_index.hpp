// Numbers the keys of one keyed operator instance 0, 1, 2, ... in the order
// they first appear, so that its keyed state lives in plain vectors indexed by
// that slot. Used only by the instance's thread.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "sage/detail/prefetch.hpp"
#include "sage/error.hpp"
#include "sage/stable_hash.hpp"

namespace sage::detail {

// Open addressing over a power-of-two number of buckets, at most 7/8 full, in
// groups of 8; a lookup of a known key allocates nothing. Each bucket has a
// control byte (free, or 7 bits of its key's hash) and a 4-byte slot, in two
// arrays: 5 bytes a bucket, so the index of 50 000 keys (320 KB) stays in a
// core's L2 cache, where 8-byte buckets at most half full (1 MiB) did not,
// and lookups waited for memory. A lookup compares the 8 control bytes of a
// group at once (as one 64-bit word) and the stored key only where 7 bits
// match, so it reads one group, one slot and one key, the next group only
// when the first one is full. Groups are chosen by the high bits of the hash
// because the low bits are what key_by routes by (all keys of one instance
// share some of them); the 7 bits come from just below those.
template <class K>
class KeySlotIndex {
 public:
  struct Found {
    std::uint32_t slot;
    bool added;  // the key was new and got the next slot
  };

  // What find() returns for a key that has no slot.
  static constexpr std::uint32_t kNoSlot = 0xffff'ffff;

  // The slot of `key`, whose stable hash is `hash`, or kNoSlot; adds nothing.
  std::uint32_t find(const K& key, std::uint64_t hash) const {
    return control_.empty() ? kNoSlot : view().find(key, hash);
  }

  // find() for each of `keys` (with their `hashes`) into `slots`. The
  // lookups of a batch are independent, so the group and slots each one
  // reads first are prefetched kLookahead keys ahead: they then wait for
  // memory a few at a time rather than one after another.
  void find_all(std::span<const K> keys, std::span<const std::uint64_t> hashes,
                std::uint32_t* slots) const {
    const std::size_t n = keys.size();
    if (control_.empty()) {
      std::fill(slots, slots + n, kNoSlot);
      return;
    }
    const View index = view();
    for (std::size_t i = 0; i < std::min(kLookahead, n); ++i) index.prefetch(hashes[i]);
    for (std::size_t i = 0; i < n; ++i) {
      if (i + kLookahead < n) index.prefetch(hashes[i + kLookahead]);
      slots[i] = index.find(keys[i], hashes[i]);
    }
  }

  // The slot of `key`, whose stable hash is `hash`; a new key gets the next slot.
  Found find_or_add(const K& key, std::uint64_t hash) {
    const std::uint32_t slot = find(key, hash);
    if (slot != kNoSlot) return {slot, false};
    return {add(key, hash), true};
  }

  std::size_t size() const { return keys_.size(); }
  const K& key(std::uint32_t slot) const { return keys_[slot]; }
  std::uint64_t hash(std::uint32_t slot) const {
    if constexpr (kStoresHashes) {
      return hashes_[slot];
    } else {
      return stable_hash(keys_[slot]);
    }
  }

 private:
  static constexpr std::size_t kGroup = 8;  // buckets whose control bytes are read as one word
  static constexpr std::uint8_t kFree = 0x80;
  static constexpr std::uint64_t kLowBits = 0x0101'0101'0101'0101ULL;
  static constexpr std::uint64_t kHighBits = 0x8080'8080'8080'8080ULL;
  static constexpr std::size_t kMaxKeys = 0xffff'fffe;  // so that no slot is kNoSlot
  static constexpr std::size_t kMinGroups = 2;          // so that a shift stays below 64
  // Far enough ahead to hide a miss behind the lookups in between, near
  // enough that the prefetched lines are still in L1 when read.
  static constexpr std::size_t kLookahead = 32;
  // A number's stable hash takes a few instructions, so it is computed again
  // where needed (rehash, key groups) rather than stored: 8 bytes less per
  // key, and fewer pages to fault in as a large state grows (a quarter of
  // them for W3). Other keys (strings, structs) keep theirs.
  static constexpr bool kStoresHashes = !(std::is_arithmetic_v<K> || std::is_enum_v<K>);

  // What a lookup reads, copied out of the members (while there are
  // buckets), so that a loop that stores slots does not load them again
  // after every store.
  struct View {
    const std::uint8_t* control;
    const std::uint32_t* slots;
    std::size_t group_mask;
    int shift;  // hash >> shift is the first group
    const K* keys;

    std::size_t group_of(std::uint64_t hash) const { return hash >> shift; }
    // 7 bits of the hash, the 7 just below those that choose the group.
    std::uint8_t tag_of(std::uint64_t hash) const { return (hash >> (shift - 7)) & 0x7f; }
    std::uint64_t control_word(std::size_t group) const {
      std::uint64_t word;
      std::memcpy(&word, control + group * kGroup, sizeof word);
      return word;
    }

    std::uint32_t find(const K& key, std::uint64_t hash) const {
      const std::uint64_t pattern = kLowBits * tag_of(hash);
      for (std::size_t group = group_of(hash);; group = (group + 1) & group_mask) {
        const std::uint64_t word = control_word(group);
        // A high bit for each byte equal to the tag (and possibly for a byte
        // above one that is: those fail the key comparison).
        const std::uint64_t x = word ^ pattern;
        for (std::uint64_t match = (x - kLowBits) & ~x & kHighBits; match != 0;
             match &= match - 1) {
          const std::size_t bucket = group * kGroup + std::countr_zero(match) / 8;
          const std::uint32_t slot = slots[bucket];
          if (keys[slot] == key) return slot;
        }
        if ((word & kHighBits) != 0) return kNoSlot;  // a free bucket: the key would be here
      }
    }
    void prefetch(std::uint64_t hash) const {
      const std::size_t group = group_of(hash);
      detail::prefetch(control + group * kGroup);
      detail::prefetch(slots + group * kGroup);
    }
  };
  View view() const {
    return {control_.data(), slots_.data(), control_.size() / kGroup - 1, shift_, keys_.data()};
  }

  std::uint32_t add(const K& key, std::uint64_t hash) {
    if (keys_.size() >= kMaxKeys) {
      throw Error("keyed state holds more than " + std::to_string(kMaxKeys) +
                  " keys in one operator instance; raise the operator's parallelism");
    }
    const auto slot = static_cast<std::uint32_t>(keys_.size());
    keys_.push_back(key);
    if constexpr (kStoresHashes) hashes_.push_back(hash);
    if (8 * keys_.size() > 7 * control_.size()) {
      rehash(std::max(kMinGroups, 2 * control_.size() / kGroup));
    } else {
      place(slot);
    }
    return slot;
  }

  void rehash(std::size_t groups) {
    control_.assign(groups * kGroup, kFree);
    slots_.assign(groups * kGroup, 0);
    shift_ = 64 - std::countr_zero(groups);
    for (std::uint32_t slot = 0; slot < keys_.size(); ++slot) place(slot);
  }

  // Puts `slot` in the first free bucket of its key's groups.
  void place(std::uint32_t slot) {
    const View index = view();
    const std::uint64_t hash = this->hash(slot);
    for (std::size_t group = index.group_of(hash);; group = (group + 1) & index.group_mask) {
      const std::uint64_t free = index.control_word(group) & kHighBits;
      if (free != 0) {
        const std::size_t bucket = group * kGroup + std::countr_zero(free) / 8;
        control_[bucket] = index.tag_of(hash);
        slots_[bucket] = slot;
        return;
      }
    }
  }

  std::vector<std::uint8_t> control_;  // per bucket: kFree, or the tag of its key
  std::vector<std::uint32_t> slots_;   // per bucket: the slot of its key, if not free
  int shift_ = 64;
  std::vector<K> keys_;
  // By slot, where kStoresHashes: for rehashing without hashing keys again,
  // and for key groups.
  std::vector<std::uint64_t> hashes_;
};

}  // namespace sage::detail
