// The JSON of the OpenAI API as sage::rag's operators speak it: request bodies
// for /chat/completions and /embeddings built from records (with the token
// estimate the rate limiter charges), and responses read back into records.
// Readers throw std::exception saying what is wrong; the operators put that in
// a one-line error naming the endpoint.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sage/rag/openai.hpp"
#include "sage/rag/records.hpp"

namespace sage::rag::detail {

// A request body and the tokens it is estimated to use before the server says.
struct RequestBody {
  std::string json;
  std::int64_t estimated_tokens = 0;
};

RequestBody chat_request(const GeneratorConfig& config, const Prompt& prompt);
// Fills answer.text, prompt_tokens and completion_tokens from a response.
void read_chat_response(const std::string& body, Answer& answer);

RequestBody embeddings_request(const OpenAIConfig& config, const std::vector<std::string>& texts);
// The vectors of an /embeddings response for `count` inputs, placed by their
// "index", all of one dimension (`dimensions` when > 0); `prompt_tokens` from
// its usage (0 when it has none).
std::vector<std::vector<float>> read_embeddings(const std::string& body, std::size_t count,
                                                int dimensions, std::int64_t& prompt_tokens);

}  // namespace sage::rag::detail
