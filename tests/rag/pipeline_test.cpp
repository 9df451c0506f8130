// The RAG operators in LocalEnvironment jobs: documents are chunked, embedded
// in parallel and indexed into a sharded collection; queries are retrieved in
// parallel and turned into prompts, each exactly once. A collection that
// cannot be read fails the job with its one-line error.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sage/rag.hpp>
#include <sage/sage.hpp>

#include "support/collect.hpp"
#include "support/eventually.hpp"
#include "support/temp_dir.hpp"

namespace sage::rag {
namespace {

std::vector<Document> documents() {
  std::vector<Document> docs;
  for (int d = 0; d < 12; ++d) {
    std::string text;
    for (int w = 0; w < 40; ++w) {
      text += "word" + std::to_string(d * 100 + w) + (w % 9 == 8 ? ". " : " ");
    }
    docs.push_back(Document{.id = "doc" + std::to_string(d), .text = text});
  }
  return docs;
}

const ChunkerConfig kChunking{.size = 80, .overlap = 20};

void build_collection(const std::string& directory) {
  LocalEnvironment env("rag-ingest");
  env.from_collection(documents())
      .flat_map<Chunker>(Options{.name = "chunker"}, kChunking)
      .map<HashEmbedder>(Options{.name = "embedder", .parallelism = 2}, HashEmbedderConfig{})
      .sink<IndexWriter>(Options{.name = "writer"}, IndexWriterConfig{.collection = directory});
  env.execute();
}

TEST(RagPipeline, EveryQueryIsAnsweredOnceAndAChunksOwnTextFindsItFirst) {
  testing::TempDir dir;
  build_collection(dir.path());

  std::vector<std::string> queries;
  std::vector<std::pair<std::string, std::string>> expected;  // (query, its chunk's id)
  const Chunker chunker(kChunking);
  for (const Document& document : documents()) {
    for (const Chunk& chunk : chunker.split(document)) {
      queries.push_back(chunk.text);
      expected.emplace_back(chunk.text, chunk.id);
    }
  }
  std::sort(expected.begin(), expected.end());

  auto answered = std::make_shared<testing::Collected<std::pair<std::string, std::string>>>();
  LocalEnvironment env("rag-query");
  env.from_collection(queries)
      .map<Retriever>(Options{.name = "retriever", .parallelism = 2},
                      RetrieverConfig{.collection = dir.path(), .top_k = 3})
      .map<Promptor>(Options{.name = "promptor"})
      .map([](const Prompt& prompt) {
        EXPECT_EQ(prompt.hits.size(), 3u);
        EXPECT_EQ(prompt.messages.size(), 2u);
        return std::pair(prompt.query, prompt.hits.empty() ? std::string() : prompt.hits[0].id);
      })
      .sink<testing::CollectSink<std::pair<std::string, std::string>>>(answered);
  env.execute();
  EXPECT_EQ(answered->sorted(), expected);
}

TEST(RagPipeline, AMissingCollectionFailsTheJobWithItsPath) {
  testing::TempDir dir;
  LocalEnvironment env("rag-missing");
  env.from_collection(std::vector<std::string>{"a question"})
      .map<Retriever>(Options{.name = "retriever"},
                      RetrieverConfig{.collection = dir.file("absent")})
      .sink([](const Retrieved&) {});
  try {
    env.execute();
    FAIL() << "the job succeeded";
  } catch (const JobFailedError& e) {
    EXPECT_NE(
        std::string(e.what()).find("collection " + dir.file("absent") + ": no such directory"),
        std::string::npos)
        << e.what();
  }
}

// Documents without end, counted as they leave the source.
class EndlessDocuments {
 public:
  explicit EndlessDocuments(std::shared_ptr<std::atomic<int>> emitted)
      : emitted_(std::move(emitted)) {}
  std::optional<Document> next() {
    const int n = emitted_->fetch_add(1);
    return Document{.id = "doc" + std::to_string(n),
                    .text = "text of document " + std::to_string(n)};
  }

 private:
  std::shared_ptr<std::atomic<int>> emitted_;
};

TEST(RagPipeline, AStoppedIngestPublishesNoShard) {
  testing::TempDir dir;
  auto emitted = std::make_shared<std::atomic<int>>(0);
  LocalEnvironment env("rag-stopped-ingest");
  env.from_source<EndlessDocuments>(Options{.name = "documents"}, emitted)
      .flat_map<Chunker>(Options{.name = "chunker"}, kChunking)
      .map<HashEmbedder>(Options{.name = "embedder"}, HashEmbedderConfig{})
      .sink<IndexWriter>(Options{.name = "writer"}, IndexWriterConfig{.collection = dir.path()});
  env.submit();
  ASSERT_TRUE(testing::eventually([&] { return emitted->load() > 5000; }, std::chrono::seconds(30)))
      << "the source emitted only " << emitted->load() << " documents in 30 s";
  env.stop();
  const JobResult result = env.wait();
  EXPECT_EQ(result.state, JobState::kStopped);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/shard-0"))
      << "a stopped job published a shard";
}

}  // namespace
}  // namespace sage::rag
