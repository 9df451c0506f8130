// Retriever: query string -> Retrieved, the top_k chunks of a collection, best
// first, with their ids and scores. Each instance loads every shard of the
// collection in open() and merges their results into the global top_k; or,
// with `sharded`, instance i of n loads only the shards s with s % n == i and
// returns its own top_k, for MergeHits to merge (rag/merge_hits.hpp). The
// query is embedded by the collection's own embedder: HashEmbedder in the
// instance, OpenAIEmbedder's model over HTTP (`query_embedder` names the
// endpoint; map_batch embeds many queries per request). A collection that cannot be read, or whose
// embedder differs from the one asked for, fails the job with a one-line error naming the path and
// the problem.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sage/functions.hpp"
#include "sage/rag/collection.hpp"
#include "sage/rag/openai.hpp"
#include "sage/rag/records.hpp"

namespace sage::rag {

struct RetrieverConfig {
  std::string collection;    // the collection's directory
  int top_k = 5;             // hits per query; >= 1
  int ef = HnswConfig{}.ef;  // HNSW search breadth (recall against speed)
  // Refuse a collection not built by this embedder / dimension (empty / 0: any).
  std::string embedder;
  int dim = 0;
  // Instance i of n searches only shards i, i+n, ...; broadcast the queries to
  // it and merge with MergeHits{.parts = n}.
  bool sharded = false;
  // For a collection built by OpenAIEmbedder: the endpoint, key, limits and
  // `dimensions` that embed the queries, as when the collection was built.
  // `model` empty: the collection's; another model than the collection's is
  // an error. Unused for a HashEmbedder collection (a model set is an error).
  OpenAIConfig query_embedder;
};

class Retriever : public Function {
 public:
  // Throws sage::Error when the config is out of range.
  explicit Retriever(RetrieverConfig config);

  void open(RuntimeContext& context) override;
  void close() override;
  Retrieved map(const std::string& query) const;
  // The Retrieved of each query, in order, as map() gives them; for a
  // collection built by OpenAIEmbedder the queries are embedded
  // query_embedder.batch_size at a time, one request each, instead of one
  // request per query (the Python ChromaRetrieverOperator maps its batches so).
  std::vector<Retrieved> map_batch(const std::vector<std::string>& queries) const;

 private:
  // A query's vector from the query embedder, checked against the collection's dimension.
  const std::vector<float>& checked(const std::vector<float>& vector) const;
  Retrieved search(const std::string& query, const std::vector<float>& vector) const;

  RetrieverConfig config_;
  std::optional<Collection> collection_;
  std::unique_ptr<OpenAIQueryEmbedder> query_embedder_;  // for an OpenAIEmbedder collection
};

}  // namespace sage::rag
