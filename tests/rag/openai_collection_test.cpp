// Collections built by OpenAIEmbedder, against the test server's /embeddings:
// a Retriever embeds its queries with the collection's model at the endpoint
// it is given, so a query that is a chunk's text finds that chunk first; a
// Retriever asked for another model, or for one over a HashEmbedder
// collection, fails with a one-line error naming both; map_batch embeds many
// queries per request.
#include <gtest/gtest.h>

#include <algorithm>
#include <compare>
#include <memory>
#include <string>
#include <vector>

#include <sage/rag.hpp>
#include <sage/sage.hpp>

#include "rag/openai_test_server.hpp"
#include "support/collect.hpp"
#include "support/temp_dir.hpp"

namespace sage::rag {
namespace {

// A query and the id of its first hit.
struct Found {
  std::string query;
  std::string id;
  SAGE_FIELDS(query, id)
  auto operator<=>(const Found&) const = default;
};

const ChunkerConfig kChunking{.size = 90, .overlap = 20};
constexpr const char* kModel = "test-embedding";

std::vector<Document> documents() {
  std::vector<Document> docs;
  for (int d = 0; d < 6; ++d) {
    std::string text;
    for (int w = 0; w < 40; ++w) text += "term" + std::to_string(d * 100 + w) + " ";
    docs.push_back(Document{.id = "doc" + std::to_string(d), .text = text});
  }
  return docs;
}

std::vector<Chunk> chunks() {
  std::vector<Chunk> all;
  for (const Document& document : documents()) {
    for (Chunk& chunk : Chunker(kChunking).split(document)) all.push_back(std::move(chunk));
  }
  return all;
}

class OpenAICollectionTest : public ::testing::Test {
 protected:
  // Builds the collection with OpenAIEmbedder (batches of 4) at the server.
  void SetUp() override {
    LocalEnvironment env("openai-ingest");
    env.from_collection(documents())
        .flat_map<Chunker>(Options{.name = "chunker"}, kChunking)
        .map<OpenAIEmbedder>(
            Options{.name = "embedder", .parallelism = 2},
            OpenAIConfig{.model = kModel, .base_url = server_.base_url(), .batch_size = 4})
        .sink<IndexWriter>(Options{.name = "writer", .parallelism = 2},
                           IndexWriterConfig{.collection = dir_.path(),
                                             .embedder = OpenAIEmbedder::name_of(kModel)});
    env.execute();
  }

  // Runs every chunk's text through a Retriever with `config`: query -> first hit's id.
  std::vector<Found> retrieve(RetrieverConfig config) {
    std::vector<std::string> queries;
    for (const Chunk& chunk : chunks()) queries.push_back(chunk.text);
    auto found = std::make_shared<testing::Collected<Found>>();
    LocalEnvironment env("openai-retrieve");
    env.from_collection(queries)
        .map<Retriever>(Options{.name = "retriever", .parallelism = 2}, std::move(config))
        .map([](const Retrieved& retrieved) {
          return Found{.query = retrieved.query,
                       .id = retrieved.hits.empty() ? "" : retrieved.hits[0].id};
        })
        .sink<testing::CollectSink<Found>>(found);
    env.execute();
    return found->sorted();
  }

  // The one-line error a job with a Retriever of `config` fails with.
  std::string failure(RetrieverConfig config) {
    LocalEnvironment env("openai-retrieve-failing");
    env.from_collection(std::vector<std::string>{"a query"})
        .map<Retriever>(Options{.name = "retriever"}, std::move(config))
        .sink([](const Retrieved&) {});
    try {
      env.execute();
    } catch (const JobFailedError& e) {
      return e.what();
    }
    ADD_FAILURE() << "the job succeeded";
    return "";
  }

