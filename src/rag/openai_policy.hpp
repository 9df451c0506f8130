// The retry-and-limit policy of OpenAIClient, apart from its curl loop
// (openai_client.cpp): the settings checked and resolved from an operator's
// config (with $OPENAI_BASE_URL / $OPENAI_API_KEY), the token buckets that pace
// requests and tokens per minute, which failures are retried and after how
// long, and how an error body becomes one line.
#pragma once

#include <curl/curl.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <random>
#include <string>

namespace sage::rag::detail {

using Clock = std::chrono::steady_clock;

struct ClientSettings {
  std::string who;       // "OpenAIGenerator", for errors
  std::string base_url;  // without a trailing '/'
  std::string api_key;   // empty: no Authorization header
  int max_in_flight = 32;
  double requests_per_minute = 0;
  double tokens_per_minute = 0;
  int max_retries = 5;
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::milliseconds request_timeout{60000};
  std::chrono::milliseconds total_timeout{300000};
  std::size_t max_response_bytes = 16u << 20;
  // The longest silence of a streamed response once it has started.
  std::chrono::milliseconds stream_idle_timeout{30000};
  double price_per_1k_prompt_tokens = 0;
  double price_per_1k_completion_tokens = 0;
};

// Checks the settings common to both operators and fills base_url / api_key
// from $OPENAI_BASE_URL / $OPENAI_API_KEY; throws sage::Error naming the field.
template <class Config>
ClientSettings client_settings(const std::string& who, const Config& config);

// A token bucket that holds one second's worth of a per-minute rate (at least
// one unit). A take larger than the bucket goes through when the bucket is full
// and leaves a debt, so nothing waits forever.
class TokenBucket {
 public:
  explicit TokenBucket(double per_minute);

  bool unlimited() const { return rate_ <= 0; }
  // How long until `n` can be taken (zero: now).
  Clock::duration wait(Clock::time_point now, double n);
  void take(double n) {
    if (!unlimited()) tokens_ -= n;
  }
  // Gives back (or, negative, charges) tokens after the fact.
  void adjust(double n);

 private:
  void refill(Clock::time_point now);
  double rate_, capacity_, tokens_;
  Clock::time_point last_;
};

// 408, 409, 429 and 5xx are retried; other statuses fail the call at once.
bool retryable_status(long status);
// Connection errors, timeouts and dropped connections are retried.
bool retryable_transport(CURLcode code);
// The wait before retry number `retries` + 1 without Retry-After:
// backoff_initial * 2^retries, capped at backoff_max, jittered down to half.
Clock::duration backoff(const ClientSettings& settings, int retries, std::mt19937_64& random);

// A response header that says when to retry: retry-after-ms (in_ms) or
// Retry-After (seconds or an HTTP date). nullopt for other headers and for
// values that cannot be read (the backoff applies then).
struct RetryAfterHeader {
  bool in_ms = false;
  Clock::duration delay{};
};
std::optional<RetryAfterHeader> retry_after_header(const std::string& line);

double seconds_between(Clock::time_point from, Clock::time_point to);

// The "error.message" of an OpenAI-style error body (or the body itself,
// shortened), on one line.
std::string server_message(const std::string& body);

// `text` on one line and at most `limit` bytes.
std::string one_line(const std::string& text, std::size_t limit = 300);

}  // namespace sage::rag::detail
