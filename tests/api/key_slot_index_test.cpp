// The index that numbers the keys of a keyed operator instance: slots are
// dense and stable, keys whose hashes collide stay apart, and a batch's
// lookup adds no key.
#include "sage/detail/key_slot_index.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sage/stable_hash.hpp"
#include "sage/state.hpp"

namespace sage::detail {
namespace {

TEST(KeySlotIndexTest, SlotsAreDenseAndStableAcrossGrowth) {
  KeySlotIndex<long long> index;
  constexpr long long kKeys = 100'000;
  for (long long key = 0; key < kKeys; ++key) {
    const auto found = index.find_or_add(key * 128, stable_hash(key * 128));
    ASSERT_TRUE(found.added);
    ASSERT_EQ(found.slot, static_cast<std::uint32_t>(key));
  }
  for (long long key = kKeys - 1; key >= 0; --key) {
    const auto found = index.find_or_add(key * 128, stable_hash(key * 128));
    ASSERT_FALSE(found.added);
    ASSERT_EQ(found.slot, static_cast<std::uint32_t>(key));
    ASSERT_EQ(index.key(found.slot), key * 128);
  }
  EXPECT_EQ(index.size(), static_cast<std::size_t>(kKeys));
}

TEST(KeySlotIndexTest, KeysWithTheSameHashAreToldApart) {
  // Hashes that agree in every bit the index looks at still name two keys.
  KeySlotIndex<std::string> index;
  EXPECT_EQ(index.find_or_add("a", 42).slot, 0u);
  EXPECT_EQ(index.find_or_add("b", 42).slot, 1u);
  EXPECT_FALSE(index.find_or_add("a", 42).added);
  EXPECT_EQ(index.find_or_add("b", 42).slot, 1u);
  EXPECT_EQ(index.find_or_add("c", 42).slot, 2u);
  EXPECT_EQ(index.size(), 3u);
}

TEST(KeySlotIndexTest, ManyKeysWithOneHashFillGroupAfterGroup) {
  // 200 keys that all start at the same group, with the same 7 bits: they
  // fill it and the groups after it, through several rehashes.
  KeySlotIndex<std::string> index;
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(index.find_or_add("k" + std::to_string(i), 7).slot, static_cast<std::uint32_t>(i));
  }
  for (int i = 0; i < 200; ++i) {
    const auto found = index.find_or_add("k" + std::to_string(i), 7);
    ASSERT_FALSE(found.added);
    ASSERT_EQ(found.slot, static_cast<std::uint32_t>(i));
  }
  EXPECT_EQ(index.find("k200", 7), KeySlotIndex<std::string>::kNoSlot);
}

TEST(KeySlotIndexTest, FindAllAgreesWithFindAndAddsNothing) {
  KeySlotIndex<long long> index;
  std::vector<long long> keys;
  std::vector<std::uint64_t> hashes;
  for (long long key = 0; key < 20'000; ++key) {
    keys.push_back(key);
    hashes.push_back(stable_hash(key));
    if (key % 3 != 0) index.find_or_add(key, hashes.back());  // a third stays unknown
  }
  std::vector<std::uint32_t> slots(keys.size());
  index.find_all(keys, hashes, slots.data());
  EXPECT_EQ(index.size(), 20'000u - 6'667u);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    ASSERT_EQ(slots[i], index.find(keys[i], hashes[i]));
    if (keys[i] % 3 == 0) {
      ASSERT_EQ(slots[i], KeySlotIndex<long long>::kNoSlot);
    } else {
      ASSERT_EQ(index.key(slots[i]), keys[i]);
    }
  }
  KeySlotIndex<long long> empty;
  empty.find_all(keys, hashes, slots.data());
  EXPECT_EQ(slots.front(), KeySlotIndex<long long>::kNoSlot);
  EXPECT_EQ(empty.size(), 0u);
}

TEST(KeySlotIndexTest, ABatchsNewKeyGetsItsSlotOnlyWhenItsRecordUsesState) {
  // As a keyed operator runs a batch: slots looked up before the first
  // record, kNoSlot for new keys; a new key seen twice gets one slot, and a
  // record that leaves state alone adds no key.
  TypedKeyedStateBackend<long long> backend;
  ValueState<long long> count(backend, "count");
  const std::vector<long long> keys = {5, 9, 5, 11};
  std::vector<std::uint64_t> hashes;
  for (const long long key : keys) hashes.push_back(stable_hash(key));
  std::vector<std::uint32_t> slots(keys.size());
  backend.find_slots(keys, hashes, slots.data());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    ASSERT_EQ(slots[i], KeySlotIndex<long long>::kNoSlot);
    backend.set_current_key(keys[i], hashes[i], slots[i]);
    if (keys[i] != 11) ++count.get_or_init(0);
  }
  EXPECT_EQ(backend.key_count(), 2u);
  backend.find_slots(keys, hashes, slots.data());
  EXPECT_EQ(slots[0], slots[2]);
  EXPECT_NE(slots[0], slots[1]);
  EXPECT_EQ(slots[3], KeySlotIndex<long long>::kNoSlot);
  backend.set_current_key(keys[2], hashes[2], slots[2]);
  EXPECT_EQ(count.value(), 2);
  backend.set_current_key(keys[1], hashes[1], slots[1]);
  EXPECT_EQ(count.value(), 1);
}

}  // namespace
}  // namespace sage::detail
