// Keyed operators: per-key state gives the same counts as a sequential
// computation, and every record of a key reaches the same instance.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "support/collect.hpp"

namespace sage {

// A key without a default constructor: the keyed operator gathers such keys
// anew for each batch rather than assigning them in place.
struct Tag {
  explicit Tag(int v) : value(v) {}
  int value;
  bool operator==(const Tag&) const = default;
};
static_assert(!std::is_default_constructible_v<Tag>);

template <>
struct Serializer<Tag> {
  static void write(Writer& w, const Tag& t) { w.write(t.value); }
  static Tag read(Reader& r) { return Tag(r.read<int>()); }
};

namespace {

using testing::Collected;
using testing::CollectSink;

// Emits (key, running count of that key) using ValueState, and records which
// instance saw each key.
class RunningCount : public Function {
 public:
  explicit RunningCount(std::shared_ptr<Collected<std::pair<long long, int>>> owners)
      : owners_(std::move(owners)) {}
  void open(RuntimeContext& ctx) override {
    ctx_ = &ctx;
    count_.emplace(ctx.value_state<long long>("count"));
    index_ = ctx.parallel_index();
  }
  std::pair<long long, long long> map(long long x) {
    const long long key = x % 1000;
    EXPECT_EQ(key, ctx_->current_key<long long>());
    seen_.insert(key);
    return {key, ++count_->get_or_init(0)};
  }
  void close() override {
    std::vector<std::pair<long long, int>> owned;
    for (auto k : seen_) owned.emplace_back(k, index_);
    owners_->add(std::move(owned));
  }

 private:
  RuntimeContext* ctx_ = nullptr;
  std::optional<ValueState<long long>> count_;
  std::set<long long> seen_;
  int index_ = 0;
  std::shared_ptr<Collected<std::pair<long long, int>>> owners_;
};

TEST(KeyedStateTest, CountsEqualSequentialComputationAndKeysStayOnOneInstance) {
  constexpr long long kRecords = 500'000;
  auto results = std::make_shared<Collected<std::pair<long long, long long>>>();
  auto owners = std::make_shared<Collected<std::pair<long long, int>>>();
  LocalEnvironment env("keyed-count");
  env.from_sequence(0, kRecords, Options{.parallelism = 3})
      .key_by([](long long x) { return x % 1000; })
      .map<RunningCount>(Options{.parallelism = 4}, owners)
      .sink<CollectSink<std::pair<long long, long long>>>(Options{.parallelism = 2}, results);
  env.execute();

  // The final count per key is the largest emitted, and every intermediate
  // count 1..final appears exactly once.
  std::map<long long, std::vector<long long>> per_key;
  for (const auto& [key, count] : results->sorted()) per_key[key].push_back(count);
  ASSERT_EQ(per_key.size(), 1000u);
  for (const auto& [key, counts] : per_key) {
    const long long expected = kRecords / 1000;
    ASSERT_EQ(static_cast<long long>(counts.size()), expected) << "key " << key;
    for (long long i = 0; i < expected; ++i) ASSERT_EQ(counts[i], i + 1) << "key " << key;
  }
  std::map<long long, std::set<int>> instances_of_key;
  for (const auto& [key, instance] : owners->sorted()) instances_of_key[key].insert(instance);
  for (const auto& [key, instances] : instances_of_key) {
    EXPECT_EQ(instances.size(), 1u) << "key " << key << " reached several instances";
  }
}

// Each record's running count under its Tag key, checking that the current
// key is the record's.
class TagCount : public Function {
 public:
  void open(RuntimeContext& ctx) override {
    ctx_ = &ctx;
    count_.emplace(ctx.value_state<long long>("count"));
  }
  std::pair<int, long long> map(long long x) {
    EXPECT_EQ(ctx_->current_key<Tag>().value, x % 13);
    return {static_cast<int>(x % 13), ++count_->get_or_init(0)};
  }

 private:
  RuntimeContext* ctx_ = nullptr;
  std::optional<ValueState<long long>> count_;
};

// Batches of every size up to 7 (odd, so that the producers' batches and
// the linger's partial ones differ from one batch to the next), with keys
// that have no default constructor and keys that do.
TEST(KeyedStateTest, CountsStayRightOverBatchesOfChangingSizesForEveryKindOfKey) {
  constexpr long long kRecords = 13 * 700;
  const ExecutionConfig config{.batch_size = 7};
  auto tagged = std::make_shared<Collected<std::pair<int, long long>>>();
  auto plain = std::make_shared<Collected<std::pair<int, long long>>>();
  LocalEnvironment env("changing-batches", config);
  const auto numbers = env.from_sequence(0, kRecords, Options{.parallelism = 3});
  numbers.key_by([](long long x) { return Tag(static_cast<int>(x % 13)); })
      .map<TagCount>(Options{.parallelism = 2})
      .sink<CollectSink<std::pair<int, long long>>>(tagged);
  numbers.key_by([](long long x) { return static_cast<int>(x % 13); })
      .map([](long long x) { return std::pair<int, long long>(static_cast<int>(x % 13), x); },
           Options{.parallelism = 2})
      .key_by([](const std::pair<int, long long>& p) { return p.first; })
      .reduce(
          [](const std::pair<int, long long>& acc, const std::pair<int, long long>& p) {
            return std::pair<int, long long>(p.first, acc.second + 1);
          },
          {.parallelism = 2})
      .sink<CollectSink<std::pair<int, long long>>>(plain);
  env.execute();

  for (const auto* results : {tagged.get(), plain.get()}) {
    std::map<int, std::vector<long long>> per_key;
    for (const auto& [key, count] : results->sorted()) per_key[key].push_back(count);
    ASSERT_EQ(per_key.size(), 13u);
    for (const auto& [key, counts] : per_key) {
      ASSERT_EQ(counts.size(), 700u) << "key " << key;
      // The reduce starts from the key's first record (its value, not 1).
      const long long first = counts.front();
      for (std::size_t i = 0; i < counts.size(); ++i) {
        ASSERT_EQ(counts[i], first + static_cast<long long>(i)) << "key " << key;
      }
    }
  }
}

// A class using all three kinds of keyed state and current_key().
class History : public Function {
 public:
  void open(RuntimeContext& ctx) override {
    ctx_ = &ctx;
    items_.emplace(ctx.list_state<std::string>("items"));
    letters_.emplace(ctx.map_state<char, int>("letters"));
  }
  std::string map(const std::string& s) {
    const auto& key = ctx_->current_key<std::string>();
    items_->add(s);
    for (char c : s) letters_->put(c, letters_->get(c).value_or(0) + 1);
    std::string out = key + ":";
    for (const auto& item : items_->get()) out += item + ",";
    return out + std::to_string(letters_->entries().size());
  }

