// A collection on disk: the chunks that IndexWriter instances indexed, as a set
// of shards, one per writer instance (docs/rag.md, "Collections on disk"):
//   <collection>/shard-<i>/index.hnsw or index.exact   the vectors' index
//   <collection>/shard-<i>/chunks.bin                   ids and texts, by label
//   <collection>/shard-<i>/manifest.json                written last
// A manifest names the format version, the embedder and dimension that built
// the vectors, the kind of index, the number of shards, the job that wrote them
// and the size and SHA-256 of every file. A shard appears by one rename, so a
// reader sees a whole shard or none; a collection is complete when shards 0..n-1
// have manifests of the same job. Collection::open refuses anything else.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sage/error.hpp"
#include "sage/rag/records.hpp"
#include "sage/rag/vector_index.hpp"

namespace sage::rag {

// A collection that cannot be read: missing, incomplete, corrupt, or built by
// another embedder. The message is one line naming the path and the problem.
class CollectionError : public Error {
 public:
  using Error::Error;
};

enum class IndexKind { hnsw, exact };

// What a reader requires of a collection; empty / 0 accept any.
struct CollectionRequirements {
  std::string embedder;
  int dim = 0;
};

// Which shards of a collection one reader loads: those s with
// s % instances == instance (sharded retrieval; the default loads every shard).
struct ShardSelection {
  int instance = 0;
  int instances = 1;
};

// A complete collection loaded for search: its shards (all, or a selection), in
// memory. search() may run on many threads at once.
class Collection {
 public:
  static constexpr int kFormatVersion = 1;

  // Loads the selected shards, after checking that every shard is there and of
  // the same build; throws CollectionError. `ef` is the HNSW search breadth.
  static Collection open(const std::filesystem::path& directory, int ef = HnswConfig{}.ef,
                         const CollectionRequirements& requirements = {},
                         const ShardSelection& selection = {});

  // The k chunks nearest to `query` over the loaded shards, best first.
  std::vector<Hit> search(std::span<const float> query, std::size_t k) const;
  // `text` embedded by the embedder that built the collection, when that is
  // HashEmbedder; a collection built by OpenAIEmbedder ("openai:<model>")
  // throws CollectionError: its queries go to the endpoint (Retriever does that).
  std::vector<float> embed(std::string_view text) const;

  const std::string& embedder() const { return embedder_; }
  int dim() const { return dim_; }
  std::size_t size() const;
  // Shards loaded.
  std::size_t shard_count() const { return shards_.size(); }

 private:
  struct Shard {
    std::unique_ptr<VectorIndex> index;
    std::vector<Chunk> chunks;  // by label
  };
  Collection() = default;

  std::string embedder_;
  int dim_ = 0;
  std::vector<Shard> shards_;
};

// What one writer instance stores as shard `shard` of `shards`.
struct ShardContents {
  int shard = 0;
  int shards = 1;
  std::string build;  // the same for all shards of one collection: the job id
  std::string embedder;
  int dim = 0;
  IndexKind kind = IndexKind::hnsw;
  const VectorIndex* index = nullptr;  // labels are positions in `chunks`
  const std::vector<Chunk>* chunks = nullptr;
};

// Writes <directory>/shard-<shard> atomically, replacing an earlier one; shard 0
// also removes shards numbered `shards` or more left by an earlier, wider build.
// Throws CollectionError.
void write_shard(const std::filesystem::path& directory, const ShardContents& contents);

}  // namespace sage::rag
