// The fuzz targets' checks (fuzz_checks.hpp) on a bounded stream of inputs,
// for every build: random bytes, and mutations of valid encodings (bits
// flipped, bytes set to edge values, cut, doubled, spliced), from a fixed seed
// so that a failure repeats. With clang, -DSAGE_FUZZ=ON builds the same checks
// as libFuzzer targets that search far longer.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <random>

#include "fuzz/fuzz_checks.hpp"
#include "sage/serialization.hpp"

namespace sage::fuzz {
namespace {

constexpr int kInputs = 200'000;
constexpr auto kTimeBudget = std::chrono::seconds(60);  // on a slow, loaded machine
constexpr std::size_t kLongestRandomInput = 512;

std::string hex(std::string_view bytes) {
  std::string text;
  for (unsigned char c : bytes) {
    char two[3];
    std::snprintf(two, sizeof two, "%02x", c);
    text += two;
  }
  return text;
}

// One mutation of `input`, as fuzzers make them.
std::string mutate(std::string input, std::mt19937& random) {
  const auto pick = [&](std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(random);
  };
  static constexpr unsigned char kEdges[] = {0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff};
  for (std::size_t steps = 1 + pick(4); steps > 0; --steps) {
    switch (pick(5)) {
      case 0:
        if (!input.empty()) input[pick(input.size())] ^= static_cast<char>(1 << pick(8));
        break;
      case 1:
        if (!input.empty()) input[pick(input.size())] = static_cast<char>(kEdges[pick(6)]);
        break;
      case 2:
        input.resize(pick(input.size() + 1));
        break;
      case 3:
        input += input.substr(pick(input.size() + 1));
        break;
      default:
        input.insert(pick(input.size() + 1), std::string(1 + pick(8), static_cast<char>(0xff)));
        break;
    }
  }
  return input;
}

// Runs `check` on kInputs inputs (or for kTimeBudget); reports the first
// that breaks it, in hex, to make a regression test of.
void run(const std::function<void(std::string_view)>& check, const std::vector<std::string>& seeds,
         unsigned seed) {
  std::mt19937 random(seed);
  const auto deadline = std::chrono::steady_clock::now() + kTimeBudget;
  for (int i = 0; i < kInputs && std::chrono::steady_clock::now() < deadline; ++i) {
    std::string input;
    if (i % 2 == 0) {
      input = mutate(seeds[random() % seeds.size()], random);
    } else {
      input.resize(random() % (kLongestRandomInput + 1));
      for (auto& c : input) c = static_cast<char>(random());
    }
    try {
      check(input);
    } catch (const std::exception& e) {
      FAIL() << "input " << i << " (" << hex(input) << "): " << e.what();
    }
  }
}

TEST(RandomInputTest, DataPlaneFramesAndHellosTakeAnyBytes) {
  for (const auto& seed : data_plane_seeds()) check_data_plane_input(seed);
  run(check_data_plane_input, data_plane_seeds(), 1);
}

TEST(RandomInputTest, SerializerDecodingOfEveryBuiltInTypeTakesAnyBytes) {
  for (const auto& seed : serializer_seeds()) check_serializer_input(seed);
  run(check_serializer_input, serializer_seeds(), 2);
}

// A count that the bytes left cannot hold is refused before anything is
// allocated for it, also for elements that are not numbers.
TEST(RandomInputTest, CountsThatCannotFitAreRefusedBeforeAllocating) {
  Writer huge;
  huge.write_varint(std::uint64_t{1} << 40);
  huge.write_bytes("abcd", 4);
  const auto refusal = [&]<class T>() {
    try {
      deserialize<T>(huge.buffer());
    } catch (const SerializationError& e) {
      return std::string(e.what());
    }
    return std::string("decoded");
  };
  for (const std::string& message : {refusal.operator()<std::vector<std::string>>(),
                                     refusal.operator()<std::vector<std::vector<int>>>(),
                                     refusal.operator()<std::vector<std::array<std::string, 64>>>(),
                                     refusal.operator()<std::vector<std::pair<int, double>>>(),
                                     refusal.operator()<std::list<std::optional<int>>>(),
                                     refusal.operator()<std::map<std::string, int>>()}) {
    EXPECT_NE(message.find("elements announced but only 4 bytes left"), std::string::npos)
        << message;
  }
}

}  // namespace
}  // namespace sage::fuzz
