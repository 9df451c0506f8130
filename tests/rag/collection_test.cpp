// Collections on disk: written by IndexWriter instances as shards, read back
// whole by Collection::open, and refused with one clear line when missing,
// incomplete, corrupt or built by another embedder.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sage/rag.hpp>

#include "support/temp_dir.hpp"

namespace sage::rag {
namespace {

namespace fs = std::filesystem;

std::vector<Chunk> sample_chunks(int count) {
  std::vector<Chunk> chunks;
  for (int i = 0; i < count; ++i) {
    chunks.push_back(Chunk{.id = "doc" + std::to_string(i) + "#0",
                           .doc_id = "doc" + std::to_string(i),
                           .text = "chunk " + std::to_string(i) + " about topic" +
                                   std::to_string(i % 7) + " and item" + std::to_string(i)});
  }
  return chunks;
}

// Runs `shards` IndexWriter instances of one job over the chunks, round robin.
void write_collection(const std::string& directory, const std::vector<Chunk>& chunks, int shards,
                      IndexKind kind = IndexKind::hnsw, const std::string& job = "job-1") {
  for (int shard = 0; shard < shards; ++shard) {
    Metrics metrics;
    RuntimeContext context(
        {.job_id = job, .operator_name = "writer", .parallel_index = shard, .parallelism = shards},
        metrics, nullptr);
    IndexWriter writer(IndexWriterConfig{.collection = directory, .index = kind});
    writer.open(context);
    const HashEmbedder embedder;
    for (std::size_t i = static_cast<std::size_t>(shard); i < chunks.size();
         i += static_cast<std::size_t>(shards)) {
      writer.sink(embedder.map(chunks[i]));
    }
    writer.close();
  }
}

std::string open_error(const std::string& directory,
                       const CollectionRequirements& requirements = {}) {
  try {
    Collection::open(directory, HnswConfig{}.ef, requirements);
  } catch (const CollectionError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Collection, RoundTripOverShardsFindsAChunkByItsOwnText) {
  for (const IndexKind kind : {IndexKind::hnsw, IndexKind::exact}) {
    testing::TempDir dir;
    const auto chunks = sample_chunks(200);
    write_collection(dir.path(), chunks, 3, kind);
    const Collection collection = Collection::open(dir.path());
    EXPECT_EQ(collection.size(), chunks.size());
    EXPECT_EQ(collection.shard_count(), 3u);
    EXPECT_EQ(collection.embedder(), "hash");
    EXPECT_EQ(collection.dim(), 384);
    for (const Chunk& chunk : {chunks[0], chunks[77], chunks[199]}) {
      const auto hits = collection.search(collection.embed(chunk.text), 5);
      ASSERT_EQ(hits.size(), 5u);
      EXPECT_EQ(hits[0].id, chunk.id);
      EXPECT_EQ(hits[0].text, chunk.text);
      EXPECT_NEAR(hits[0].score, 1.0f, 1e-5);
      for (std::size_t i = 1; i < hits.size(); ++i) EXPECT_GE(hits[i - 1].score, hits[i].score);
    }
  }
}

TEST(Collection, ANarrowerRebuildReplacesTheShardsOfTheWiderOne) {
  testing::TempDir dir;
  write_collection(dir.path(), sample_chunks(50), 4, IndexKind::hnsw, "job-1");
  write_collection(dir.path(), sample_chunks(20), 2, IndexKind::hnsw, "job-2");
  EXPECT_FALSE(fs::exists(dir.file("shard-2")));
  EXPECT_EQ(Collection::open(dir.path()).size(), 20u);
}

TEST(Collection, RefusesAMissingDirectory) {
  testing::TempDir dir;
  EXPECT_EQ(
      open_error(dir.file("nope")),
      "collection " + dir.file("nope") +
          ": no such directory; build the collection with IndexWriter first, or fix the path");
}

TEST(Collection, RefusesAnIncompleteCollection) {
  testing::TempDir dir;
  write_collection(dir.path(), sample_chunks(10), 2);
  fs::remove(dir.file("shard-1/manifest.json"));
  EXPECT_EQ(open_error(dir.path()),
            "collection " + dir.path() +
                ": shard-1 has no manifest.json (the collection is incomplete: its IndexWriter did "
                "not finish); build it again");
}

TEST(Collection, RefusesShardsOfDifferentBuilds) {
  testing::TempDir dir;
  testing::TempDir other;
  write_collection(dir.path(), sample_chunks(10), 2, IndexKind::hnsw, "job-1");
  write_collection(other.path(), sample_chunks(10), 2, IndexKind::hnsw, "job-2");
  fs::remove_all(dir.file("shard-1"));
  fs::copy(other.file("shard-1"), dir.file("shard-1"));
  EXPECT_NE(open_error(dir.path()).find("shard-1 belongs to another build (job job-2)"),
            std::string::npos);
}

TEST(Collection, RefusesShardsOfOneBuildThatDisagreeNamingTheField) {
  testing::TempDir dir;
  write_collection(dir.path(), sample_chunks(10), 2);
  nlohmann::json manifest = nlohmann::json::parse(std::ifstream(dir.file("shard-1/manifest.json")));
  manifest["embedder"]["dim"] = 7;
  std::ofstream(dir.file("shard-1/manifest.json")) << manifest.dump();
  const std::string error = open_error(dir.path());
  EXPECT_NE(error.find("shard-1/manifest.json says embedder {\"dim\":7,"), std::string::npos)
      << error;
  EXPECT_NE(error.find("the files were changed after the build"), std::string::npos) << error;
  EXPECT_EQ(error.find("belongs to another build"), std::string::npos) << error;
}

TEST(Collection, RefusesCorruptFiles) {
  testing::TempDir dir;
  write_collection(dir.path(), sample_chunks(30), 1);
  {
    std::fstream index(dir.file("shard-0/index.hnsw"),
                       std::ios::in | std::ios::out | std::ios::binary);
    index.seekp(100);
    index.put('\x7f');
  }
  EXPECT_EQ(open_error(dir.path()),
            "collection " + dir.path() +
                ": shard-0/index.hnsw is corrupt (its size or SHA-256 differs from the manifest); "
                "build the collection again");
  std::ofstream(dir.file("shard-0/manifest.json")) << "{\"format\": ";
  EXPECT_NE(open_error(dir.path()).find("shard-0/manifest.json is corrupt ("), std::string::npos);
}

TEST(Collection, RefusesAnotherEmbedderOrDimension) {
  testing::TempDir dir;
  write_collection(dir.path(), sample_chunks(10), 1);
  EXPECT_EQ(open_error(dir.path(), {.embedder = "openai", .dim = 0}),
            "collection " + dir.path() +
                ": it was built by embedder 'hash' of dimension 384, but embedder 'openai' of "
                "dimension 384 is required; build it with that embedder or change the requirement");
  EXPECT_NE(
      open_error(dir.path(), {.embedder = "", .dim = 1536}).find("of dimension 1536 is required"),
      std::string::npos);

  testing::TempDir foreign;
  Metrics metrics;
  RuntimeContext context({.job_id = "job-1", .operator_name = "writer"}, metrics, nullptr);
  IndexWriter writer(IndexWriterConfig{
      .collection = foreign.path(), .embedder = "text-embedding-3-small", .dim = 4});
  writer.open(context);
  writer.sink(Embedded{.chunk = sample_chunks(1)[0], .vector = {1, 0, 0, 0}});
  EXPECT_THROW(writer.sink(Embedded{.chunk = sample_chunks(1)[0], .vector = {1, 0}}), Error);
  writer.close();
  EXPECT_EQ(
      open_error(foreign.path()),
      "collection " + foreign.path() +
          ": it was built by embedder 'text-embedding-3-small' of dimension 4, which sage::rag "
          "cannot run to embed queries");
}

// A writer restored from a checkpoint taken halfway through its input, then
// fed the rest, builds the collection of a writer that saw all of it.
TEST(Collection, AWriterRestoredFromACheckpointBuildsTheWholeShard) {
  testing::TempDir dir;
  const auto chunks = sample_chunks(120);
  const HashEmbedder embedder;
  Metrics metrics;
  RuntimeContext context({.job_id = "job-1", .operator_name = "writer"}, metrics, nullptr);
  Writer checkpoint;
  {
    IndexWriter before(IndexWriterConfig{.collection = dir.path(), .index = IndexKind::exact});
    before.open(context);
    for (std::size_t i = 0; i < 50; ++i) before.sink(embedder.map(chunks[i]));
    before.save_state(checkpoint);
  }  // the instance dies without close(): nothing is written
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/shard-0"));

  IndexWriter after(IndexWriterConfig{.collection = dir.path(), .index = IndexKind::exact});
  after.open(context);
  const std::string bytes = checkpoint.take();
  Reader in(bytes);
  after.restore_state(in);
  EXPECT_TRUE(in.at_end());
  for (std::size_t i = 50; i < chunks.size(); ++i) after.sink(embedder.map(chunks[i]));
  after.close();

  const Collection collection = Collection::open(dir.path());
  ASSERT_EQ(collection.size(), chunks.size());
  for (const Chunk& chunk : {chunks[0], chunks[49], chunks[50], chunks[119]}) {
    const auto hits = collection.search(collection.embed(chunk.text), 1);
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].id, chunk.id);
  }
}

TEST(Collection, AWriterRefusesACheckpointOfAnotherDimension) {
  testing::TempDir dir;
  Writer checkpoint;
  IndexWriter wide(IndexWriterConfig{.collection = dir.path()});
  wide.sink(HashEmbedder().map(sample_chunks(1)[0]));
  wide.save_state(checkpoint);
  IndexWriter narrow(IndexWriterConfig{.collection = dir.path(), .dim = 64});
  const std::string bytes = checkpoint.take();
  Reader in(bytes);
  try {
    narrow.restore_state(in);
    FAIL() << "restored 384-dimensional vectors into a 64-dimensional writer";
  } catch (const SerializationError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("not 64 per chunk"));
  }
}

}  // namespace
}  // namespace sage::rag
