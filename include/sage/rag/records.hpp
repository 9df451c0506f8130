// The records of a RAG dataflow (SPEC §3), from a document to an answer. All are
// Serializable (SAGE_FIELDS), so they cross processes like any other record.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sage/serialization.hpp"

namespace sage::rag {

// A text to be indexed.
struct Document {
  std::string id;
  std::string text;
  SAGE_FIELDS(id, text)
  bool operator==(const Document&) const = default;
};

// A piece of a document; id is "<doc_id>#<index>", index from 0.
struct Chunk {
  std::string id;
  std::string doc_id;
  std::string text;
  SAGE_FIELDS(id, doc_id, text)
  bool operator==(const Chunk&) const = default;
};

// A chunk with its embedding.
struct Embedded {
  Chunk chunk;
  std::vector<float> vector;
  SAGE_FIELDS(chunk, vector)
  bool operator==(const Embedded&) const = default;
};

// One retrieved chunk: its id, its text and its similarity to the query
// (the inner product of normalised vectors, i.e. cosine: higher is closer).
struct Hit {
  std::string id;
  std::string text;
  float score = 0;
  SAGE_FIELDS(id, text, score)
  bool operator==(const Hit&) const = default;
};

// A query and its hits, best first.
struct Retrieved {
  std::string query;
  std::vector<Hit> hits;
  SAGE_FIELDS(query, hits)
  bool operator==(const Retrieved&) const = default;
};

// One chat message: role "system", "user" or "assistant".
struct Message {
  std::string role;
  std::string content;
  SAGE_FIELDS(role, content)
  bool operator==(const Message&) const = default;
};

// The messages to send to a chat model for a query, with the hits they cite.
struct Prompt {
  std::string query;
  std::vector<Hit> hits;
  std::vector<Message> messages;
  SAGE_FIELDS(query, hits, messages)
  bool operator==(const Prompt&) const = default;
};

// A model's answer to a query, with the hits it was given and what it cost.
// The fields after latency_s came later: SAGE_FIELDS lists them last, so the
// encoding of the earlier fields is unchanged (the serializer has no versions:
// a record encoded by a build without them does not decode in one with them).
struct Answer {
  std::string query;
  std::string text;
  std::vector<Hit> hits;
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  double latency_s = 0;
  // From invoke() to the first token of the answer when it was streamed
  // (GeneratorConfig::stream); latency_s when it came whole.
  double time_to_first_token_s = 0;
  // Empty when the call succeeded. With GeneratorConfig::on_failure ==
  // OnFailure::emit_error, a call that failed after its retries gives an
  // Answer with an empty text and here the one-line error the job would have
  // failed with ("OpenAIGenerator: POST <url> failed: HTTP <status>: <the
  // server's message> ..."); error_status is the last HTTP status (0 when none
  // came: connection refused, timeout).
  std::string error;
  std::int64_t error_status = 0;
  SAGE_FIELDS(query, text, hits, prompt_tokens, completion_tokens, latency_s, time_to_first_token_s,
              error, error_status)
  bool operator==(const Answer&) const = default;
};

}  // namespace sage::rag
