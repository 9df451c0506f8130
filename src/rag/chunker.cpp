#include "sage/rag/chunker.hpp"

#include <string>

#include "rag/utf8.hpp"
#include "sage/error.hpp"

namespace sage::rag {

Chunker::Chunker(ChunkerConfig config) : config_(config) {
  if (config_.size <= 0) {
    throw Error("Chunker: ChunkerConfig::size is " + std::to_string(config_.size) +
                "; give a chunk size of at least 1 character");
  }
  if (config_.overlap < 0 || config_.overlap >= config_.size) {
    throw Error("Chunker: ChunkerConfig::overlap is " + std::to_string(config_.overlap) +
                " with size " + std::to_string(config_.size) +
                "; the overlap must be at least 0 and less than the size");
  }
}

std::vector<Chunk> Chunker::split(const Document& document) const {
  const std::string_view text = document.text;
  // Byte offset of every character, plus the end.
  std::vector<std::size_t> starts;
  for (std::size_t at = 0; at < text.size(); at += utf8::decode(text, at).length) {
    starts.push_back(at);
  }
  const std::size_t characters = starts.size();
  starts.push_back(text.size());

  std::vector<Chunk> chunks;
  const auto size = static_cast<std::size_t>(config_.size);
  const auto step = static_cast<std::size_t>(config_.size - config_.overlap);
  for (std::size_t first = 0; first < characters; first += step) {
    const std::size_t last = std::min(first + size, characters);
    chunks.push_back(
        Chunk{.id = document.id + "#" + std::to_string(chunks.size()),
              .doc_id = document.id,
              .text = std::string(text.substr(starts[first], starts[last] - starts[first]))});
    if (last == characters) break;
  }
  return chunks;
}

void Chunker::flat_map(const Document& document, Collector<Chunk>& out) const {
  for (Chunk& chunk : split(document)) out.collect(std::move(chunk));
}

}  // namespace sage::rag
