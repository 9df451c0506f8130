// MergeHits: the merge step of sharded retrieval. With RetrieverConfig::sharded,
// instance i of n retrievers searches only the shards s with s % n == i; each
// query goes to every instance (broadcast), and MergeHits, keyed by the query,
// waits for the n partial results of a query and emits one Retrieved with the
// global top_k, best first — the same hits one retriever over every shard finds:
//
//   queries.broadcast()
//       .map<rag::Retriever>(sage::Options{.parallelism = 4},
//                            rag::RetrieverConfig{.collection = dir, .top_k = 5, .sharded = true})
//       .key_by([](const rag::Retrieved& r) { return r.query; })
//       .flat_map<rag::MergeHits>(rag::MergeHitsConfig{.parts = 4, .top_k = 5});
//
// The partial results wait in keyed state, so they are part of checkpoints.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include "sage/functions.hpp"
#include "sage/rag/records.hpp"

namespace sage::rag {

// The k best of `hits`: by score, higher first, ties by id; at most k.
std::vector<Hit> top_hits(std::vector<Hit> hits, std::size_t k);

struct MergeHitsConfig {
  int parts = 1;  // partial results per query: the retrievers' parallelism
  int top_k = 5;  // hits kept per query
};

class MergeHits : public Function {
 public:
  // Throws sage::Error when parts or top_k < 1.
  explicit MergeHits(MergeHitsConfig config);

  // Throws InvalidPlanError unless applied directly after key_by.
  void open(RuntimeContext& context) override;
  void flat_map(const Retrieved& part, Collector<Retrieved>& out);

 private:
  MergeHitsConfig config_;
  std::optional<ListState<Hit>> hits_;
  std::optional<ValueState<int>> parts_seen_;
};

}  // namespace sage::rag
