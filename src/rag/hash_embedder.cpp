#include "sage/rag/hash_embedder.hpp"

#include <locale.h>
#include <openssl/sha.h>
#include <wctype.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "rag/utf8.hpp"
#include "sage/error.hpp"

namespace sage::rag {

namespace {

constexpr int kMinimumDim = 64;

void require_dim(int dim) {
  if (dim < kMinimumDim) {
    throw Error("HashEmbedder: dim is " + std::to_string(dim) + "; it must be at least " +
                std::to_string(kMinimumDim) + " (SAGE's HashEmbedding raises smaller ones to 64)");
  }
}

// Unicode classification independent of the process's locale.
locale_t unicode_locale() {
  static const locale_t locale = [] {
    locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t{});
    if (l == locale_t{}) {
      throw Error("HashEmbedder: the C library has no C.UTF-8 locale, needed to classify letters");
    }
    return l;
  }();
  return locale;
}

// Python's `[\w\u4e00-\u9fa5]` on a str: letters, digits, '_' and the CJK range.
bool is_word_character(char32_t c, locale_t locale) {
  if (c < 0x80)
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  if (c >= 0x4E00 && c <= 0x9FA5) return true;
  return iswalnum_l(static_cast<wint_t>(c), locale) != 0;
}

void add_token(std::string_view token, std::vector<std::uint32_t>& counts) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
  for (int offset = 0; offset < SHA256_DIGEST_LENGTH; offset += 4) {
    const std::uint32_t word =
        std::uint32_t{digest[offset]} | std::uint32_t{digest[offset + 1]} << 8 |
        std::uint32_t{digest[offset + 2]} << 16 | std::uint32_t{digest[offset + 3]} << 24;
    ++counts[word % counts.size()];
  }
}

}  // namespace

std::vector<float> hash_embed(std::string_view text, int dim) {
  require_dim(dim);
  std::vector<float> vector(static_cast<std::size_t>(dim), 0.0f);
  if (text.empty()) return vector;

  const locale_t locale = unicode_locale();
  std::vector<std::uint32_t> counts(vector.size(), 0);
  std::string lowered;  // the whole text, lower-cased: the token when there is no other
  std::string token;
  bool any_token = false;
  for (std::size_t at = 0; at < text.size();) {
    const utf8::CodePoint c = utf8::decode(text, at);
    const auto lower = static_cast<char32_t>(towlower_l(static_cast<wint_t>(c.value), locale));
    if (c.value == 0xFFFD && c.length == 1) {
      lowered.push_back(text[at]);  // an invalid byte stays as it is
    } else {
      utf8::append(lowered, lower);
    }
    if (is_word_character(lower, locale)) {
      utf8::append(token, lower);
    } else if (!token.empty()) {
      add_token(token, counts);
      token.clear();
      any_token = true;
    }
    at += c.length;
  }
  if (!token.empty()) {
    add_token(token, counts);
    any_token = true;
  }
  if (!any_token) add_token(lowered, counts);

  double squares = 0;
  for (std::uint32_t count : counts) squares += double(count) * double(count);
  const double norm = squares > 0 ? std::sqrt(squares) : 1.0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    vector[i] = static_cast<float>(counts[i] / norm);
  }
  return vector;
}

HashEmbedder::HashEmbedder(HashEmbedderConfig config) : config_(config) {
  require_dim(config_.dim);
}

Embedded HashEmbedder::map(const Chunk& chunk) const {
  return Embedded{.chunk = chunk, .vector = embed(chunk.text)};
}

std::vector<float> HashEmbedder::embed(std::string_view text) const {
  return hash_embed(text, config_.dim);
}

}  // namespace sage::rag