  OpenAITestServer server_;
  testing::TempDir dir_;
};

TEST_F(OpenAICollectionTest, QueriesAreEmbeddedAtTheEndpointAndFindTheirOwnChunkFirst) {
  std::vector<Found> expected;
  for (const Chunk& chunk : chunks())
    expected.push_back(Found{.query = chunk.text, .id = chunk.id});
  std::sort(expected.begin(), expected.end());
  const std::size_t ingest_requests = server_.requests().size();

  EXPECT_EQ(retrieve(RetrieverConfig{.collection = dir_.path(),
                                     .top_k = 3,
                                     .query_embedder = {.base_url = server_.base_url()}}),
            expected);

  // Every query went to /embeddings with the collection's model, once.
  const auto requests = server_.requests();
  std::vector<std::string> embedded;
  for (std::size_t i = ingest_requests; i < requests.size(); ++i) {
    EXPECT_EQ(requests[i].path, "/v1/embeddings");
    embedded.push_back(requests[i].key);
  }
  std::sort(embedded.begin(), embedded.end());
  std::vector<std::string> queries;
  for (const Found& found : expected) queries.push_back(found.query);
  EXPECT_EQ(embedded, queries);
}

TEST_F(OpenAICollectionTest, MapBatchEmbedsBatchSizeQueriesPerRequest) {
  Metrics metrics;
  RuntimeContext context{RuntimeContext::Identity{.operator_name = "retriever"}, metrics, nullptr};
  Retriever retriever(
      RetrieverConfig{.collection = dir_.path(),
                      .top_k = 3,
                      .query_embedder = {.base_url = server_.base_url(), .batch_size = 8}});
  retriever.open(context);
  std::vector<std::string> queries;
  for (const Chunk& chunk : chunks()) queries.push_back(chunk.text);
  ASSERT_GT(queries.size(), 16u);

  const std::size_t before = server_.requests().size();
  const std::vector<Retrieved> batched = retriever.map_batch(queries);
  const auto requests = server_.requests();
  ASSERT_EQ(requests.size() - before, (queries.size() + 7) / 8);
  for (std::size_t i = before; i < requests.size(); ++i) {
    EXPECT_EQ(requests[i].path, "/v1/embeddings");
    EXPECT_EQ(requests[i].batch, i + 1 < requests.size() ? 8 : int(queries.size() - 1) % 8 + 1);
  }
  ASSERT_EQ(batched.size(), queries.size());
  const std::vector<Chunk> all = chunks();
  for (std::size_t i = 0; i < queries.size(); ++i) {
    EXPECT_EQ(batched[i], retriever.map(queries[i])) << "query " << i;
    ASSERT_FALSE(batched[i].hits.empty());
    EXPECT_EQ(batched[i].hits[0].id, all[i].id);
  }
  retriever.close();
}

TEST_F(OpenAICollectionTest, AnotherModelForTheQueriesIsAOneLineError) {
  const std::string error = failure(
      RetrieverConfig{.collection = dir_.path(),
                      .query_embedder = {.model = "other-model", .base_url = server_.base_url()}});
  EXPECT_NE(error.find("was built by 'openai:test-embedding' of dimension 384, but "
                       "RetrieverConfig::query_embedder.model is 'other-model'; set it to "
                       "'test-embedding' or leave it empty"),
            std::string::npos)
      << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
}

TEST_F(OpenAICollectionTest, AModelForTheQueriesOfAHashCollectionIsAOneLineError) {
  testing::TempDir hashed;
  {
    LocalEnvironment env("hash-ingest");
    env.from_collection(documents())
        .flat_map<Chunker>(Options{.name = "chunker"}, kChunking)
        .map<HashEmbedder>(Options{.name = "embedder"}, HashEmbedderConfig{})
        .sink<IndexWriter>(Options{.name = "writer"},
                           IndexWriterConfig{.collection = hashed.path()});
    env.execute();
  }
  const std::string error =
      failure(RetrieverConfig{.collection = hashed.path(),
                              .query_embedder = {.model = kModel, .base_url = server_.base_url()}});
  EXPECT_NE(error.find("was built by 'hash' of dimension 384, but "
                       "RetrieverConfig::query_embedder.model is 'test-embedding'"),
            std::string::npos)
      << error;
}

TEST_F(OpenAICollectionTest, AQueryEmbeddedInAnotherDimensionIsAOneLineError) {
  const std::string error = failure(
      RetrieverConfig{.collection = dir_.path(),
                      .query_embedder = {.base_url = server_.base_url(), .dimensions = 128}});
  EXPECT_NE(
      error.find("embedded a query in 128 dimensions, but collection " + dir_.path() + " has 384"),
      std::string::npos)
      << error;
}

}  // namespace
}  // namespace sage::rag
