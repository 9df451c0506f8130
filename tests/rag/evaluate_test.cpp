// The evaluators: SQuAD's normalisation, exact match and token F1 (values
// from SQuAD's evaluate-v2.0.py), recall@k and the latency summary.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <sage/rag.hpp>

namespace sage::rag {
namespace {

TEST(Evaluate, NormalisesLikeSquad) {
  EXPECT_EQ(normalize_answer("The  Quick, brown fox!"), "quick brown fox");
  EXPECT_EQ(normalize_answer("an apple a day"), "apple day");
  EXPECT_EQ(normalize_answer("Don't stop"), "dont stop");
  EXPECT_EQ(normalize_answer("   "), "");
}

TEST(Evaluate, ExactMatchComparesNormalisedTexts) {
  EXPECT_TRUE(exact_match("The Eiffel Tower.", "eiffel tower"));
  EXPECT_FALSE(exact_match("Eiffel Tower in Paris", "Eiffel Tower"));
}

TEST(Evaluate, TokenF1CountsCommonTokensWithMultiplicity) {
  EXPECT_DOUBLE_EQ(token_f1("the cat sat", "a cat sat down"),
                   2 * (1.0 * 2.0 / 3.0) / (1.0 + 2.0 / 3.0));
  EXPECT_DOUBLE_EQ(token_f1("cat cat", "cat"), 2 * 0.5 * 1.0 / 1.5);
  EXPECT_DOUBLE_EQ(token_f1("dog", "cat"), 0);
  EXPECT_DOUBLE_EQ(token_f1("", ""), 1);
  EXPECT_DOUBLE_EQ(token_f1("the", "cat"), 0);
  EXPECT_DOUBLE_EQ(token_f1("Paris, France", "paris france"), 1);
}

TEST(Evaluate, RecallAtKLooksAtTheFirstK) {
  const std::vector<std::string> retrieved{"a", "b", "c", "d"};
  const std::vector<std::string> relevant{"b", "d"};
  EXPECT_DOUBLE_EQ(recall_at_k(retrieved, relevant, 1), 0);
  EXPECT_DOUBLE_EQ(recall_at_k(retrieved, relevant, 2), 0.5);
  EXPECT_DOUBLE_EQ(recall_at_k(retrieved, relevant, 10), 1);
  EXPECT_DOUBLE_EQ(recall_at_k(retrieved, std::vector<std::string>{}, 3), 1);
  const std::vector<Hit> hits{Hit{.id = "b"}, Hit{.id = "x"}, Hit{.id = "d"}};
  EXPECT_DOUBLE_EQ(recall_at_k(hits, relevant, 3), 1);
  EXPECT_DOUBLE_EQ(recall_at_k(hits, relevant, 2), 0.5);
}

TEST(Evaluate, SummarisesLatencies) {
  std::vector<double> seconds;
  for (int i = 1; i <= 101; ++i) seconds.push_back(i / 100.0);
  const LatencySummary summary = summarize_latency(seconds);
  EXPECT_EQ(summary.count, 101u);
  EXPECT_DOUBLE_EQ(summary.min, 0.01);
  EXPECT_DOUBLE_EQ(summary.max, 1.01);
  EXPECT_NEAR(summary.mean, 0.51, 1e-12);
  EXPECT_NEAR(summary.p50, 0.51, 1e-12);
  EXPECT_NEAR(summary.p90, 0.91, 1e-12);
  EXPECT_NEAR(summary.p99, 1.0, 1e-12);
  EXPECT_EQ(summarize_latency(std::vector<double>{}).count, 0u);
  const std::vector<Answer> answers{Answer{.latency_s = 2}, Answer{.latency_s = 4}};
  EXPECT_DOUBLE_EQ(summarize_latency(answers).mean, 3);
}

}  // namespace
}  // namespace sage::rag
