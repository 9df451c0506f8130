// HashEmbedder: Chunk -> Embedded by feature hashing, the algorithm of SAGE's
// HashEmbedding, so a collection built here answers like one built there:
//   tokens = runs of word characters (letters, digits, '_', CJK U+4E00..U+9FA5)
//            of the lower-cased text, or the whole lower-cased text if it has none;
//   for each token, its SHA-256 digest gives 8 little-endian 32-bit words, and
//   each word w adds 1 to component w % dim;
//   the vector is divided by its L2 norm (an empty text gives the zero vector).
// Letters, digits and lower case outside ASCII follow the C library's Unicode
// tables (glibc's C.UTF-8), whatever the process's locale; they agree with
// Python's for all but rare characters (e.g. special-case lower-casing such as
// U+0130). Deterministic: no seed, no state, the same vector on every machine.
#pragma once

#include <string_view>
#include <vector>

#include "sage/functions.hpp"
#include "sage/rag/records.hpp"

namespace sage::rag {

struct HashEmbedderConfig {
  int dim = 384;  // components; >= 64 (SAGE's minimum)
};

// The embedding of `text` by the algorithm above; `dim` must be >= 64.
std::vector<float> hash_embed(std::string_view text, int dim = HashEmbedderConfig{}.dim);

class HashEmbedder : public Function {
 public:
  // How collections name this embedder in their manifest.
  static constexpr std::string_view kName = "hash";

  // Throws sage::Error when dim < 64.
  explicit HashEmbedder(HashEmbedderConfig config = {});

  Embedded map(const Chunk& chunk) const;
  std::vector<float> embed(std::string_view text) const;
  int dim() const { return config_.dim; }

 private:
  HashEmbedderConfig config_;
};

}  // namespace sage::rag
