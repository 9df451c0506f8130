// Vector indexes over L2-normalised vectors, scored by inner product (= cosine
// similarity, higher is closer): HnswIndex, approximate (hnswlib 0.6), and
// ExactIndex, a full scan, for small collections and as the reference for
// recall. Thread-safety: search() may run on many threads at once; add()
// excludes every search, because hnswlib 0.6 must not search while it inserts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <shared_mutex>
#include <span>
#include <vector>

namespace sage::rag {

struct Neighbor {
  std::uint64_t label;
  float score;  // inner product with the query
};

class VectorIndex {
 public:
  virtual ~VectorIndex() = default;
  // `vector` has dim() components; labels are the caller's (e.g. positions).
  virtual void add(std::span<const float> vector, std::uint64_t label) = 0;
  // The (at most) k nearest labels to `query`, best first.
  virtual std::vector<Neighbor> search(std::span<const float> query, std::size_t k) const = 0;
  virtual std::size_t size() const = 0;
  virtual int dim() const = 0;
  // Writes the index to `file`; the matching load() reads it back.
  virtual void save(const std::filesystem::path& file) const = 0;
};

// HNSW graph parameters; ef is the search breadth: higher means better recall
// and slower queries (it is at least k). The defaults give recall@10 0.99
// against an exact scan on 3000 random unit vectors of dimension 384
// (tests/rag/vector_index_test.cpp); random vectors are the hardest case.
struct HnswConfig {
  int m = 32;                 // links per node
  int ef_construction = 200;  // search breadth while inserting
  int ef = 200;               // search breadth while querying
};

class HnswIndex final : public VectorIndex {
 public:
  // Grows past `capacity` when needed.
  HnswIndex(int dim, std::size_t capacity, HnswConfig config = {});
  ~HnswIndex() override;
  // Throws std::runtime_error when the file cannot be read as an index.
  static std::unique_ptr<HnswIndex> load(const std::filesystem::path& file, int dim, int ef);

  void add(std::span<const float> vector, std::uint64_t label) override;
  std::vector<Neighbor> search(std::span<const float> query, std::size_t k) const override;
  std::size_t size() const override;
  int dim() const override { return dim_; }
  void save(const std::filesystem::path& file) const override;

 private:
  struct Graph;  // hnswlib's types stay out of the public headers
  HnswIndex(int dim, std::unique_ptr<Graph> graph);

  int dim_;
  std::unique_ptr<Graph> graph_;
  mutable std::shared_mutex mutex_;
};

class ExactIndex final : public VectorIndex {
 public:
  explicit ExactIndex(int dim);
  // Throws sage::SerializationError when the file is not an exact index of `dim`.
  static std::unique_ptr<ExactIndex> load(const std::filesystem::path& file, int dim);

  void add(std::span<const float> vector, std::uint64_t label) override;
  std::vector<Neighbor> search(std::span<const float> query, std::size_t k) const override;
  std::size_t size() const override;
  int dim() const override { return dim_; }
  void save(const std::filesystem::path& file) const override;

 private:
  int dim_;
  std::vector<float> vectors_;  // size() * dim_, row by row
  std::vector<std::uint64_t> labels_;
  mutable std::shared_mutex mutex_;
};

}  // namespace sage::rag
