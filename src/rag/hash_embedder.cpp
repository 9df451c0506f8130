#include "sage/rag/hash_embedder.hpp"

#include <locale.h>
#include <openssl/evp.h>
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

// SHA-256 with the algorithm fetched once and a context per thread: OpenSSL
// 3's one-shot SHA256() fetches the algorithm on every call, which took 4x the
// time of the hash itself (bench/rag_bench, R1).
void sha256(std::string_view data, unsigned char* digest) {
  static EVP_MD* const algorithm = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  struct Context {
    EVP_MD_CTX* context = EVP_MD_CTX_new();
    ~Context() { EVP_MD_CTX_free(context); }
  };
  thread_local const Context local;
  unsigned int length = 0;
  if (algorithm == nullptr || local.context == nullptr ||
      EVP_DigestInit_ex2(local.context, algorithm, nullptr) != 1 ||
      EVP_DigestUpdate(local.context, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(local.context, digest, &length) != 1) {
    throw Error("HashEmbedder: OpenSSL's SHA-256 failed");
  }
}

void add_token(std::string_view token, std::vector<std::uint32_t>& counts) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  sha256(token, digest);
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
  // The lower-cased code point at `at`, and its length in bytes; ASCII without
  // the C library (the common case, and the same result).
  const auto lower_at = [&](std::size_t at) -> utf8::CodePoint {
    const auto byte = static_cast<unsigned char>(text[at]);
    if (byte < 0x80) {
      return {static_cast<char32_t>(byte >= 'A' && byte <= 'Z' ? byte + ('a' - 'A') : byte), 1};
    }
    const utf8::CodePoint c = utf8::decode(text, at);
    return {static_cast<char32_t>(towlower_l(static_cast<wint_t>(c.value), locale)), c.length};
  };
  std::vector<std::uint32_t> counts(vector.size(), 0);
  std::string token;
  bool any_token = false;
  for (std::size_t at = 0; at < text.size();) {
    const utf8::CodePoint lower = lower_at(at);
    if (is_word_character(lower.value, locale)) {
      if (lower.value < 0x80) {
        token.push_back(static_cast<char>(lower.value));
      } else {
        utf8::append(token, lower.value);
      }
    } else if (!token.empty()) {
      add_token(token, counts);
      token.clear();
      any_token = true;
    }
    at += lower.length;
  }
  if (!token.empty()) {
    add_token(token, counts);
    any_token = true;
  }
  if (!any_token) {
    // No word: the token is the whole lower-cased text.
    std::string lowered;
    for (std::size_t at = 0; at < text.size();) {
      const utf8::CodePoint lower = lower_at(at);
      const utf8::CodePoint original = utf8::decode(text, at);
      if (original.value == 0xFFFD && original.length == 1) {
        lowered.push_back(text[at]);  // an invalid byte stays as it is
      } else {
        utf8::append(lowered, lower.value);
      }
      at += lower.length;
    }
    add_token(lowered, counts);
  }

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
