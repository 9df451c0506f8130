// key_by relies on this hash being identical in every process and build: the
// golden values below pin it.
#include "sage/stable_hash.hpp"

#include <gtest/gtest.h>

#include <unordered_map>
#include <vector>

namespace sage {
namespace {

TEST(StableHashTest, GoldenValuesNeverChange) {
  EXPECT_EQ(stable_hash(0), 0x0ULL);
  EXPECT_EQ(stable_hash(42), 0x810879608e4259ccULL);
  EXPECT_EQ(stable_hash(std::string("sage")), 0xb892846077ff9503ULL);
  EXPECT_EQ(stable_hash(std::string()), 0x6393d51c06c618dcULL);
  EXPECT_EQ(stable_hash(std::pair<int, std::string>(1, "a")), 0xb55031e8ea05bfb6ULL);
}

TEST(StableHashTest, EqualKeysHashEqually) {
  EXPECT_EQ(stable_hash(0.0), stable_hash(-0.0));
  EXPECT_EQ(stable_hash(std::string("key")), stable_hash(std::string_view("key")));
  EXPECT_EQ(stable_hash(std::string("key")), stable_hash("key"));
  EXPECT_NE(stable_hash(std::string("key")), stable_hash(std::string("kez")));
}

TEST(StableHashTest, SpreadsConsecutiveIntegersEvenly) {
  for (int buckets : {7, 128}) {
    std::vector<int> counts(buckets, 0);
    constexpr int kKeys = 100'000;
    for (int k = 0; k < kKeys; ++k) ++counts[stable_hash(k) % buckets];
    const double mean = static_cast<double>(kKeys) / buckets;
    for (int c : counts) {
      EXPECT_GT(c, mean * 0.75);
      EXPECT_LT(c, mean * 1.25);
    }
  }
}

TEST(StableHashTest, SpreadsStringsEvenly) {
  std::vector<int> counts(128, 0);
  for (int k = 0; k < 100'000; ++k) ++counts[stable_hash("user-" + std::to_string(k)) % 128];
  for (int c : counts) {
    EXPECT_GT(c, 781 * 0.75);
    EXPECT_LT(c, 781 * 1.25);
  }
}

TEST(StableHashTest, WorksAsUnorderedMapHasher) {
  std::unordered_map<std::string, int, StableHasher> m{{"a", 1}, {"b", 2}};
  EXPECT_EQ(m.at("b"), 2);
}

}  // namespace
}  // namespace sage
