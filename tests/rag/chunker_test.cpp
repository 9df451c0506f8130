// Chunker: windows of code points with overlap, ids from 0, UTF-8 kept whole,
// and a clear error for a config out of range.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <sage/rag.hpp>

namespace sage::rag {
namespace {

std::vector<std::string> texts(const std::vector<Chunk>& chunks) {
  std::vector<std::string> out;
  for (const Chunk& chunk : chunks) out.push_back(chunk.text);
  return out;
}

TEST(Chunker, WindowsOverlapAndEndAtTheText) {
  const Chunker chunker(ChunkerConfig{.size = 4, .overlap = 1});
  const auto chunks = chunker.split(Document{.id = "d", .text = "abcdefghij"});
  EXPECT_EQ(texts(chunks), (std::vector<std::string>{"abcd", "defg", "ghij"}));
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].id, "d#0");
  EXPECT_EQ(chunks[2].id, "d#2");
  EXPECT_EQ(chunks[1].doc_id, "d");
}

TEST(Chunker, LastWindowMayBeShort) {
  const Chunker chunker(ChunkerConfig{.size = 4, .overlap = 2});
  EXPECT_EQ(texts(chunker.split(Document{.id = "d", .text = "abcdefg"})),
            (std::vector<std::string>{"abcd", "cdef", "efg"}));
}

TEST(Chunker, ShortTextIsOneChunkAndEmptyTextNone) {
  const Chunker chunker;  // 512 / 128
  const auto one = chunker.split(Document{.id = "short", .text = "a short text"});
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0], (Chunk{.id = "short#0", .doc_id = "short", .text = "a short text"}));
  EXPECT_EQ(chunker.split(Document{.id = "x", .text = std::string(512, 'a')}).size(), 1u);
  EXPECT_TRUE(chunker.split(Document{.id = "empty", .text = ""}).empty());
}

TEST(Chunker, CountsCharactersNotBytesAndNeverSplitsOne) {
  // "é" is 2 bytes, "東" 3, "😀" 4: six characters, 16 bytes.
  const Chunker chunker(ChunkerConfig{.size = 2, .overlap = 0});
  EXPECT_EQ(texts(chunker.split(Document{.id = "u", .text = "é東😀aé東"})),
            (std::vector<std::string>{"é東", "😀a", "é東"}));
  const Chunker overlapping(ChunkerConfig{.size = 3, .overlap = 1});
  EXPECT_EQ(texts(overlapping.split(Document{.id = "u", .text = "東京😀abc"})),
            (std::vector<std::string>{"東京😀", "😀ab", "bc"}));
}

TEST(Chunker, InvalidBytesCountAsOneCharacterEach) {
  const Chunker chunker(ChunkerConfig{.size = 2, .overlap = 0});
  EXPECT_EQ(texts(chunker.split(Document{.id = "b", .text = "a\xff\xe6x"})),
            (std::vector<std::string>{"a\xff", "\xe6x"}));
}

TEST(Chunker, RejectsConfigOutOfRange) {
  EXPECT_THROW(Chunker(ChunkerConfig{.size = 0, .overlap = 0}), Error);
  EXPECT_THROW(Chunker(ChunkerConfig{.size = 4, .overlap = 4}), Error);
  EXPECT_THROW(Chunker(ChunkerConfig{.size = 4, .overlap = -1}), Error);
  try {
    Chunker(ChunkerConfig{.size = 10, .overlap = 20});
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "Chunker: ChunkerConfig::overlap is 20 with size 10; the overlap must be at least "
                 "0 and less than the size");
  }
}

}  // namespace
}  // namespace sage::rag
