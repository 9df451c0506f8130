#include "sage/rag/retriever.hpp"

#include <algorithm>
#include <cstddef>

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
  const std::string& built_by = collection_->embedder();
  const std::string& asked = config_.query_embedder.model;
  const std::string where = "Retriever: collection " + config_.collection + " was built by '" +
                            built_by + "' of dimension " + std::to_string(collection_->dim());
  if (!built_by.starts_with(OpenAIEmbedder::kNamePrefix)) {
    if (!asked.empty()) {
      throw CollectionError(where + ", but RetrieverConfig::query_embedder.model is '" + asked +
                            "'; queries must be embedded by the collection's embedder: leave "
                            "query_embedder empty");
    }
    return;
  }
  OpenAIConfig embedder = config_.query_embedder;
  const std::string model = built_by.substr(OpenAIEmbedder::kNamePrefix.size());
  if (!asked.empty() && asked != model) {
    throw CollectionError(where + ", but RetrieverConfig::query_embedder.model is '" + asked +
                          "'; set it to '" + model + "' or leave it empty");
  }
  embedder.model = model;
  query_embedder_ = std::make_unique<OpenAIQueryEmbedder>(std::move(embedder), &context.metrics());
}

void Retriever::close() { query_embedder_.reset(); }

const std::vector<float>& Retriever::checked(const std::vector<float>& vector) const {
  if (vector.size() != static_cast<std::size_t>(collection_->dim())) {
    throw CollectionError(
        "Retriever: " + query_embedder_->config().model + " at " +
        query_embedder_->config().base_url + " embedded a query in " +
        std::to_string(vector.size()) + " dimensions, but collection " + config_.collection +
        " has " + std::to_string(collection_->dim()) +
        "; set RetrieverConfig::query_embedder.dimensions as when the collection was built");
  }
  return vector;
}

Retrieved Retriever::search(const std::string& query, const std::vector<float>& vector) const {
  return Retrieved{.query = query,
                   .hits = collection_->search(vector, static_cast<std::size_t>(config_.top_k))};
}

Retrieved Retriever::map(const std::string& query) const {
  if (!query_embedder_) return search(query, collection_->embed(query));
  return search(query, checked(query_embedder_->embed({query}).front()));
}

std::vector<Retrieved> Retriever::map_batch(const std::vector<std::string>& queries) const {
  std::vector<Retrieved> results;
  results.reserve(queries.size());
  if (!query_embedder_) {
    for (const std::string& query : queries) results.push_back(map(query));
    return results;
  }
  const auto batch = static_cast<std::size_t>(query_embedder_->config().batch_size);
  for (std::size_t begin = 0; begin < queries.size(); begin += batch) {
    const std::vector<std::string> part(
        queries.begin() + static_cast<std::ptrdiff_t>(begin),
        queries.begin() + static_cast<std::ptrdiff_t>(std::min(queries.size(), begin + batch)));
    const auto vectors = query_embedder_->embed(part);
    for (std::size_t i = 0; i < part.size(); ++i)
      results.push_back(search(part[i], checked(vectors[i])));
  }
  return results;
}

}  // namespace sage::rag
