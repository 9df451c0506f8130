#include "sage/rag/merge_hits.hpp"

#include <algorithm>
#include <string>

#include "sage/error.hpp"

namespace sage::rag {

std::vector<Hit> top_hits(std::vector<Hit> hits, std::size_t k) {
  const std::size_t kept = std::min(k, hits.size());
  std::partial_sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(kept), hits.end(),
                    [](const Hit& a, const Hit& b) {
                      return a.score != b.score ? a.score > b.score : a.id < b.id;
                    });
  hits.resize(kept);
  return hits;
}

MergeHits::MergeHits(MergeHitsConfig config) : config_(config) {
  if (config_.parts < 1 || config_.top_k < 1) {
    throw Error("MergeHits: parts is " + std::to_string(config_.parts) + " and top_k " +
                std::to_string(config_.top_k) +
                "; both must be at least 1 (parts: the sharded retriever's parallelism)");
  }
}

void MergeHits::open(RuntimeContext& context) {
  hits_.emplace(context.list_state<Hit>("sage.rag.merge_hits.hits"));
  parts_seen_.emplace(context.value_state<int>("sage.rag.merge_hits.parts"));
}

void MergeHits::flat_map(const Retrieved& part, Collector<Retrieved>& out) {
  for (const Hit& hit : part.hits) hits_->add(hit);
  int& seen = parts_seen_->get_or_init();
  if (++seen < config_.parts) return;
  std::vector<Hit> merged = top_hits(hits_->get(), static_cast<std::size_t>(config_.top_k));
  hits_->clear();
  parts_seen_->clear();
  out.collect(Retrieved{.query = part.query, .hits = std::move(merged)});
}

}  // namespace sage::rag
