// Headless Chromium (Debian's chromium package) for tests of the dashboard
// page: the DOM of a page after it has run for a while, and a screenshot.
// Runs use virtual time (--virtual-time-budget): timers run as fast as the
// page's fetches allow, so "after 4 s of the page's time" is a condition,
// not a sleep. Each run has its own profile directory.
#pragma once

#include <unistd.h>

#include <chrono>
#include <string>

#include "support/child_process.hpp"

namespace sage::testing {

inline constexpr const char* kChromium = "/usr/bin/chromium";

inline bool chromium_installed() { return access(kChromium, X_OK) == 0; }

struct ChromiumRun {
  bool finished = false;  // within its deadline
  int exit_code = -1;
  std::string output;  // stdout: the DOM for dump_dom
};

// Runs chromium headless on `url` for `virtual_ms` of the page's time with
// `action` ("--dump-dom", or "--screenshot=FILE --window-size=W,H"); its
// profile lives in `profile_dir`. Its log (stderr) is dropped.
inline ChromiumRun run_chromium(const std::string& url, const std::string& action,
                                const std::string& profile_dir, int virtual_ms,
                                std::chrono::milliseconds deadline = std::chrono::seconds(90)) {
  // As root, Chromium's sandbox cannot start: --no-sandbox is then required.
  const std::string sandbox = geteuid() == 0 ? " --no-sandbox" : "";
  const std::string command =
      std::string(kChromium) + " --headless --disable-gpu --hide-scrollbars --no-first-run" +
      " --no-default-browser-check --disable-extensions --user-data-dir='" + profile_dir + "'" +
      sandbox + " --virtual-time-budget=" + std::to_string(virtual_ms) + " " + action + " '" + url +
      "' 2>/dev/null";
  ChildProcess process({"/bin/sh", "-c", command}, {});
  ChromiumRun run;
  run.finished = process.wait(deadline);
  run.exit_code = process.exit_code();
  run.output = process.output();
  return run;
}

}  // namespace sage::testing
