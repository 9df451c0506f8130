#include "sage/rag/vector_index.hpp"

#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "rag/raw_hnswlib.hpp"
#include "sage/serialization.hpp"

namespace sage::rag {

namespace {

void require_dim(std::span<const float> vector, int dim, const char* what) {
  if (vector.size() != static_cast<std::size_t>(dim)) {
    throw std::invalid_argument(std::string(what) + " has " + std::to_string(vector.size()) +
                                " components; the index has dimension " + std::to_string(dim));
  }
}

bool better(const Neighbor& a, const Neighbor& b) {
  return a.score != b.score ? a.score > b.score : a.label < b.label;
}

}  // namespace

// The space must outlive the graph that points to it.
struct HnswIndex::Graph {
  explicit Graph(int dim) : space(static_cast<std::size_t>(dim)) {}
  hnswlib::InnerProductSpace space;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> hnsw;
};

HnswIndex::HnswIndex(int dim, std::unique_ptr<Graph> graph) : dim_(dim), graph_(std::move(graph)) {}

HnswIndex::HnswIndex(int dim, std::size_t capacity, HnswConfig config)
    : dim_(dim), graph_(std::make_unique<Graph>(dim)) {
  graph_->hnsw = std::make_unique<hnswlib::HierarchicalNSW<float>>(
      &graph_->space, std::max<std::size_t>(capacity, 1), static_cast<std::size_t>(config.m),
      static_cast<std::size_t>(config.ef_construction));
  graph_->hnsw->setEf(static_cast<std::size_t>(config.ef));
}

HnswIndex::~HnswIndex() = default;

std::unique_ptr<HnswIndex> HnswIndex::load(const std::filesystem::path& file, int dim, int ef) {
  auto graph = std::make_unique<Graph>(dim);
  graph->hnsw = std::make_unique<hnswlib::HierarchicalNSW<float>>(&graph->space, file.string());
  graph->hnsw->setEf(static_cast<std::size_t>(ef));
  return std::unique_ptr<HnswIndex>(new HnswIndex(dim, std::move(graph)));
}

void HnswIndex::add(std::span<const float> vector, std::uint64_t label) {
  require_dim(vector, dim_, "a vector to add");
  std::unique_lock lock(mutex_);
  auto& hnsw = *graph_->hnsw;
  if (hnsw.cur_element_count >= hnsw.max_elements_) hnsw.resizeIndex(2 * hnsw.max_elements_);
  hnsw.addPoint(vector.data(), static_cast<hnswlib::labeltype>(label));
}

std::vector<Neighbor> HnswIndex::search(std::span<const float> query, std::size_t k) const {
  require_dim(query, dim_, "the query");
  std::shared_lock lock(mutex_);
  auto queue = graph_->hnsw->searchKnn(query.data(), k);
  std::vector<Neighbor> found(queue.size());
  // The queue pops the farthest first; InnerProductSpace's distance is 1 - score.
  for (auto slot = found.rbegin(); slot != found.rend(); ++slot, queue.pop()) {
    *slot = Neighbor{static_cast<std::uint64_t>(queue.top().second), 1.0f - queue.top().first};
  }
  std::stable_sort(found.begin(), found.end(), better);
  return found;
}

std::size_t HnswIndex::size() const {
  std::shared_lock lock(mutex_);
  return graph_->hnsw->cur_element_count;
}

void HnswIndex::save(const std::filesystem::path& file) const {
  std::shared_lock lock(mutex_);
  graph_->hnsw->saveIndex(file.string());
}

ExactIndex::ExactIndex(int dim) : dim_(dim) {}

std::unique_ptr<ExactIndex> ExactIndex::load(const std::filesystem::path& file, int dim) {
  std::ifstream in(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto [file_dim, labels, vectors] =
      deserialize<std::tuple<int, std::vector<std::uint64_t>, std::vector<float>>>(bytes);
  if (file_dim != dim || vectors.size() != labels.size() * static_cast<std::size_t>(dim)) {
    throw SerializationError("an exact index of dimension " + std::to_string(file_dim) + " with " +
                             std::to_string(labels.size()) + " labels and " +
                             std::to_string(vectors.size()) + " components, expected dimension " +
                             std::to_string(dim));
  }
  auto index = std::make_unique<ExactIndex>(dim);
  index->labels_ = std::move(labels);
  index->vectors_ = std::move(vectors);
  return index;
}

void ExactIndex::add(std::span<const float> vector, std::uint64_t label) {
  require_dim(vector, dim_, "a vector to add");
  std::unique_lock lock(mutex_);
  vectors_.insert(vectors_.end(), vector.begin(), vector.end());
  labels_.push_back(label);
}

std::vector<Neighbor> ExactIndex::search(std::span<const float> query, std::size_t k) const {
  require_dim(query, dim_, "the query");
  std::shared_lock lock(mutex_);
  std::vector<Neighbor> all(labels_.size());
  const auto dim = static_cast<std::size_t>(dim_);
  for (std::size_t row = 0; row < labels_.size(); ++row) {
    const float* vector = vectors_.data() + row * dim;
    float score = 0;
    for (std::size_t i = 0; i < dim; ++i) score += vector[i] * query[i];
    all[row] = Neighbor{labels_[row], score};
  }
  const std::size_t kept = std::min(k, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(kept), all.end(),
                    better);
  all.resize(kept);
  return all;
}

std::size_t ExactIndex::size() const {
  std::shared_lock lock(mutex_);
  return labels_.size();
}

void ExactIndex::save(const std::filesystem::path& file) const {
  std::shared_lock lock(mutex_);
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << serialize(std::tuple(dim_, labels_, vectors_));
  if (!out.flush()) throw std::runtime_error("cannot write " + file.string());
}

// --- raw hnswlib, for rag_bench (rag/raw_hnswlib.hpp)

namespace detail {

void build_raw_hnsw(const float* data, std::size_t count, int dim, const HnswConfig& config,
                    unsigned threads, const std::filesystem::path& file) {
  hnswlib::InnerProductSpace space(static_cast<std::size_t>(dim));
  hnswlib::HierarchicalNSW<float> graph(&space, count, static_cast<std::size_t>(config.m),
                                        static_cast<std::size_t>(config.ef_construction));
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < std::max(1u, threads); ++t) {
    workers.emplace_back([&] {
      for (std::size_t i; (i = next++) < count;)
        graph.addPoint(&data[i * static_cast<std::size_t>(dim)], i);
    });
  }
  for (auto& worker : workers) worker.join();
  graph.saveIndex(file.string());
}

struct RawHnsw::Graph {
  explicit Graph(int dim) : space(static_cast<std::size_t>(dim)) {}
  hnswlib::InnerProductSpace space;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> hnsw;
};

RawHnsw::RawHnsw(const std::filesystem::path& file, int dim, int ef)
    : graph_(std::make_unique<Graph>(dim)) {
  graph_->hnsw = std::make_unique<hnswlib::HierarchicalNSW<float>>(&graph_->space, file.string());
  graph_->hnsw->setEf(static_cast<std::size_t>(ef));
}

RawHnsw::~RawHnsw() = default;

std::uint64_t RawHnsw::search_top(const float* query, std::size_t k) const {
  return graph_->hnsw->searchKnn(query, k).top().second;
}

}  // namespace detail

}  // namespace sage::rag
