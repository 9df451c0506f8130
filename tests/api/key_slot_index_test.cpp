// The index that numbers the keys of a keyed operator instance: slots are
// dense and stable, and keys whose hashes collide stay apart.
#include "sage/detail/key_slot_index.hpp"

#include <gtest/gtest.h>

#include <string>

#include "sage/stable_hash.hpp"

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

}  // namespace
}  // namespace sage::detail
