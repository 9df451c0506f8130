// Raw hnswlib 0.6, for rag_bench's baseline (HnswIndex against hnswlib itself
// on the same graph). hnswlib's headers define functions that are not inline,
// so only one translation unit may include them: vector_index.cpp implements
// this, and the bench reaches hnswlib through it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>

#include "sage/rag/vector_index.hpp"

namespace sage::rag::detail {

// Builds an HNSW graph of `count` vectors of `dim` (row by row in `data`,
// labels their positions) with hnswlib's parallel inserts on `threads`
// threads, and saves it to `file` for HnswIndex::load and RawHnsw.
void build_raw_hnsw(const float* data, std::size_t count, int dim, const HnswConfig& config,
                    unsigned threads, const std::filesystem::path& file);

// A saved graph loaded by hnswlib itself, searched without HnswIndex's lock
// and result conversion.
class RawHnsw {
 public:
  RawHnsw(const std::filesystem::path& file, int dim, int ef);
  ~RawHnsw();
  // hnswlib's searchKnn(query, k).top(): the label at the top of its result heap.
  std::uint64_t search_top(const float* query, std::size_t k) const;

 private:
  struct Graph;
  std::unique_ptr<Graph> graph_;
};

}  // namespace sage::rag::detail
