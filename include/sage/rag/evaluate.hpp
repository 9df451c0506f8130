// Evaluators of a RAG dataflow's output: exact match and token F1 of answers
// against references (SQuAD's normalisation: lower case, no ASCII punctuation,
// no articles a/an/the, single spaces), recall@k of retrieved ids against the
// relevant ones, and a latency summary of answers. Plain functions, usable in
// a map or a sink, or on results collected after a job.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sage/rag/records.hpp"

namespace sage::rag {

// SQuAD's normalize_answer.
std::string normalize_answer(std::string_view text);

// Whether the normalised texts are equal.
bool exact_match(std::string_view prediction, std::string_view reference);

// The harmonic mean of precision and recall of the normalised tokens (words),
// counted with multiplicity; 1 when both are empty, 0 when only one is.
double token_f1(std::string_view prediction, std::string_view reference);

// The share of `relevant` ids among the first k of `retrieved` (best first);
// 1 when nothing is relevant.
double recall_at_k(std::span<const std::string> retrieved, std::span<const std::string> relevant,
                   std::size_t k);
double recall_at_k(std::span<const Hit> hits, std::span<const std::string> relevant, std::size_t k);

// Count, mean, quantiles (linear interpolation between ranks) and extremes of
// latencies in seconds; all 0 when there are none.
struct LatencySummary {
  std::size_t count = 0;
  double mean = 0, min = 0, p50 = 0, p90 = 0, p99 = 0, max = 0;
};
LatencySummary summarize_latency(std::span<const double> seconds);
// Of Answer::latency_s.
LatencySummary summarize_latency(std::span<const Answer> answers);

}  // namespace sage::rag
