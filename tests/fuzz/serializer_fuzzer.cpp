// libFuzzer target: Serializer decoding of every built-in type
// (tests/fuzz/fuzz_checks.hpp).
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_checks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  sage::fuzz::check_serializer_input({reinterpret_cast<const char*>(data), size});
  return 0;
}
