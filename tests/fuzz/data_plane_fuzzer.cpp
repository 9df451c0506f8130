// libFuzzer target: data-plane frames and hellos (tests/fuzz/fuzz_checks.hpp).
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_checks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  sage::fuzz::check_data_plane_input({reinterpret_cast<const char*>(data), size});
  return 0;
}
