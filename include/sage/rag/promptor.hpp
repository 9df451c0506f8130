// Promptor: Retrieved -> Prompt with SAGE's QA template (QAPromptor): a system
// message with the instruction and, when there are hits, "Relevant corpus for
// the current question:" followed by the hits' texts, one per line; then a user
// message "Question: <query>". Stateless.
#pragma once

#include <string>

#include "sage/functions.hpp"
#include "sage/rag/records.hpp"

namespace sage::rag {

struct PromptorConfig {
  // The first lines of the system message (SAGE's QA instruction).
  std::string instruction =
      "Instruction:\n"
      "You are an intelligent assistant with access to a knowledge base. Answer the question "
      "below with reference to the provided context.\n"
      "Only give me the answer and do not output any other words.";
};

class Promptor : public Function {
 public:
  explicit Promptor(PromptorConfig config = {}) : config_(std::move(config)) {}

  Prompt map(const Retrieved& retrieved) const;

 private:
  PromptorConfig config_;
};

}  // namespace sage::rag
