// Test support: what write_text committed in a directory, as a reader sees
// it: the lines of its visible files, sorted; hidden (in-progress) files are
// only counted. And the check every exactly-once cluster test ends with.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/child_process.hpp"

namespace sage::testing {

inline std::vector<std::string> committed_lines(const std::string& directory, int* hidden) {
  std::vector<std::string> lines;
  *hidden = 0;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(".") || name.starts_with("_")) {
      ++*hidden;
      continue;
    }
    std::ifstream in(entry.path());
    for (std::string line; std::getline(in, line);) lines.push_back(line);
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

// Expects the submitting process `job` to end FINISHED after `restarts`
// restarts, with `directory` holding exactly the (sorted) `reference` lines
// committed and nothing left in progress.
inline void expect_committed_exactly_once(ChildProcess& job, const std::string& directory,
                                          const std::vector<std::string>& reference, int restarts) {
  using namespace std::chrono_literals;
  ASSERT_TRUE(job.wait(120s)) << job.output();
  EXPECT_EQ(job.exit_code(), 0) << job.output();
  EXPECT_NE(job.output().find("FINISHED, " + std::to_string(restarts) + " restarts"),
            std::string::npos)
      << job.output();
  int hidden = 0;
  const auto lines = committed_lines(directory, &hidden);
  EXPECT_EQ(hidden, 0) << "in-progress files left after the job finished";
  ASSERT_EQ(lines.size(), reference.size()) << job.output();
  EXPECT_TRUE(lines == reference) << "the committed lines are not every result exactly once";
}

}  // namespace sage::testing
