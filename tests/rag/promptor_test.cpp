// Promptor: SAGE's QA template, with and without hits.
#include <gtest/gtest.h>

#include <sage/rag.hpp>

namespace sage::rag {
namespace {

constexpr const char* kInstruction =
    "Instruction:\n"
    "You are an intelligent assistant with access to a knowledge base. Answer the question below "
    "with reference to the provided context.\n"
    "Only give me the answer and do not output any other words.";

TEST(Promptor, SystemMessageWithTheHitsThenTheQuestion) {
  const Retrieved retrieved{
      .query = "What is sage?",
      .hits = {Hit{.id = "a#0", .text = "sage is an engine.", .score = 0.9f},
               Hit{.id = "b#1", .text = "It runs dataflows.", .score = 0.5f}}};
  const Prompt prompt = Promptor().map(retrieved);
  EXPECT_EQ(prompt.query, "What is sage?");
  EXPECT_EQ(prompt.hits, retrieved.hits);
  ASSERT_EQ(prompt.messages.size(), 2u);
  EXPECT_EQ(prompt.messages[0],
            (Message{.role = "system",
                     .content = std::string(kInstruction) +
                                "\nRelevant corpus for the current question:\nsage is an engine.\n"
                                "It runs dataflows."}));
  EXPECT_EQ(prompt.messages[1], (Message{.role = "user", .content = "Question: What is sage?"}));
}

TEST(Promptor, WithoutHitsOnlyTheInstruction) {
  const Prompt prompt = Promptor(PromptorConfig{}).map(Retrieved{.query = "q"});
  EXPECT_EQ(prompt.messages[0].content, kInstruction);
}

TEST(Records, CrossProcessesIntact) {
  const Answer answer{
      .query = "q",
      .text = "a",
      .hits = {Hit{.id = "d#0", .text = "t", .score = 0.25f}},
      .prompt_tokens = 12,
      .completion_tokens = 3,
      .latency_s = 0.5,
      .time_to_first_token_s = 0.125,
      .error = "OpenAIGenerator: POST http://x/v1/chat/completions failed: HTTP 500",
      .error_status = 500};
  EXPECT_EQ(deserialize<Answer>(serialize(answer)), answer);
  const Embedded embedded{.chunk = Chunk{.id = "d#0", .doc_id = "d", .text = "t"},
                          .vector = {0.5f, -1}};
  EXPECT_EQ(deserialize<Embedded>(serialize(embedded)), embedded);
  const Prompt prompt{.query = "q",
                      .messages = {Message{.role = "user", .content = "Question: q"}}};
  EXPECT_EQ(deserialize<Prompt>(serialize(prompt)), prompt);
}

}  // namespace
}  // namespace sage::rag
