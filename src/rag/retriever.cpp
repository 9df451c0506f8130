#include "sage/rag/retriever.hpp"

#include "sage/error.hpp"

namespace sage::rag {

Retriever::Retriever(RetrieverConfig config) : config_(std::move(config)) {
  if (config_.top_k < 1) {
    throw Error("Retriever: RetrieverConfig::top_k is " + std::to_string(config_.top_k) +
                "; ask for at least 1 hit");
  }
  if (config_.ef < 1) {
    throw Error("Retriever: RetrieverConfig::ef is " + std::to_string(config_.ef) +
                "; the search breadth must be at least 1");
  }
}

void Retriever::open(RuntimeContext& context) {
  const ShardSelection selection =
      config_.sharded
          ? ShardSelection{.instance = context.parallel_index(), .instances = context.parallelism()}
          : ShardSelection{};
  collection_.emplace(Collection::open(
      config_.collection, config_.ef,
      CollectionRequirements{.embedder = config_.embedder, .dim = config_.dim}, selection));
}

Retrieved Retriever::map(const std::string& query) const {
  return Retrieved{.query = query,
                   .hits = collection_->search(collection_->embed(query),
                                               static_cast<std::size_t>(config_.top_k))};
}

}  // namespace sage::rag
