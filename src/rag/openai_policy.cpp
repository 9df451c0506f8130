#include "rag/openai_policy.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <exception>

#include <nlohmann/json.hpp>

#include "sage/error.hpp"
#include "sage/rag/openai.hpp"

namespace sage::rag::detail {
namespace {

using json = nlohmann::json;

constexpr const char* kDefaultBaseUrl = "https://api.openai.com/v1";

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::string trim(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  const auto end = text.find_last_not_of(" \t\r\n");
  return text.substr(begin, end - begin + 1);
}

}  // namespace

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

TokenBucket::TokenBucket(double per_minute)
    : rate_(per_minute / 60.0),
      capacity_(std::max(1.0, per_minute / 60.0)),
      tokens_(capacity_),
      last_(Clock::now()) {}

Clock::duration TokenBucket::wait(Clock::time_point now, double n) {
  if (unlimited()) return Clock::duration::zero();
  refill(now);
  const double needed = std::min(n, capacity_);
  if (tokens_ >= needed) return Clock::duration::zero();
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>((needed - tokens_) / rate_));
}

void TokenBucket::adjust(double n) {
  if (!unlimited()) tokens_ = std::min(capacity_, tokens_ + n);
}

void TokenBucket::refill(Clock::time_point now) {
  tokens_ = std::min(capacity_, tokens_ + seconds_between(last_, now) * rate_);
  last_ = now;
}

bool retryable_status(long status) {
  return status == 408 || status == 409 || status == 429 || status >= 500;
}

bool retryable_transport(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

Clock::duration backoff(const ClientSettings& settings, int retries, std::mt19937_64& random) {
  const double base =
      static_cast<double>(settings.backoff_initial.count()) * std::pow(2.0, std::min(retries, 30));
  const double capped = std::min(base, static_cast<double>(settings.backoff_max.count()));
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(capped * jitter(random)));
}

std::optional<RetryAfterHeader> retry_after_header(const std::string& line) {
  const auto colon = line.find(':');
  if (colon == std::string::npos) return std::nullopt;
  const std::string name = lower(trim(line.substr(0, colon)));
  const std::string value = trim(line.substr(colon + 1));
  try {
    if (name == "retry-after-ms") {
      return RetryAfterHeader{
          .in_ms = true,
          .delay = std::chrono::duration_cast<Clock::duration>(
              std::chrono::duration<double, std::milli>(std::max(0.0, std::stod(value))))};
    }
    if (name != "retry-after") return std::nullopt;
    if (!value.empty() && std::isdigit(static_cast<unsigned char>(value[0]))) {
      return RetryAfterHeader{.delay = std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(std::max(0.0, std::stod(value))))};
    }
    const time_t when = curl_getdate(value.c_str(), nullptr);
    if (when == -1) return std::nullopt;
    const auto delta =
        std::chrono::system_clock::from_time_t(when) - std::chrono::system_clock::now();
    return RetryAfterHeader{.delay = std::max(Clock::duration::zero(),
                                              std::chrono::duration_cast<Clock::duration>(delta))};
  } catch (const std::exception&) {
    return std::nullopt;  // unreadable: the backoff applies
  }
}

std::string one_line(const std::string& text, std::size_t limit) {
  std::string line;
  for (char c : text) {
    if (line.size() >= limit) {
      line += "...";
      break;
    }
    line += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  }
  return trim(line);
}

std::string server_message(const std::string& body) {
  try {
    const json parsed = json::parse(body);
    if (parsed.is_object() && parsed.contains("error")) {
      const json& error = parsed["error"];
      if (error.is_object() && error.contains("message") && error["message"].is_string())
        return one_line(error["message"].get<std::string>());
      if (error.is_string()) return one_line(error.get<std::string>());
    }
  } catch (const json::exception&) {
  }
  return body.empty() ? "(empty body)" : one_line(body);
}

template <class Config>
ClientSettings client_settings(const std::string& who, const Config& config) {
  const auto require = [&](bool ok, const std::string& problem) {
    if (!ok) throw Error(who + ": " + problem);
  };
  require(!config.model.empty(), "the model is empty; set .model (e.g. \"gpt-4o-mini\")");
  require(config.max_in_flight >= 1, "max_in_flight is " + std::to_string(config.max_in_flight) +
                                         "; allow at least 1 request in flight");
  require(config.requests_per_minute >= 0 && config.tokens_per_minute >= 0,
          "requests_per_minute and tokens_per_minute must be >= 0 (0: unlimited)");
  require(config.max_retries >= 0, "max_retries is negative; use 0 for no retries");
  require(config.backoff_initial.count() >= 0 && config.backoff_max >= config.backoff_initial,
          "backoff_initial must be >= 0 and backoff_max >= backoff_initial");
  require(config.request_timeout.count() > 0 && config.total_timeout.count() > 0,
          "request_timeout and total_timeout must be positive");
  require(config.max_response_bytes > 0, "max_response_bytes is 0; allow some bytes");
  ClientSettings settings{
      .who = who,
      .base_url =
          config.base_url.empty() ? env_or("OPENAI_BASE_URL", kDefaultBaseUrl) : config.base_url,
      .api_key = config.api_key.empty() ? env_or("OPENAI_API_KEY", "") : config.api_key,
      .max_in_flight = config.max_in_flight,
      .requests_per_minute = config.requests_per_minute,
      .tokens_per_minute = config.tokens_per_minute,
      .max_retries = config.max_retries,
      .backoff_initial = config.backoff_initial,
      .backoff_max = config.backoff_max,
      .request_timeout = config.request_timeout,
      .total_timeout = config.total_timeout,
      .max_response_bytes = config.max_response_bytes,
      .price_per_1k_prompt_tokens = config.price_per_1k_prompt_tokens,
      .price_per_1k_completion_tokens = config.price_per_1k_completion_tokens};
  if constexpr (requires { config.stream_idle_timeout; }) {
    require(config.stream_idle_timeout.count() > 0,
            "stream_idle_timeout must be positive (the longest silence of a streamed answer)");
    settings.stream_idle_timeout = config.stream_idle_timeout;
  }
  while (!settings.base_url.empty() && settings.base_url.back() == '/')
    settings.base_url.pop_back();
  require(settings.base_url.starts_with("http://") || settings.base_url.starts_with("https://"),
          "base_url '" + settings.base_url +
              "' is not an http:// or https:// URL; set .base_url or $OPENAI_BASE_URL");
  return settings;
}

template ClientSettings client_settings(const std::string&, const GeneratorConfig&);
template ClientSettings client_settings(const std::string&, const OpenAIConfig&);

}  // namespace sage::rag::detail
