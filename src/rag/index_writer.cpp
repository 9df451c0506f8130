#include "sage/rag/index_writer.hpp"

#include <cstdio>
#include <span>

#include "sage/error.hpp"

namespace sage::rag {

IndexWriter::IndexWriter(IndexWriterConfig config) : config_(std::move(config)) {
  if (config_.collection.empty()) {
    throw Error(
        "IndexWriter: IndexWriterConfig::collection is empty; name the collection's directory");
  }
  if (config_.dim < 1) {
    throw Error("IndexWriter: IndexWriterConfig::dim is " + std::to_string(config_.dim) +
                "; give the embedder's dimension");
  }
}

void IndexWriter::open(RuntimeContext& context) {
  context_ = &context;
  shard_ = context.parallel_index();
  shards_ = context.parallelism();
  build_ = context.job_id();
}

void IndexWriter::sink(const Embedded& record) {
  if (record.vector.size() != static_cast<std::size_t>(config_.dim)) {
    throw Error("IndexWriter: chunk '" + record.chunk.id + "' has a vector of " +
                std::to_string(record.vector.size()) + " dimensions, but the collection " +
                config_.collection + " is for " + std::to_string(config_.dim) +
                " (IndexWriterConfig::dim); embed with the embedder it names");
  }
  chunks_.push_back(record.chunk);
  vectors_.insert(vectors_.end(), record.vector.begin(), record.vector.end());
}

void IndexWriter::save_state(Writer& out) const {
  out.write(chunks_);
  out.write(vectors_);
}

void IndexWriter::restore_state(Reader& in) {
  auto chunks = in.read<std::vector<Chunk>>();
  auto vectors = in.read<std::vector<float>>();
  if (vectors.size() != chunks.size() * static_cast<std::size_t>(config_.dim)) {
    throw SerializationError("IndexWriter: a checkpoint holds " + std::to_string(chunks.size()) +
                             " chunks but " + std::to_string(vectors.size()) +
                             " vector components, not " + std::to_string(config_.dim) +
                             " per chunk (was it taken with another IndexWriterConfig::dim?)");
  }
  chunks_ = std::move(chunks);
  vectors_ = std::move(vectors);
}

void IndexWriter::close() {
  if (context_ != nullptr && context_->stop_requested()) {
    std::fprintf(stderr,
                 "IndexWriter: the job was stopped before its input ended; shard-%d of %s not "
                 "written (run the job to its end to build the collection)\n",
                 shard_, config_.collection.c_str());
    return;
  }
  std::unique_ptr<VectorIndex> index;
  if (config_.index == IndexKind::hnsw) {
    index = std::make_unique<HnswIndex>(config_.dim, chunks_.size(), config_.hnsw);
  } else {
    index = std::make_unique<ExactIndex>(config_.dim);
  }
  const auto dim = static_cast<std::size_t>(config_.dim);
  for (std::size_t label = 0; label < chunks_.size(); ++label) {
    index->add(std::span<const float>(vectors_.data() + label * dim, dim), label);
  }
  write_shard(config_.collection, ShardContents{.shard = shard_,
                                                .shards = shards_,
                                                .build = build_,
                                                .embedder = config_.embedder,
                                                .dim = config_.dim,
                                                .kind = config_.index,
                                                .index = index.get(),
                                                .chunks = &chunks_});
}

}  // namespace sage::rag
