// Amounts of memory, as Resources::memory and the `sage` command's --memory
// take them: units, and the amounts that are refused.
#include <gtest/gtest.h>

#include <sage/sage.hpp>

namespace sage {
namespace {

TEST(MemoryAmountTest, NumbersWithUnitsArePowersOf1024) {
  EXPECT_EQ(parse_memory_amount("512", "memory"), 512u);
  EXPECT_EQ(parse_memory_amount("1KB", "memory"), 1024u);
  EXPECT_EQ(parse_memory_amount("1.5 GiB", "memory"), 1536u << 20);
  EXPECT_EQ(parse_memory_amount("0.5k", "memory"), 512u);
  EXPECT_EQ(parse_memory_amount("8TB", "memory"), 8ull << 40);
  EXPECT_EQ(Resources{.memory = "256MB"}.memory_bytes(), 256u << 20);
  EXPECT_EQ(Resources{}.memory_bytes(), 0u);  // no limit
}

TEST(MemoryAmountTest, AmountsThatAreNoWholeNumberOfBytesAreRefusedSayingWhy) {
  const auto refusal = [](const std::string& text) -> std::string {
    try {
      parse_memory_amount(text, "--memory");
    } catch (const InvalidPlanError& e) {
      return e.what();
    }
    return "accepted";
  };
  const std::string fix = "; write a number with a unit, e.g. 512MB or 16GB";
  EXPECT_EQ(refusal("lots"), "--memory 'lots' is not an amount of bytes" + fix);
  EXPECT_EQ(refusal("8 gigs"), "--memory '8 gigs' is not an amount of bytes" + fix);
  EXPECT_EQ(refusal("nan"), "--memory 'nan' is not an amount of bytes" + fix);
  EXPECT_EQ(refusal("0"), "--memory '0' is not an amount of bytes (not positive)" + fix);
  EXPECT_EQ(refusal("-1GB"), "--memory '-1GB' is not an amount of bytes (not positive)" + fix);
  EXPECT_EQ(refusal("0.5"), "--memory '0.5' is not an amount of bytes (less than one byte)" + fix);
  EXPECT_EQ(refusal("1.5B"),
            "--memory '1.5B' is not an amount of bytes (not a whole number of bytes)" + fix);
  EXPECT_EQ(refusal("1e30TB"),
            "--memory '1e30TB' is not an amount of bytes (16 EiB or more)" + fix);
  EXPECT_EQ(refusal("16777216TB"),
            "--memory '16777216TB' is not an amount of bytes (16 EiB or more)" + fix);
  EXPECT_EQ(refusal("16777215TB"), "accepted");
  // The API refuses them too, naming the operator.
  EXPECT_THROW(Resources{.memory = "0.5"}.memory_bytes(), InvalidPlanError);
  try {
    Resources{.memory = "1e30TB"}.validate("embed");
    ADD_FAILURE() << "accepted";
  } catch (const InvalidPlanError& e) {
    EXPECT_EQ(std::string(e.what()),
              "operator 'embed': memory '1e30TB' is not an amount of bytes (16 EiB or more)" + fix);
  }
}

}  // namespace
}  // namespace sage
