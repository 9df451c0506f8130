#include "sage/rag/evaluate.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <numeric>
#include <sstream>

namespace sage::rag {
namespace {

std::vector<std::string> normalized_tokens(std::string_view text) {
  std::vector<std::string> tokens;
  std::istringstream in(normalize_answer(text));
  for (std::string token; in >> token;) tokens.push_back(token);
  return tokens;
}

// numpy.quantile's default (linear) on sorted values.
double quantile(const std::vector<double>& sorted, double q) {
  const double rank = q * static_cast<double>(sorted.size() - 1);
  const auto below = static_cast<std::size_t>(rank);
  const std::size_t above = std::min(below + 1, sorted.size() - 1);
  return sorted[below] + (sorted[above] - sorted[below]) * (rank - static_cast<double>(below));
}

}  // namespace

std::string normalize_answer(std::string_view text) {
  std::string cleaned;
  for (char c : text) {
    if (std::ispunct(static_cast<unsigned char>(c))) continue;
    cleaned += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  std::istringstream in(cleaned);
  std::string normalized;
  for (std::string word; in >> word;) {
    if (word == "a" || word == "an" || word == "the") continue;
    if (!normalized.empty()) normalized += ' ';
    normalized += word;
  }
  return normalized;
}

bool exact_match(std::string_view prediction, std::string_view reference) {
  return normalize_answer(prediction) == normalize_answer(reference);
}

double token_f1(std::string_view prediction, std::string_view reference) {
  const auto predicted = normalized_tokens(prediction);
  const auto expected = normalized_tokens(reference);
  if (predicted.empty() || expected.empty()) return predicted.empty() && expected.empty() ? 1 : 0;
  std::map<std::string, int> counts;
  for (const auto& token : expected) ++counts[token];
  int common = 0;
  for (const auto& token : predicted) {
    auto found = counts.find(token);
    if (found != counts.end() && found->second > 0) {
      --found->second;
      ++common;
    }
  }
  if (common == 0) return 0;
  const double precision = static_cast<double>(common) / static_cast<double>(predicted.size());
  const double recall = static_cast<double>(common) / static_cast<double>(expected.size());
  return 2 * precision * recall / (precision + recall);
}

double recall_at_k(std::span<const std::string> retrieved, std::span<const std::string> relevant,
                   std::size_t k) {
  if (relevant.empty()) return 1;
  const auto top = retrieved.first(std::min(k, retrieved.size()));
  std::size_t found = 0;
  for (const std::string& id : relevant) {
    if (std::find(top.begin(), top.end(), id) != top.end()) ++found;
  }
  return static_cast<double>(found) / static_cast<double>(relevant.size());
}

double recall_at_k(std::span<const Hit> hits, std::span<const std::string> relevant,
                   std::size_t k) {
  std::vector<std::string> ids;
  for (const Hit& hit : hits) ids.push_back(hit.id);
  return recall_at_k(ids, relevant, k);
}

LatencySummary summarize_latency(std::span<const double> seconds) {
  if (seconds.empty()) return {};
  std::vector<double> sorted(seconds.begin(), seconds.end());
  std::sort(sorted.begin(), sorted.end());
  return LatencySummary{.count = sorted.size(),
                        .mean = std::accumulate(sorted.begin(), sorted.end(), 0.0) /
                                static_cast<double>(sorted.size()),
                        .min = sorted.front(),
                        .p50 = quantile(sorted, 0.5),
                        .p90 = quantile(sorted, 0.9),
                        .p99 = quantile(sorted, 0.99),
                        .max = sorted.back()};
}

LatencySummary summarize_latency(std::span<const Answer> answers) {
  std::vector<double> seconds;
  for (const Answer& answer : answers) seconds.push_back(answer.latency_s);
  return summarize_latency(seconds);
}

}  // namespace sage::rag
