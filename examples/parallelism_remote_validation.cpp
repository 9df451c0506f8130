// The reference example (SPEC §4, after SAGE's script of the same name):
// from_collection(1..30) -> map "DistMapper" (parallelism 4) -> filter
// multiples of 3 (parallelism 3) -> sink (parallelism 2). Every instance
// prints what it does; at the end the statistics show where each instance ran
// and how many records it saw. Exactly the ten multiples of 3 reach the sinks.
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <sage/sage.hpp>

namespace {

// A record that carries who processed it, to show that user structs cross
// instances (and, on a cluster, processes) with one line of declaration.
struct Processed {
  int value = 0;
  std::string mapper;
  SAGE_FIELDS(value, mapper)
};

// One whole line per call, so lines of concurrent instances never interleave.
void say(const std::string& line) { std::cout << line + "\n" << std::flush; }

std::string where(const sage::RuntimeContext& ctx) {
  return std::to_string(ctx.parallel_index()) + "/" + std::to_string(ctx.parallelism()) + " @ " +
         ctx.node_id() + " pid " + std::to_string(getpid());
}

class DistributedProcessor : public sage::Function {
 public:
  explicit DistributedProcessor(std::string label) : label_(std::move(label)) {}
  void open(sage::RuntimeContext& ctx) override { where_ = where(ctx); }
  Processed map(int value) {
    say("⚙️  DistProcessor[" + label_ + " " + where_ + "] processing " + std::to_string(value));
    return Processed{value, where_};
  }

 private:
  std::string label_;
  std::string where_;
};

class MultipleOfThree : public sage::Function {
 public:
  void open(sage::RuntimeContext& ctx) override { where_ = where(ctx); }
  bool filter(const Processed& record) {
    const bool keep = record.value % 3 == 0;
    say((keep ? "✅ Filter[" : "❌ Filter[") + where_ + "] " + std::to_string(record.value) +
        (keep ? " passes" : " dropped"));
    return keep;
  }

 private:
  std::string where_;
};

class ResultSink : public sage::Function {
 public:
  void open(sage::RuntimeContext& ctx) override { where_ = where(ctx); }
  void sink(const Processed& record) {
    say("🎯 SINK[" + where_ + "] received " + std::to_string(record.value) + " (mapped by " +
        record.mapper + ")");
  }

 private:
  std::string where_;
};

}  // namespace

int main(int argc, char** argv) {
  // Runs on the cluster at $SAGE_ADDRESS (default 127.0.0.1:19001); with
  // --local, on threads of this process instead. The results are the same.
  const bool local = argc > 1 && std::string(argv[1]) == "--local";
  std::unique_ptr<sage::Environment> env;
  if (local) {
    env = std::make_unique<sage::LocalEnvironment>("parallelism_remote_validation");
  } else {
    env = std::make_unique<sage::RemoteEnvironment>("parallelism_remote_validation");
  }

  std::vector<int> numbers(30);
  std::iota(numbers.begin(), numbers.end(), 1);
  env->from_collection(numbers, {.name = "numbers"})
      .map<DistributedProcessor>(sage::Options{.name = "DistMapper", .parallelism = 4},
                                 "DistMapper")
      .filter<MultipleOfThree>(sage::Options{.name = "MultipleOfThree", .parallelism = 3})
      .sink<ResultSink>(sage::Options{.name = "ResultSink", .parallelism = 2});

  // Code before submit runs in every task process too (the program is the
  // job); the banner belongs to the submitting process only.
  if (!sage::is_task_process()) {
    std::cout << "============================================================\n"
              << "REMOTE ENVIRONMENT - SINGLE STREAM PARALLELISM VALIDATION\n"
              << "============================================================" << std::endl;
  }
  try {
    const sage::JobResult result = env->execute();
    std::uint64_t at_sinks = 0;
    for (const auto& s : result.instances) {
      if (s.operator_name == "ResultSink") at_sinks += s.records_in;
    }
    std::cout << "\n📊 PARALLELISM STATISTICS (job " << result.job_id << ", "
              << sage::to_string(result.state) << " in " << result.duration_seconds << " s)\n"
              << result.statistics_table() << "Records reaching the sinks: " << at_sinks
              << " (expected 10)" << std::endl;
    return at_sinks == 10 ? EXIT_SUCCESS : EXIT_FAILURE;
  } catch (const sage::Error& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return EXIT_FAILURE;
  }
}
