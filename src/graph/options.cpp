#include "sage/options.hpp"

#include <cctype>
#include <cmath>
#include <string>

#include "sage/error.hpp"

namespace sage {

std::uint64_t Resources::memory_bytes() const {
  if (memory.empty()) return 0;
  std::size_t pos = 0;
  double amount = 0;
  try {
    amount = std::stod(memory, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  std::string unit;
  for (std::size_t i = pos; i < memory.size(); ++i) {
    if (!std::isspace(static_cast<unsigned char>(memory[i]))) {
      unit += static_cast<char>(std::toupper(static_cast<unsigned char>(memory[i])));
    }
  }
  double scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  if (unit == "K" || unit == "KB" || unit == "KIB") scale = 1024.0;
  if (unit == "M" || unit == "MB" || unit == "MIB") scale = 1024.0 * 1024;
  if (unit == "G" || unit == "GB" || unit == "GIB") scale = 1024.0 * 1024 * 1024;
  if (unit == "T" || unit == "TB" || unit == "TIB") scale = 1024.0 * 1024 * 1024 * 1024;
  if (pos == 0 || scale == 0 || !(amount > 0) || !std::isfinite(amount)) {
    throw InvalidPlanError("memory '" + memory +
                           "' is not a size; write a positive number with a unit, e.g. "
                           "\"512MB\" or \"8GB\"");
  }
  return static_cast<std::uint64_t>(amount * scale);
}

void Resources::validate(const std::string& operator_name) const {
  if (!(num_cpus >= 0) || !std::isfinite(num_cpus)) {
    throw InvalidPlanError("operator '" + operator_name + "': num_cpus must be >= 0, got " +
                           std::to_string(num_cpus));
  }
  if (num_gpus < 0) {
    throw InvalidPlanError("operator '" + operator_name + "': num_gpus must be >= 0, got " +
                           std::to_string(num_gpus));
  }
  try {
    memory_bytes();
  } catch (const InvalidPlanError& e) {
    throw InvalidPlanError("operator '" + operator_name + "': " + e.what());
  }
}

void ExecutionConfig::validate() const {
  if (batch_size == 0) throw InvalidPlanError("ExecutionConfig::batch_size must be at least 1");
  if (channel_capacity == 0) {
    throw InvalidPlanError("ExecutionConfig::channel_capacity must be at least 1");
  }
  if (max_parallelism < 1) {
    throw InvalidPlanError("ExecutionConfig::max_parallelism must be at least 1");
  }
  if (linger.count() < 0) throw InvalidPlanError("ExecutionConfig::linger must not be negative");
}

}  // namespace sage
