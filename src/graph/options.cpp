#include "sage/options.hpp"

#include <cctype>
#include <cmath>
#include <string>

#include "sage/error.hpp"

namespace sage {

std::uint64_t parse_memory_amount(std::string_view text, std::string_view field) {
  const std::string copy(text);
  std::size_t pos = 0;
  double amount = 0;
  try {
    amount = std::stod(copy, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  std::string unit;
  for (std::size_t i = pos; i < copy.size(); ++i) {
    if (!std::isspace(static_cast<unsigned char>(copy[i]))) {
      unit += static_cast<char>(std::toupper(static_cast<unsigned char>(copy[i])));
    }
  }
  double scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  if (unit == "K" || unit == "KB" || unit == "KIB") scale = 0x1p10;
  if (unit == "M" || unit == "MB" || unit == "MIB") scale = 0x1p20;
  if (unit == "G" || unit == "GB" || unit == "GIB") scale = 0x1p30;
  if (unit == "T" || unit == "TB" || unit == "TIB") scale = 0x1p40;
  const double bytes = amount * scale;
  const bool number = pos > 0 && scale > 0 && std::isfinite(amount);
  std::string problem;  // why a number with a unit is no amount of bytes
  if (number && !(amount > 0)) {
    problem = " (not positive)";
  } else if (number && bytes < 1) {
    problem = " (less than one byte)";
  } else if (number && bytes >= 0x1p64) {  // more than std::uint64_t holds
    problem = " (16 EiB or more)";
  } else if (number && scale == 1 && bytes != std::floor(bytes)) {
    problem = " (not a whole number of bytes)";
  } else if (number) {
    return static_cast<std::uint64_t>(bytes);
  }
  throw InvalidPlanError(std::string(field) + " '" + copy + "' is not an amount of bytes" +
                         problem + "; write a number with a unit, e.g. 512MB or 16GB");
}

std::uint64_t Resources::memory_bytes() const {
  return memory.empty() ? 0 : parse_memory_amount(memory, "memory");
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
  const auto not_negative = [](auto value, const char* field) {
    if (value < 0) {
      throw InvalidPlanError(std::string("ExecutionConfig::") + field + " must not be negative");
    }
  };
  not_negative(checkpoint_interval.count(), "checkpoint_interval (0 turns checkpoints off)");
  not_negative(min_pause_between_checkpoints.count(), "min_pause_between_checkpoints");
  not_negative(restart_attempts, "restart_attempts");
  not_negative(restart_delay.count(), "restart_delay");
  if (task_processes_per_node < 1 || task_processes_per_node > kMaxTaskProcessesPerNode) {
    throw InvalidPlanError("ExecutionConfig::task_processes_per_node must be 1 to " +
                           std::to_string(kMaxTaskProcessesPerNode) + ", got " +
                           std::to_string(task_processes_per_node));
  }
  if (checkpoint_timeout.count() <= 0) {
    throw InvalidPlanError("ExecutionConfig::checkpoint_timeout must be positive");
  }
  if (tolerable_checkpoint_failures < -1) {
    throw InvalidPlanError(
        "ExecutionConfig::tolerable_checkpoint_failures must be -1 (any number) or more");
  }
  if (retained_checkpoints < 1) {
    throw InvalidPlanError("ExecutionConfig::retained_checkpoints must be at least 1");
  }
  if (alignment_buffer_batches == 0) {
    throw InvalidPlanError("ExecutionConfig::alignment_buffer_batches must be at least 1");
  }
}

}  // namespace sage
