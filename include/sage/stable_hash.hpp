// A hash that is the same in every process and on every machine, for routing
// records by key. std::hash may differ between builds and is not used.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "sage/serialization.hpp"

namespace sage {

namespace detail {

// The 64-bit finalizer of MurmurHash3: every input bit affects every output bit.
constexpr std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

inline std::uint64_t load64(const unsigned char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;  // the wire format is little-endian (serialization.hpp asserts it)
}

}  // namespace detail

// Hashes bytes 8 at a time: each word is mixed into the state, the tail and
// the length last.
inline std::uint64_t stable_hash_bytes(const void* data, std::size_t n, std::uint64_t seed = 0) {
  constexpr std::uint64_t kMultiplier = 0x9e3779b97f4a7c15ULL;
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t h = seed ^ (n * kMultiplier);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    h = (h ^ detail::mix64(detail::load64(p + i))) * kMultiplier;
    h = std::rotl(h, 27);
  }
  std::uint64_t tail = 0;
  for (std::size_t shift = 0; i < n; ++i, shift += 8) {
    tail |= static_cast<std::uint64_t>(p[i]) << shift;
  }
  h ^= detail::mix64(tail ^ kMultiplier);
  return detail::mix64(h);
}

// The stable hash of a key: numbers by value (0.0 and -0.0 alike), strings by
// their characters, any other Serializable key by its encoded bytes.
template <class K>
std::uint64_t stable_hash(const K& key) {
  if constexpr (std::is_integral_v<K> || std::is_enum_v<K>) {
    return detail::mix64(static_cast<std::uint64_t>(key));
  } else if constexpr (std::is_floating_point_v<K>) {
    const double d = key == 0 ? 0.0 : static_cast<double>(key);
    return detail::mix64(std::bit_cast<std::uint64_t>(d));
  } else if constexpr (std::is_convertible_v<const K&, std::string_view>) {
    const std::string_view s(key);
    return stable_hash_bytes(s.data(), s.size());
  } else {
    static_assert(Serializable<K>, "sage: keys must be Serializable to be hashed stably");
    const std::string bytes = serialize(key);
    return stable_hash_bytes(bytes.data(), bytes.size());
  }
}

// For unordered containers keyed like key_by.
struct StableHasher {
  template <class K>
  std::size_t operator()(const K& key) const {
    return static_cast<std::size_t>(stable_hash(key));
  }
};

}  // namespace sage
