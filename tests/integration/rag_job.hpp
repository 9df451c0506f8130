// What the RAG cluster tests (rag_cluster_test.cpp) and their job
// (rag_job_main.cpp) agree on: the documents the ingest job indexes, how they
// are chunked, the queries the ask job sends (every chunk's own text), and the
// line the job writes for each answer.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sage/rag.hpp>

namespace sage::testing {

inline const rag::ChunkerConfig kRagChunking{.size = 90, .overlap = 20};

// 10 documents of 50 distinct words each.
inline std::vector<rag::Document> rag_documents() {
  std::vector<rag::Document> docs;
  for (int d = 0; d < 10; ++d) {
    std::string text;
    for (int w = 0; w < 50; ++w) text += "word" + std::to_string(d * 100 + w) + " ";
    docs.push_back(rag::Document{.id = "doc" + std::to_string(d), .text = text});
  }
  return docs;
}

// The chunks the ingest job indexes, in document order.
inline std::vector<rag::Chunk> rag_chunks() {
  std::vector<rag::Chunk> chunks;
  for (const rag::Document& document : rag_documents()) {
    for (rag::Chunk& chunk : rag::Chunker(kRagChunking).split(document)) {
      chunks.push_back(std::move(chunk));
    }
  }
  return chunks;
}

// One answer as the ask job writes it: a line of JSON.
inline std::string rag_answer_line(const rag::Answer& answer) {
  return nlohmann::json{{"query", answer.query},
                        {"text", answer.text},
                        {"first_hit", answer.hits.empty() ? "" : answer.hits[0].id},
                        {"prompt_tokens", answer.prompt_tokens},
                        {"completion_tokens", answer.completion_tokens}}
      .dump();
}

}  // namespace sage::testing
