// Vector indexes: exact scan ordering, and HNSW recall@10 against it.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <vector>

#include <sage/rag.hpp>

namespace sage::rag {
namespace {

std::vector<float> random_unit_vector(std::mt19937& random, int dim) {
  std::normal_distribution<float> normal;
  std::vector<float> v(static_cast<std::size_t>(dim));
  double squares = 0;
  for (float& x : v) {
    x = normal(random);
    squares += double(x) * x;
  }
  for (float& x : v) x = static_cast<float>(x / std::sqrt(squares));
  return v;
}

TEST(ExactIndex, ReturnsTheNearestBestFirst) {
  ExactIndex index(2);
  index.add(std::vector<float>{1, 0}, 7);
  index.add(std::vector<float>{0, 1}, 8);
  index.add(std::vector<float>{0.6f, 0.8f}, 9);
  const auto found = index.search(std::vector<float>{0, 1}, 2);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].label, 8u);
  EXPECT_FLOAT_EQ(found[0].score, 1.0f);
  EXPECT_EQ(found[1].label, 9u);
  EXPECT_EQ(index.search(std::vector<float>{1, 0}, 10).size(), 3u);
  EXPECT_THROW(index.search(std::vector<float>{1, 0, 0}, 1), std::invalid_argument);
}

TEST(HnswIndex, RecallAt10AgainstExactScanAtTheDefaultEf) {
  constexpr int kDim = 384;
  constexpr int kVectors = 3000;
  constexpr int kQueries = 100;
  constexpr std::size_t kK = 10;
  std::mt19937 random(42);
  HnswIndex hnsw(kDim, 1000);  // grows past its first capacity
  ExactIndex exact(kDim);
  for (int label = 0; label < kVectors; ++label) {
    const auto v = random_unit_vector(random, kDim);
    hnsw.add(v, static_cast<std::uint64_t>(label));
    exact.add(v, static_cast<std::uint64_t>(label));
  }
  EXPECT_EQ(hnsw.size(), static_cast<std::size_t>(kVectors));
  std::size_t found = 0;
  for (int q = 0; q < kQueries; ++q) {
    const auto query = random_unit_vector(random, kDim);
    std::set<std::uint64_t> truth;
    for (const Neighbor& n : exact.search(query, kK)) truth.insert(n.label);
    const auto approximate = hnsw.search(query, kK);
    ASSERT_EQ(approximate.size(), kK);
    for (std::size_t i = 1; i < approximate.size(); ++i) {
      EXPECT_GE(approximate[i - 1].score, approximate[i].score);
    }
    for (const Neighbor& n : approximate) found += truth.count(n.label);
  }
  const double recall = double(found) / (kQueries * kK);
  RecordProperty("recall_at_10", std::to_string(recall));
  EXPECT_GE(recall, 0.95);
}

}  // namespace
}  // namespace sage::rag
