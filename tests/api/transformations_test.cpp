// Every overload of every transformation picks the function it was given: a
// callable, or a class named as template argument and built from the
// arguments, with or without Options; flat_map's three ways to type its
// output; comap's forms on plain and keyed connected streams. An explicit
// template argument never selects a callable overload.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "support/collect.hpp"

namespace sage {
namespace {

using testing::Collected;
using testing::CollectSink;

struct Double {
  int operator()(int x) const { return 2 * x; }
};

// An explicit template argument that is not a function class makes the call
// ill-formed instead of being taken for the callable overload's function.
template <class Stream>
concept MapTakesExplicitNonClass = requires(const Stream& s) {
  s.template map<int>(Double{});
};
template <class Stream>
concept FilterTakesExplicitNonClass = requires(const Stream& s) {
  s.template filter<int>(Double{});
};
template <class Stream>
concept SinkTakesExplicitNonClass = requires(const Stream& s) {
  s.template sink<int>(Double{});
};
static_assert(!MapTakesExplicitNonClass<DataStream<int>>);
static_assert(!FilterTakesExplicitNonClass<DataStream<int>>);
static_assert(!SinkTakesExplicitNonClass<DataStream<int>>);

class AddConstant {
 public:
  explicit AddConstant(int constant) : constant_(constant) {}
  int map(int x) const { return x + constant_; }

 private:
  int constant_;
};

class KeepMultiplesOf {
 public:
  explicit KeepMultiplesOf(int divisor) : divisor_(divisor) {}
  bool filter(int x) const { return x % divisor_ == 0; }

 private:
  int divisor_;
};

class Repeat {
 public:
  explicit Repeat(int times) : times_(times) {}
  void flat_map(int x, Collector<int>& out) const {
    for (int i = 0; i < times_; ++i) out.collect(x);
  }

 private:
  int times_;
};

// Gathers into `target` at close(); built from its arguments like any class.
class SumInto : public Function {
 public:
  explicit SumInto(std::shared_ptr<Collected<int>> target) : target_(std::move(target)) {}
  void sink(int x) { sum_ += x; }
  void close() override { target_->add({sum_}); }

