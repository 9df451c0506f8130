// Sharded retrieval: retriever instance i of n loads only the shards s with
// s % n == i, each query is broadcast to every instance, and MergeHits keyed by
// the query keeps the global top_k: the merged hits equal those of one
// retriever over the whole collection, for as many instances as shards and for
// fewer.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <sage/rag.hpp>
#include <sage/sage.hpp>

#include "support/collect.hpp"
#include "support/temp_dir.hpp"

namespace sage::rag {
namespace {

using Ranked = std::pair<std::string, std::vector<std::pair<std::string, float>>>;

std::vector<Document> documents() {
  std::vector<Document> docs;
  for (int d = 0; d < 30; ++d) {
    std::string text;
    for (int w = 0; w < 60; ++w) text += "term" + std::to_string((d * 37 + w * 11) % 300) + " ";
    docs.push_back(Document{.id = "doc" + std::to_string(d), .text = text});
  }
  return docs;
}

std::vector<std::string> queries() {
  std::vector<std::string> result;
  for (int q = 0; q < 40; ++q)
    result.push_back("term" + std::to_string(q * 7 % 300) + " term" + std::to_string(q * 13 % 300));
  return result;
}

// The documents, chunked and hash-embedded, as a collection of 4 shards.
void ingest_four_shards(const std::string& collection) {
  LocalEnvironment env("ingest");
  env.from_collection(documents())
      .flat_map<Chunker>(Options{.name = "chunker"}, ChunkerConfig{.size = 120, .overlap = 30})
      .map<HashEmbedder>(Options{.name = "embedder"}, HashEmbedderConfig{})
      .sink<IndexWriter>(Options{.name = "writer", .parallelism = 4},
                         IndexWriterConfig{.collection = collection});
  env.execute();
}

Ranked ranked(const Retrieved& retrieved) {
  Ranked result{retrieved.query, {}};
  for (const Hit& hit : retrieved.hits) result.second.emplace_back(hit.id, hit.score);
  return result;
}

std::vector<Ranked> retrieve_unsharded(const std::string& collection) {
  auto found = std::make_shared<testing::Collected<Ranked>>();
  LocalEnvironment env("retrieve");
  env.from_collection(queries())
      .map<Retriever>(Options{.name = "retriever"},
                      RetrieverConfig{.collection = collection, .top_k = 5})
      .map([](const Retrieved& r) { return ranked(r); })
      .sink<testing::CollectSink<Ranked>>(found);
  env.execute();
  return found->sorted();
}

std::vector<Ranked> retrieve_sharded(const std::string& collection, int instances) {
  auto found = std::make_shared<testing::Collected<Ranked>>();
  LocalEnvironment env("retrieve-sharded");
  env.from_collection(queries())
      .broadcast()
      .map<Retriever>(Options{.name = "retriever", .parallelism = instances},
                      RetrieverConfig{.collection = collection, .top_k = 5, .sharded = true})
      .key_by([](const Retrieved& r) { return r.query; })
      .flat_map<MergeHits>(Options{.name = "merge", .parallelism = 2},
                           MergeHitsConfig{.parts = instances, .top_k = 5})
      .map([](const Retrieved& r) { return ranked(r); })
      .sink<testing::CollectSink<Ranked>>(found);
  env.execute();
  return found->sorted();
}

TEST(ShardedRetrieval, MergedHitsEqualThoseOfOneRetrieverOverTheWholeCollection) {
  testing::TempDir dir;
  ingest_four_shards(dir.path());
  const auto expected = retrieve_unsharded(dir.path());
  ASSERT_EQ(expected.size(), queries().size());
  for (const auto& [query, hits] : expected) ASSERT_EQ(hits.size(), 5u) << query;
  EXPECT_EQ(retrieve_sharded(dir.path(), 4), expected) << "one shard per instance";
  EXPECT_EQ(retrieve_sharded(dir.path(), 3), expected) << "instance 0 has shards 0 and 3";
}

TEST(ShardedRetrieval, AShardedCollectionLoadsOnlyItsShards) {
  testing::TempDir dir;
  ingest_four_shards(dir.path());
  const Collection all = Collection::open(dir.path());
  std::size_t total = 0;
  for (int i = 0; i < 3; ++i) {
    const Collection part = Collection::open(dir.path(), HnswConfig{}.ef, {},
                                             ShardSelection{.instance = i, .instances = 3});
    EXPECT_EQ(part.shard_count(), i == 0 ? 2u : 1u);
    total += part.size();
  }
  EXPECT_EQ(total, all.size());
  EXPECT_THROW(MergeHits(MergeHitsConfig{.parts = 0}), Error);
}

}  // namespace
}  // namespace sage::rag
