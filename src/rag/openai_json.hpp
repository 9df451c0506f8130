// The JSON of the OpenAI API as sage::rag's operators speak it: request bodies
// for /chat/completions and /embeddings built from records (with the token
// estimate the rate limiter charges), and responses, whole or streamed as
// server-sent events, read back into records.
// Readers throw std::exception saying what is wrong; the operators put that in
// a one-line error naming the endpoint.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rag/openai_client.hpp"
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

// A streamed chat completion read as it arrives: server-sent events
// ("data: <chunk>" lines, events apart by a blank line, ":" comments), each a
// chat.completion.chunk whose choices[0].delta.content continues the text, a
// chunk with "usage" (stream_options.include_usage), and "data: [DONE]".
// feed() throws StreamFault for an event that is not JSON or not a chunk (not
// retried) and for an error event ({"error": {...}}: retried when its code is
// a status that is retried, or its type is server_error).
class ChatStream final : public StreamReader {
 public:
  void feed(std::string_view bytes) override;
  // [DONE] came, or a finish_reason (some servers end without [DONE]).
  bool complete() const override { return done_ || finished_; }

  // Fills answer.text, prompt_tokens and completion_tokens.
  void read_into(Answer& answer) const;
  // When the first non-empty piece of text came; nullopt if none did.
  std::optional<Clock::time_point> first_token() const { return first_token_; }

 private:
  void line(std::string_view line);
  void event();

  std::string pending_;  // the last, unfinished line
  std::string data_;     // the data lines of the event being read
  std::string type_;     // its "event:" field
  bool done_ = false;
  bool finished_ = false;
  std::string text_;
  std::int64_t prompt_tokens_ = 0;
  std::int64_t completion_tokens_ = 0;
  std::optional<Clock::time_point> first_token_;
};

RequestBody embeddings_request(const OpenAIConfig& config, const std::vector<std::string>& texts);
// The vectors of an /embeddings response for `count` inputs, placed by their
// "index", all of one dimension (`dimensions` when > 0); `prompt_tokens` from
// its usage (0 when it has none).
std::vector<std::vector<float>> read_embeddings(const std::string& body, std::size_t count,
                                                int dimensions, std::int64_t& prompt_tokens);

}  // namespace sage::rag::detail
