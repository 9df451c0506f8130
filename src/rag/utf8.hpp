// Decoding UTF-8 one code point at a time, for the chunker (which must not cut
// a character) and the hash embedder (which classifies and lower-cases them).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sage::rag::utf8 {

struct CodePoint {
  char32_t value;
  std::size_t length;  // bytes, 1..4
};

// The code point starting at `at` (< text.size()). A byte that does not start a
// valid, shortest-form sequence decodes as U+FFFD of length 1.
CodePoint decode(std::string_view text, std::size_t at);

void append(std::string& out, char32_t code_point);

}  // namespace sage::rag::utf8
