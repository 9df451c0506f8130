// How print() shows a record: numbers, strings, pairs, tuples, optionals and
// containers of them out of the box, anything else through operator<<.
#pragma once

#include <cstdio>
#include <mutex>
#include <optional>
#include <ostream>
#include <ranges>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "sage/runtime_context.hpp"

namespace sage::detail {

template <class T>
concept Streamable = requires(std::ostream& os, const T& v) {
  os << v;
};
template <class T>
concept TupleLike = requires {
  std::tuple_size<T>::value;
}
&&!std::ranges::range<T>;

template <class T>
void format_record(std::ostream& os, const T& value) {
  if constexpr (std::is_same_v<T, bool>) {
    os << (value ? "true" : "false");
  } else if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    os << std::string_view(value);
  } else if constexpr (TupleLike<T>) {
    os << '(';
    std::apply(
        [&os](const auto&... parts) {
          std::size_t i = 0;
          ((os << (i++ == 0 ? "" : ", "), format_record(os, parts)), ...);
        },
        value);
    os << ')';
  } else if constexpr (requires {
                         value.has_value();
                         *value;
                       }) {
    if (value.has_value()) {
      format_record(os, *value);
    } else {
      os << "none";
    }
  } else if constexpr (std::ranges::range<T>) {
    os << '[';
    bool first = true;
    for (const auto& element : value) {
      if (!first) os << ", ";
      first = false;
      format_record(os, element);
    }
    os << ']';
  } else {
    static_assert(Streamable<T>,
                  "sage: print() cannot show this record type; define operator<<(std::ostream&, "
                  "const T&) for it or use sink() with your own formatting");
    os << value;
  }
}

// Serializes whole lines from all instances, so lines never interleave.
void write_line(std::string_view line);

// The sink behind print(): "prefix 2> record" (the instance index only when
// the operator has more than one instance).
template <class T>
class PrintFunction {
 public:
  explicit PrintFunction(std::string prefix) : prefix_(std::move(prefix)) {}
  void open(RuntimeContext& ctx) {
    if (!prefix_.empty()) prefix_ += ' ';
    if (ctx.parallelism() > 1) prefix_ += std::to_string(ctx.parallel_index()) + "> ";
  }
  void sink(const T& record) {
    std::ostringstream line;
    line << prefix_;
    format_record(line, record);
    line << '\n';
    write_line(line.view());
  }

 private:
  std::string prefix_;
};

}  // namespace sage::detail
