#include "sage/detail/crash_point.hpp"

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

namespace sage::detail {
namespace {

struct Armed {
  std::string where;
  std::uint64_t checkpoint = 0;
  std::string instance;
};

// SAGE_CRASH_POINT parsed; nullopt when unset. A malformed value is said
// once on stderr and arms nothing.
std::optional<Armed> armed_point() {
  const char* text = std::getenv("SAGE_CRASH_POINT");
  if (text == nullptr || *text == '\0') return std::nullopt;
  const std::string value(text);
  const auto first = value.find(':');
  const auto second = first == std::string::npos ? first : value.find(':', first + 1);
  Armed armed;
  if (second != std::string::npos) {
    armed.where = value.substr(0, first);
    armed.instance = value.substr(second + 1);
    const std::string number = value.substr(first + 1, second - first - 1);
    char* end = nullptr;
    armed.checkpoint = std::strtoull(number.c_str(), &end, 10);
    if (!number.empty() && *end == '\0' && !armed.instance.empty() &&
        (armed.where == "after-store" || armed.where == "in-commit")) {
      return armed;
    }
  }
  std::fprintf(stderr,
               "SAGE_CRASH_POINT='%s' is not WHERE:CHECKPOINT:INSTANCE with WHERE after-store or "
               "in-commit; no crash point is armed\n",
               text);
  return std::nullopt;
}

}  // namespace

void crash_point(std::string_view where, std::uint64_t checkpoint, std::string_view instance) {
  static const std::optional<Armed> armed = armed_point();
  if (armed && armed->checkpoint == checkpoint && armed->where == where &&
      armed->instance == instance) {
    std::fprintf(stderr, "crash point %s of checkpoint %llu in %s\n", armed->where.c_str(),
                 static_cast<unsigned long long>(checkpoint), armed->instance.c_str());
    std::fflush(stderr);
    std::_Exit(9);
  }
}

}  // namespace sage::detail
