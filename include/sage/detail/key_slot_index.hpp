// Numbers the keys of one keyed operator instance 0, 1, 2, ... in the order
// they first appear, so that its keyed state lives in plain vectors indexed by
// that slot. Used only by the instance's thread.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include "sage/detail/prefetch.hpp"
#include "sage/error.hpp"

namespace sage::detail {

// Open addressing with linear probing over a power-of-two array of 8-byte
// buckets, at most half full; a lookup of a known key allocates nothing. A
// bucket holds a slot and 32 bits of its key's hash, so a key is compared only
// where those bits match: a lookup reads one bucket and one key. Buckets are
// chosen by the high bits of the hash because the low bits are what key_by
// routes by (all keys of one instance share some of them).
template <class K>
class KeySlotIndex {
 public:
  struct Found {
    std::uint32_t slot;
    bool added;  // the key was new and got the next slot
  };

  // The slot of `key`, whose stable hash is `hash`; a new key gets the next slot.
  Found find_or_add(const K& key, std::uint64_t hash) {
    if (!buckets_.empty()) {
      const std::uint32_t tag = tag_of(hash);
      for (std::size_t b = hash >> shift_;; b = (b + 1) & mask()) {
        const Bucket bucket = buckets_[b];
        if (bucket.slot == kFree) break;
        if (bucket.tag == tag && keys_[bucket.slot - 1] == key) return {bucket.slot - 1, false};
      }
    }
    return {add(key, hash), true};
  }

  // Starts loading the bucket where a lookup of `hash` begins.
  void prefetch(std::uint64_t hash) const {
    if (!buckets_.empty()) detail::prefetch(&buckets_[hash >> shift_]);
  }

  std::size_t size() const { return keys_.size(); }
  const K& key(std::uint32_t slot) const { return keys_[slot]; }
  std::uint64_t hash(std::uint32_t slot) const { return hashes_[slot]; }

 private:
  struct Bucket {
    std::uint32_t slot;  // slot + 1, or kFree
    std::uint32_t tag;
  };
  static constexpr std::uint32_t kFree = 0;
  static constexpr std::size_t kMaxKeys = 0xffff'fffe;  // so that slot + 1 fits a bucket
  static constexpr std::size_t kMinBuckets = 16;

  static std::uint32_t tag_of(std::uint64_t hash) { return static_cast<std::uint32_t>(hash); }
  std::size_t mask() const { return buckets_.size() - 1; }

  std::uint32_t add(const K& key, std::uint64_t hash) {
    if (keys_.size() >= kMaxKeys) {
      throw Error("keyed state holds more than " + std::to_string(kMaxKeys) +
                  " keys in one operator instance; raise the operator's parallelism");
    }
    const auto slot = static_cast<std::uint32_t>(keys_.size());
    keys_.push_back(key);
    hashes_.push_back(hash);
    if (2 * keys_.size() > buckets_.size()) {
      rehash(std::max(kMinBuckets, 2 * buckets_.size()));
    } else {
      place(slot);
    }
    return slot;
  }

  void rehash(std::size_t bucket_count) {
    buckets_.assign(bucket_count, Bucket{kFree, 0});
    shift_ = 64 - std::countr_zero(bucket_count);
    for (std::uint32_t slot = 0; slot < keys_.size(); ++slot) place(slot);
  }

  void place(std::uint32_t slot) {
    std::size_t b = hashes_[slot] >> shift_;
    while (buckets_[b].slot != kFree) b = (b + 1) & mask();
    buckets_[b] = Bucket{slot + 1, tag_of(hashes_[slot])};
  }

  std::vector<Bucket> buckets_;
  int shift_ = 64;  // hash >> shift_ is a bucket; unused while there are none
  std::vector<K> keys_;
  // For rehashing without hashing keys again, and for key groups.
  std::vector<std::uint64_t> hashes_;
};

}  // namespace sage::detail
