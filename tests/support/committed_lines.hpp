// Test support: what write_text committed in a directory, as a reader sees
// it: the lines of its visible files, sorted; hidden (in-progress) files are
// only counted.
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

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

}  // namespace sage::testing
