// Chunker: a flat_map Document -> Chunk that cuts a text into windows of
// `size` characters (Unicode code points, as SAGE's CharacterSplitter counts
// them), each starting `size - overlap` characters after the previous one, and
// never splits a UTF-8 character. Stateless; one object per instance.
#pragma once

#include <vector>

#include "sage/functions.hpp"
#include "sage/rag/records.hpp"

namespace sage::rag {

struct ChunkerConfig {
  int size = 512;     // characters per chunk; > 0
  int overlap = 128;  // characters shared by consecutive chunks; 0 <= overlap < size
};

class Chunker : public Function {
 public:
  // Throws sage::Error when the config is out of range.
  explicit Chunker(ChunkerConfig config = {});

  // Chunks "<doc_id>#0", "#1", ...; a text of at most `size` characters is one
  // chunk, an empty text none. The last window ends at the end of the text.
  // Bytes that are not valid UTF-8 count as one character each.
  std::vector<Chunk> split(const Document& document) const;

  void flat_map(const Document& document, Collector<Chunk>& out) const;

 private:
  ChunkerConfig config_;
};

}  // namespace sage::rag
