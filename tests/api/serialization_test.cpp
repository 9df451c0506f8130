// Records survive the round trip through bytes, and bad bytes are rejected
// with SerializationError rather than a crash or a huge allocation.
#include "sage/serialization.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace user {

struct Inner {
  int id = 0;
  std::string name;
  SAGE_FIELDS(id, name)
  friend bool operator==(const Inner&, const Inner&) = default;
};

struct Outer {
  Inner main;
  std::vector<Inner> others;
  std::optional<double> score;
  SAGE_FIELDS(main, others, score)
  friend bool operator==(const Outer&, const Outer&) = default;
};

struct NotDeclared {
  int x;
};

enum class Color : std::uint8_t { kRed = 1, kBlue = 7 };

}  // namespace user

namespace sage {
namespace {

static_assert(Serializable<int>);
static_assert(Serializable<std::string>);
static_assert(Serializable<std::map<std::string, std::vector<std::optional<int>>>>);
static_assert(Serializable<user::Outer>);
static_assert(!Serializable<user::NotDeclared>);
static_assert(!Serializable<std::vector<user::NotDeclared>>);
static_assert(!Serializable<int*>);

template <class T>
void expect_round_trip(const T& value) {
  const std::string bytes = serialize(value);
  EXPECT_TRUE(deserialize<T>(bytes) == value);
  // Every strict prefix is truncated input: it must throw, never crash.
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_THROW(deserialize<T>(std::string_view(bytes).substr(0, n)), SerializationError)
        << "prefix of " << n << " bytes";
  }
}

TEST(SerializationTest, ArithmeticAndEnums) {
  expect_round_trip(true);
  expect_round_trip(false);
  expect_round_trip(std::numeric_limits<std::int64_t>::min());
  expect_round_trip(std::numeric_limits<std::uint64_t>::max());
  expect_round_trip(static_cast<std::int8_t>(-5));
  expect_round_trip(3.25f);
  expect_round_trip(-1e300);
  expect_round_trip(user::Color::kBlue);
}

TEST(SerializationTest, StringsAndContainers) {
  expect_round_trip(std::string());
  expect_round_trip(std::string("with\0nul", 8));
  expect_round_trip(std::vector<int>{});
  std::vector<long long> big(100'000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<long long>(i * i);
  EXPECT_EQ(deserialize<std::vector<long long>>(serialize(big)), big);
  expect_round_trip(std::vector<std::string>{"a", "", "ccc"});
  expect_round_trip(std::vector<bool>{true, false, true});
  expect_round_trip(std::array<int, 3>{1, 2, 3});
  expect_round_trip(std::deque<int>{4, 5});
  expect_round_trip(std::list<std::string>{"x", "y"});
  expect_round_trip(std::map<std::string, int>{{"a", 1}, {"b", 2}});
  expect_round_trip(std::unordered_map<int, std::string>{{1, "one"}, {2, "two"}});
  expect_round_trip(std::set<int>{3, 1, 2});
  expect_round_trip(std::unordered_set<std::string>{"p", "q"});
  expect_round_trip(std::vector<std::vector<int>>{{1}, {}, {2, 3}});
}

TEST(SerializationTest, OptionalPairTupleVariantDuration) {
  expect_round_trip(std::optional<int>());
  expect_round_trip(std::optional<std::string>("set"));
  expect_round_trip(std::pair<std::string, double>("k", 2.5));
  expect_round_trip(std::tuple<int, std::string, bool>(1, "two", true));
  expect_round_trip(std::variant<int, std::string>(std::string("alt")));
  expect_round_trip(std::variant<int, std::string>(42));
  expect_round_trip(std::chrono::milliseconds(1234));
}

TEST(SerializationTest, UserStructsInNamespacesNest) {
  user::Outer value{{1, "main"}, {{2, "b"}, {3, "c"}}, 0.5};
  expect_round_trip(value);
  expect_round_trip(std::vector<user::Outer>{value, user::Outer{}});
}

TEST(SerializationTest, ForgedLengthIsRejectedBeforeAllocating) {
  Writer w;
  w.write_varint(std::uint64_t{1} << 60);  // a vector of 2^60 ints, in 10 bytes
  EXPECT_THROW(deserialize<std::vector<int>>(w.buffer()), SerializationError);
  EXPECT_THROW(deserialize<std::string>(w.buffer()), SerializationError);
  EXPECT_THROW(deserialize<std::vector<std::string>>(w.buffer()), SerializationError);
  EXPECT_THROW(deserialize<std::vector<user::Inner>>(w.buffer()), SerializationError);
}

TEST(SerializationTest, CorruptValuesAndTrailingBytesAreRejected) {
  EXPECT_THROW(deserialize<bool>(std::string(1, '\x02')), SerializationError);
  EXPECT_THROW((deserialize<std::variant<int, char>>(std::string(1, '\x05'))), SerializationError);
  EXPECT_THROW(deserialize<int>(serialize(7) + "x"), SerializationError);
  EXPECT_THROW(deserialize<std::uint64_t>(std::string(11, '\xff')), SerializationError);
  try {
    deserialize<int>(std::string(2, '\0'));
  } catch (const SerializationError& e) {
    EXPECT_STREQ(e.what(), "truncated record: needed 4 bytes, 2 left");
  }
}

}  // namespace
}  // namespace sage
