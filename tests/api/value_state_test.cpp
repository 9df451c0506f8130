// ValueState keeps a plain value type (numbers, small plain structs) unwrapped
// with a bitmap of which keys have a value, and any other type as
// std::optional: both layouts behave alike, and write the same checkpoint bytes.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include <sage/sage.hpp>

namespace sage {

// A long long that is not trivially copyable (it has a destructor of its own),
// so that its ValueState takes the std::optional layout, written in a
// checkpoint exactly as a long long is.
struct BoxedCount {
  long long n = 0;
  BoxedCount() = default;
  explicit BoxedCount(long long value) : n(value) {}
  BoxedCount(const BoxedCount&) = default;
  BoxedCount& operator=(const BoxedCount&) = default;
  ~BoxedCount() {}  // NOLINT: makes the type not trivially copyable
  bool operator==(const BoxedCount&) const = default;
};
static_assert(!std::is_trivially_copyable_v<BoxedCount>);

template <>
struct Serializer<BoxedCount> {
  static void write(Writer& w, const BoxedCount& b) { w.write(b.n); }
  static BoxedCount read(Reader& r) { return BoxedCount(r.read<long long>()); }
};

namespace {

struct Point {
  int x = 0;
  int y = 0;
  bool operator==(const Point&) const = default;
  SAGE_FIELDS(x, y)
};

template <class V>
class ValueStateLayoutTest : public ::testing::Test {};

// Each type with a value for key k (make) of its own.
template <class V>
V make(long long k);
template <>
long long make<long long>(long long k) {
  return k * 3 + 1;
}
template <>
Point make<Point>(long long k) {
  return Point{static_cast<int>(k), -static_cast<int>(k)};
}
template <>
BoxedCount make<BoxedCount>(long long k) {
  return BoxedCount(k * 3 + 1);
}
template <>
std::string make<std::string>(long long k) {
  return "v" + std::to_string(k);
}
template <>
bool make<bool>(long long k) {
  return k % 2 == 0;
}

using Layouts = ::testing::Types<long long, Point, BoxedCount, std::string, bool>;
TYPED_TEST_SUITE(ValueStateLayoutTest, Layouts);

TYPED_TEST(ValueStateLayoutTest, EachKeyHasItsOwnValueUntilCleared) {
  using V = TypeParam;
  detail::TypedKeyedStateBackend<long long> backend;
  ValueState<V> state(backend, "value");
  constexpr long long kKeys = 1000;  // past a table's first sizes and bitmap words
  for (long long k = 0; k < kKeys; ++k) {
    backend.set_current_key(k);
    ASSERT_FALSE(state.has_value()) << k;
    ASSERT_EQ(state.value(), std::nullopt) << k;
    ASSERT_EQ(state.value_or(make<V>(k + 1)), make<V>(k + 1)) << k;
    if (k % 2 == 0) {
      state.update(make<V>(k));
    } else {
      ASSERT_EQ(state.get_or_init(make<V>(k)), make<V>(k)) << k;
      ASSERT_EQ(state.get_or_init(make<V>(k + 1)), make<V>(k)) << "a set value stays, key " << k;
    }
  }
  for (long long k = 0; k < kKeys; k += 5) {
    backend.set_current_key(k);
    state.clear();
  }
  for (long long k = 0; k < kKeys; ++k) {
    backend.set_current_key(k);
    if (k % 5 == 0) {
      ASSERT_FALSE(state.has_value()) << k;
      ASSERT_EQ(state.get_or_init(make<V>(k + 1)), make<V>(k + 1)) << "cleared, key " << k;
    } else {
      ASSERT_TRUE(state.has_value()) << k;
      ASSERT_EQ(state.value(), make<V>(k)) << k;
    }
  }
}

TYPED_TEST(ValueStateLayoutTest, ASnapshotRestoresSetValuesOnly) {
  using V = TypeParam;
  constexpr int kMaxParallelism = 128;
  detail::TypedKeyedStateBackend<long long> original;
  ValueState<V> state(original, "value");
  for (long long k = 0; k < 300; ++k) {
    original.set_current_key(k);
    state.update(make<V>(k));
    if (k % 7 == 0) state.clear();
  }
  std::map<int, std::string> groups;
  original.snapshot(kMaxParallelism, groups);

  detail::TypedKeyedStateBackend<long long> restored;
  for (const auto& [group, bytes] : groups) restored.restore(bytes);
  ValueState<V> restored_state(restored, "value");
  for (long long k = 0; k < 300; ++k) {
    restored.set_current_key(k);
    if (k % 7 == 0) {
      EXPECT_FALSE(restored_state.has_value()) << k;
    } else {
      EXPECT_EQ(restored_state.value(), make<V>(k)) << k;
    }
  }
}

TEST(ValueStateTest, BothLayoutsWriteTheSameCheckpointBytes) {
  constexpr int kMaxParallelism = 128;
  detail::TypedKeyedStateBackend<long long> plain_backend;
  detail::TypedKeyedStateBackend<long long> boxed_backend;
  ValueState<long long> plain(plain_backend, "count");   // unwrapped, with a bitmap
  ValueState<BoxedCount> boxed(boxed_backend, "count");  // std::optional
  for (long long k = 0; k < 500; ++k) {
    plain_backend.set_current_key(k);
    boxed_backend.set_current_key(k);
    plain.update(make<long long>(k));
    boxed.update(make<BoxedCount>(k));
    if (k % 3 == 0) {
      plain.clear();
      boxed.clear();
    }
  }
  std::map<int, std::string> plain_groups;
  std::map<int, std::string> boxed_groups;
  plain_backend.snapshot(kMaxParallelism, plain_groups);
  boxed_backend.snapshot(kMaxParallelism, boxed_groups);
  EXPECT_FALSE(plain_groups.empty());
  EXPECT_EQ(plain_groups, boxed_groups);
}

}  // namespace
}  // namespace sage
