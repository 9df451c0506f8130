// HashEmbedder: the vectors of SAGE's HashEmbedding (the expected values were
// computed by its Python algorithm), unit norm, deterministic.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <sage/rag.hpp>

namespace sage::rag {
namespace {

std::map<int, float> nonzero(const std::vector<float>& vector) {
  std::map<int, float> out;
  for (std::size_t i = 0; i < vector.size(); ++i) {
    if (vector[i] != 0) out[static_cast<int>(i)] = vector[i];
  }
  return out;
}

void expect_components(const std::vector<float>& vector, const std::vector<int>& ones, int twice,
                       float unit) {
  const auto found = nonzero(vector);
  std::map<int, float> expected;
  for (int i : ones) expected[i] = unit;
  expected[twice] = 2 * unit;
  ASSERT_EQ(found.size(), expected.size());
  for (const auto& [index, value] : expected) {
    ASSERT_TRUE(found.contains(index)) << index;
    EXPECT_NEAR(found.at(index), value, 1e-6) << index;
  }
}

TEST(HashEmbedder, MatchesSageOnAsciiText) {
  // Tokens: hello, world, hello_sage, 42; 32 words hashed, one index twice: 1/sqrt(34).
  expect_components(hash_embed("Hello, World! hello_sage 42"),
                    {10,  14,  21,  27,  31,  38,  72,  115, 124, 143, 147, 168, 174, 182, 221,
                     223, 235, 237, 249, 257, 292, 300, 318, 324, 325, 335, 337, 341, 346, 371},
                    283, 0.171498585f);
}

TEST(HashEmbedder, MatchesSageOnUnicodeText) {
  // Tokens: größe, über, 東京, café.
  expect_components(hash_embed("Größe ÜBER 東京 café"),
                    {15,  40,  53,  56,  57,  60,  66,  93,  109, 133, 137, 143, 147, 155, 162,
                     163, 185, 211, 238, 244, 252, 266, 297, 301, 308, 313, 345, 357, 368, 376},
                    279, 0.171498585f);
}

TEST(HashEmbedder, TextWithoutWordsIsOneToken) {
  auto found = nonzero(hash_embed("?!"));
  EXPECT_EQ(found.size(), 8u);
  for (int index : {25, 30, 45, 162, 211, 215, 250, 340}) {
    EXPECT_NEAR(found[index], 0.353553391f, 1e-6);
  }
}

TEST(HashEmbedder, UnitNormDeterministicAndZeroForEmptyText) {
  const HashEmbedder embedder;
  const auto a = embedder.embed("The quick brown fox jumps over the lazy dog");
  EXPECT_EQ(a.size(), 384u);
  double squares = 0;
  for (float x : a) squares += double(x) * x;
  EXPECT_NEAR(std::sqrt(squares), 1.0, 1e-6);
  EXPECT_EQ(a, HashEmbedder().embed("The quick brown fox jumps over the lazy dog"));
  EXPECT_EQ(hash_embed("", 128), std::vector<float>(128, 0.0f));
}

TEST(HashEmbedder, MapKeepsTheChunk) {
  const Chunk chunk{.id = "d#0", .doc_id = "d", .text = "some words"};
  const Embedded embedded = HashEmbedder(HashEmbedderConfig{.dim = 64}).map(chunk);
  EXPECT_EQ(embedded.chunk, chunk);
  EXPECT_EQ(embedded.vector, hash_embed("some words", 64));
}

TEST(HashEmbedder, RejectsSmallDimension) {
  EXPECT_THROW(HashEmbedder(HashEmbedderConfig{.dim = 63}), Error);
}

}  // namespace
}  // namespace sage::rag