 private:
  RuntimeContext* ctx_ = nullptr;
  std::optional<ListState<std::string>> items_;
  std::optional<MapState<char, int>> letters_;
};

TEST(KeyedStateTest, ClassWithListMapStateSeesOnlyItsKey) {
  auto results = std::make_shared<Collected<std::string>>();
  LocalEnvironment env("history");
  env.from_collection({"a1", "b1", "a2", "b2", "a3"})
      .key_by([](const std::string& s) { return s.substr(0, 1); })
      .map<History>(Options{.parallelism = 3})
      .sink<CollectSink<std::string>>(results);
  env.execute();
  EXPECT_EQ(results->sorted(), (std::vector<std::string>{"a:a1,2", "a:a1,a2,3", "a:a1,a2,a3,4",
                                                         "b:b1,2", "b:b1,b2,3"}));
}

TEST(KeyedStateTest, ReduceEmitsRunningAggregatePerKey) {
  auto results = std::make_shared<Collected<std::pair<std::string, int>>>();
  LocalEnvironment env("reduce");
  env.from_collection(std::vector<std::pair<std::string, int>>{
                          {"x", 1}, {"y", 10}, {"x", 2}, {"y", 20}, {"x", 3}})
      .key_by([](const auto& p) { return p.first; })
      .reduce([](const auto& acc,
                 const auto& p) { return std::pair(acc.first, acc.second + p.second); },
              {.parallelism = 2})
      .sink<CollectSink<std::pair<std::string, int>>>(results);
  env.execute();
  EXPECT_EQ(results->sorted(), (std::vector<std::pair<std::string, int>>{
                                   {"x", 1}, {"x", 3}, {"x", 6}, {"y", 10}, {"y", 30}}));
}

TEST(KeyedStateTest, StateOutsideKeyedOperatorFailsTheJobClearly) {
  LocalEnvironment env("unkeyed-state");
  env.from_collection({std::string("a"), std::string("b")})
      .map<History>(Options{.name = "NotKeyed"})
      .print();
  try {
    env.execute();
    FAIL() << "expected the job to fail";
  } catch (const JobFailedError& e) {
    EXPECT_NE(std::string(e.what()).find("NotKeyed"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("key_by"), std::string::npos) << e.what();
  }
}

TEST(ConnectTest, KeyedJoinEmitsEveryMatchingPair) {
  using Order = std::pair<int, std::string>;     // (customer, item)
  using Customer = std::pair<int, std::string>;  // (customer, name)
  auto results = std::make_shared<Collected<std::string>>();
  LocalEnvironment env("join");
  auto orders =
      env.from_collection(std::vector<Order>{{1, "book"}, {2, "pen"}, {1, "lamp"}, {3, "cup"}});
  auto customers = env.from_collection(std::vector<Customer>{{1, "ann"}, {2, "bob"}});
  orders.key_by([](const Order& o) { return o.first; })
      .connect(customers.key_by([](const Customer& c) { return c.first; }))
      .join([](const Order& o, const Customer& c) { return c.second + " bought " + o.second; },
            {.parallelism = 3})
      .sink<CollectSink<std::string>>(results);
  env.execute();
  EXPECT_EQ(results->sorted(),
            (std::vector<std::string>{"ann bought book", "ann bought lamp", "bob bought pen"}));
}

TEST(ConnectTest, CoMapAndUnion) {
  auto results = std::make_shared<Collected<std::string>>();
  LocalEnvironment env("comap-union");
  auto numbers = env.from_collection({1, 2, 3});
  auto words = env.from_collection({std::string("x"), std::string("y")});
  auto more_words = env.from_collection({std::string("z")});
  numbers.connect(words.union_with(more_words))
      .comap([](int n) { return "n" + std::to_string(n); },
             [](const std::string& w) { return "w" + w; }, {.parallelism = 2})
      .sink<CollectSink<std::string>>(results);
  env.execute();
  EXPECT_EQ(results->sorted(), (std::vector<std::string>{"n1", "n2", "n3", "wx", "wy", "wz"}));
}

}  // namespace
}  // namespace sage
