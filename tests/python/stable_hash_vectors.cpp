// Prints sage::stable_hash of fixed C++ keys, one "name hash" line each, for
// tests/python/test_keys.py: key_by in Python must hash the matching Python
// keys (int -> std::int64_t, str/bytes -> std::string, tuple -> std::tuple)
// to the same values.
#include <cstdint>
#include <iostream>
#include <string>
#include <tuple>

#include "sage/stable_hash.hpp"

int main() {
  using sage::stable_hash;
  using I = std::int64_t;
  const auto line = [](const char* name, std::uint64_t hash) {
    std::cout << name << ' ' << hash << '\n';
  };
  line("int_0", stable_hash(I{0}));
  line("int_42", stable_hash(I{42}));
  line("int_minus_7", stable_hash(I{-7}));
  line("int_max", stable_hash(I{9223372036854775807}));
  line("str_sage", stable_hash(std::string("sage")));
  line("str_empty", stable_hash(std::string()));
  line("str_utf8", stable_hash(std::string("cl\xc3\xa9")));  // "clé"
  line("bytes_00ff", stable_hash(std::string("\x00\xff", 2)));
  line("tuple_1_a", stable_hash(std::tuple<I, std::string>(1, "a")));
  line("tuple_nested", stable_hash(std::tuple<std::string, std::tuple<I, I>>("u", {2, 3})));
  line("tuple_empty", stable_hash(std::tuple<>()));
}