 private:
  std::shared_ptr<Collected<int>> target_;
  int sum_ = 0;
};

class Tag {
 public:
  explicit Tag(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string map1(int x) const { return prefix_ + std::to_string(x); }
  std::string map2(const std::string& s) const { return prefix_ + s; }

 private:
  std::string prefix_;
};

std::vector<int> run(const std::function<DataStream<int>(LocalEnvironment&)>& build) {
  auto out = std::make_shared<Collected<int>>();
  LocalEnvironment env("transformations");
  build(env).sink<CollectSink<int>>(out);
  env.execute();
  return out->sorted();
}

TEST(TransformationsTest, MapTakesACallableOrAClass) {
  const std::vector<int> doubled{0, 2, 4};
  const std::vector<int> plus_ten{10, 11, 12};
  EXPECT_EQ(run([](LocalEnvironment& env) { return env.from_sequence(0, 3).map(Double{}); }),
            doubled);
  EXPECT_EQ(run([](LocalEnvironment& env) {
              return env.from_sequence(0, 3).map(Double{}, {.name = "d"});
            }),
            doubled);
  EXPECT_EQ(run([](LocalEnvironment& env) {
              return env.from_sequence(0, 3).map([](long long x) { return static_cast<int>(x); });
            }),
            (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(run([](LocalEnvironment& env) {
              return env.from_collection({0, 1, 2}).map<AddConstant>(10);
            }),
            plus_ten);
  EXPECT_EQ(run([](LocalEnvironment& env) {
              return env.from_collection({0, 1, 2}).map<AddConstant>(
                  Options{.name = "add", .parallelism = 2}, 10);
            }),
            plus_ten);
}

TEST(TransformationsTest, FilterTakesACallableOrAClass) {
  const std::vector<int> even{0, 2, 4};
  const auto numbers = [](LocalEnvironment& env) { return env.from_collection({0, 1, 2, 3, 4}); };
  EXPECT_EQ(run([&](LocalEnvironment& env) {
              return numbers(env).filter([](int x) { return x % 2 == 0; });
            }),
            even);
  EXPECT_EQ(run([&](LocalEnvironment& env) {
              return numbers(env).filter([](int x) { return x % 2 == 0; }, {.parallelism = 2});
            }),
            even);
  EXPECT_EQ(run([&](LocalEnvironment& env) { return numbers(env).filter<KeepMultiplesOf>(2); }),
            even);
  EXPECT_EQ(run([&](LocalEnvironment& env) {
              return numbers(env).filter<KeepMultiplesOf>(Options{.name = "even"}, 2);
            }),
            even);
}

TEST(TransformationsTest, FlatMapTypesItsOutputThreeWays) {
  const std::vector<int> twice{1, 1, 2, 2};
  const auto numbers = [](LocalEnvironment& env) { return env.from_collection({1, 2}); };
  // From the Collector<Out>& parameter.
  EXPECT_EQ(run([&](LocalEnvironment& env) {
              return numbers(env).flat_map([](int x, Collector<int>& out) {
                out.collect(x);
                out.collect(x);
              });
            }),
            twice);
  // From the range it returns.
  EXPECT_EQ(run([&](LocalEnvironment& env) {
              return numbers(env).flat_map(
                  [](int x) {
                    return std::vector<int>{x, x};
                  },
                  {.parallelism = 2});
            }),
            twice);
  // Named, for a generic lambda.
  EXPECT_EQ(run([&](LocalEnvironment& env) {
              return numbers(env).flat_map<int>([](int x, auto& out) {
                out.collect(x);
                out.collect(x);
              });
            }),
            twice);
  // A class.
  EXPECT_EQ(run([&](LocalEnvironment& env) { return numbers(env).flat_map<Repeat>(2); }), twice);
  EXPECT_EQ(run([&](LocalEnvironment& env) {
              return numbers(env).flat_map<Repeat>(Options{.name = "repeat"}, 2);
            }),
            twice);
}

TEST(TransformationsTest, SinkTakesACallableOrAClass) {
  auto sums = std::make_shared<Collected<int>>();
  auto seen = std::make_shared<Collected<int>>();
  LocalEnvironment env("sinks");
  const auto numbers = env.from_collection({1, 2, 3});
  numbers.sink<SumInto>(sums);
  numbers.sink<SumInto>(Options{.name = "sum"}, sums);
  numbers.sink([seen](int x) { seen->add({x}); });
  numbers.sink([seen](int x) { seen->add({-x}); }, {.name = "negated"});
  env.execute();
  EXPECT_EQ(sums->sorted(), (std::vector<int>{6, 6}));
  EXPECT_EQ(seen->sorted(), (std::vector<int>{-3, -2, -1, 1, 2, 3}));
}

TEST(TransformationsTest, CoMapTakesTwoCallablesOrAClass) {
  auto results = std::make_shared<Collected<std::string>>();
  LocalEnvironment env("comap");
  const auto numbers = env.from_collection({1});
  const auto words = env.from_collection({std::string("w")});
  const auto connected = numbers.connect(words);
  connected.comap<Tag>(std::string("a:")).sink<CollectSink<std::string>>(results);
  connected.comap<Tag>(Options{.name = "b"}, std::string("b:"))
      .sink<CollectSink<std::string>>(results);
  const auto keyed =
      numbers.key_by([](int) { return 0; }).connect(words.key_by([](const std::string&) {
        return 0;
      }));
  keyed.comap<Tag>(std::string("c:")).sink<CollectSink<std::string>>(results);
  keyed.comap<Tag>(Options{.name = "d"}, std::string("d:")).sink<CollectSink<std::string>>(results);
  keyed
      .comap([](int x) { return "e:" + std::to_string(x); },
             [](const std::string& s) { return "e:" + s; })
      .sink<CollectSink<std::string>>(results);
  env.execute();
  EXPECT_EQ(results->sorted(), (std::vector<std::string>{"a:1", "a:w", "b:1", "b:w", "c:1", "c:w",
                                                         "d:1", "d:w", "e:1", "e:w"}));
}

}  // namespace
}  // namespace sage
