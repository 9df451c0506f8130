// IndexWriter: a sink of Embedded records that builds a collection on disk
// (collection.hpp). Parallel instances do not share files: instance i of n
// writes shard-<i>, and the collection is shards 0..n-1 of one job. Each
// instance keeps its records in memory and builds and writes its shard in
// close(), when its input has ended — unless the job was stopped
// (RuntimeContext::stop_requested): a stopped job's input was cut short, so it
// publishes nothing and a collection already in the directory stays as it
// was. One instance, one thread. With
// checkpoints on, the records taken so far are part of each checkpoint, so a
// job restarted from one builds the same collection as a run without failure.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "sage/functions.hpp"
#include "sage/rag/collection.hpp"
#include "sage/rag/hash_embedder.hpp"
#include "sage/rag/records.hpp"
#include "sage/serialization.hpp"

namespace sage::rag {

struct IndexWriterConfig {
  std::string collection;                                   // the collection's directory
  std::string embedder = std::string(HashEmbedder::kName);  // what built the vectors
  int dim = HashEmbedderConfig{}.dim;                       // their dimension
  IndexKind index = IndexKind::hnsw;                        // exact: a full scan, for small ones
  HnswConfig hnsw = {};
};

class IndexWriter : public Function {
 public:
  // Throws sage::Error when the config is incomplete.
  explicit IndexWriter(IndexWriterConfig config);

  void open(RuntimeContext& context) override;
  // Throws sage::Error when the vector's dimension is not the config's.
  void sink(const Embedded& record);
  // Writes shard-<parallel index> unless the job was stopped; throws CollectionError.
  void close() override;

  // Checkpoints: the chunks and vectors taken so far. restore_state throws
  // SerializationError for bytes that are not such a state of this dimension.
  void save_state(Writer& out) const;
  void restore_state(Reader& in);

 private:
  IndexWriterConfig config_;
  RuntimeContext* context_ = nullptr;
  int shard_ = 0;
  int shards_ = 1;
  std::string build_;
  std::vector<Chunk> chunks_;
  std::vector<float> vectors_;  // chunks_.size() * dim, row by row
};

}  // namespace sage::rag
