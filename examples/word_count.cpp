// Word count with keyed state: lines are split into words (flat_map, 2
// instances) and routed by word (key_by) to 3 counting instances that keep a
// ValueState per word; every occurrence of a word reaches the same instance,
// so the running counts are exact. Words seen more than once are printed.
#include <sstream>
#include <string>
#include <vector>

#include <sage/sage.hpp>

namespace {

// Counts occurrences per word and emits (word, count so far).
class CountWords : public sage::Function {
 public:
  void open(sage::RuntimeContext& ctx) override { count_.emplace(ctx.value_state<int>("count")); }
  std::pair<std::string, int> map(const std::string& word) {
    const int count = ++count_->get_or_init(0);
    return {word, count};
  }

 private:
  std::optional<sage::ValueState<int>> count_;
};

}  // namespace

int main() {
  const std::vector<std::string> lines = {
      "to be or not to be",
      "that is the question",
      "whether tis nobler in the mind to suffer",
  };
  sage::LocalEnvironment env("word_count");
  env.from_collection(lines, {.name = "lines"})
      .flat_map(
          [](const std::string& line, sage::Collector<std::string>& out) {
            std::istringstream words(line);
            for (std::string word; words >> word;) out.collect(word);
          },
          {.name = "split", .parallelism = 2})
      .key_by([](const std::string& word) { return word; })
      .map<CountWords>(sage::Options{.name = "count", .parallelism = 3})
      .filter([](const std::pair<std::string, int>& wc) { return wc.second > 1; },
              {.name = "repeated"})
      .print("repeated word:");
  const sage::JobResult result = env.execute();
  std::printf("\n%s", result.statistics_table().c_str());
}
