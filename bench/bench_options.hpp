// The command line both benchmarks take: [--records N] [--repeat R]
// [--json FILE]. Anything else prints the usage and exits with status 2.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace sage::bench {

struct BenchOptions {
  long long records = 0;  // records per run of the main workload
  int repeat = 3;         // runs per figure; each figure is their median
  std::string json_path;  // where to write the figures as JSON; empty: nowhere
};

inline BenchOptions parse_bench_options(int argc, char** argv, long long default_records) {
  BenchOptions options{.records = default_records};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--records" && i + 1 < argc) {
      options.records = std::stoll(argv[++i]);
    } else if (arg == "--repeat" && i + 1 < argc) {
      options.repeat = std::stoi(argv[++i]);
    } else if (arg == "--json" && i + 1 < argc) {
      options.json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--records N] [--repeat R] [--json FILE]\n", argv[0]);
      std::exit(2);
    }
  }
  return options;
}

}  // namespace sage::bench
