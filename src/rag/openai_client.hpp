// The HTTP side of OpenAIGenerator and OpenAIEmbedder: POST requests to an
// OpenAI-compatible endpoint on libcurl's multi interface, many at once on one
// background thread per client (curl_multi_poll, woken for new requests), over
// kept-alive connections. It caps requests in flight, paces them with token
// buckets (requests and tokens per minute), retries 408/409/429/5xx and
// connection errors after Retry-After / retry-after-ms or a jittered
// exponential backoff, bounds each attempt and each call in time, refuses
// oversized bodies, and records metrics. post() may be called from any thread;
// every callback runs on the client's thread, exactly once per post(). A post
// may read the response as server-sent events while it arrives (StreamReader).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "rag/openai_policy.hpp"
#include "sage/metrics.hpp"

namespace sage::rag::detail {

// Reads a streamed 2xx response (Content-Type text/event-stream) as its bytes
// arrive, on the client's thread. A new reader takes each attempt, so a retried
// call starts from nothing.
class StreamReader {
 public:
  virtual ~StreamReader() = default;
  // The next bytes of the body. Throws StreamFault to end the attempt.
  virtual void feed(std::string_view bytes) = 0;
  // Whether the stream said it is finished (a response that ends before is cut short).
  virtual bool complete() const = 0;
};
using StreamReaders = std::function<std::unique_ptr<StreamReader>()>;

// What a StreamReader found wrong: `why` goes into the call's error; a
// retryable fault is retried like a 5xx.
struct StreamFault : std::runtime_error {
  StreamFault(const std::string& why, bool retryable, long status = 0)
      : std::runtime_error(why), retryable(retryable), status(status) {}
  bool retryable;
  long status;  // an HTTP status the event named, else 0
};

// The outcome of one post(): the 2xx body, or a one-line error.
struct PostOutcome {
  bool ok = false;
  long status = 0;                       // the last HTTP status; 0 when none came
  std::string body;                      // when ok and the response was not streamed
  std::unique_ptr<StreamReader> stream;  // when ok and it was: the reader that read it
  std::string error;                     // when !ok: "<who>: POST <url> failed ...: <why>"
  bool abandoned = false;                // failed because the client stopped, not by the endpoint
  int retries = 0;
  Clock::time_point started;  // post()
  double latency_s = 0;       // from post() to the outcome
};

class OpenAIClient {
 public:
  using Done = std::function<void(PostOutcome)>;

  // Starts the thread. `metrics` (may be null) must outlive the client.
  OpenAIClient(ClientSettings settings, Metrics* metrics);
  // Stops the thread; calls still out complete with an error.
  ~OpenAIClient();
  OpenAIClient(const OpenAIClient&) = delete;
  OpenAIClient& operator=(const OpenAIClient&) = delete;

  // POSTs the JSON `body` to <base_url><path>. `estimated_tokens` is charged to
  // the tokens-per-minute bucket before the request goes out. With `readers`,
  // an event-stream response is fed to a reader as it arrives, and an attempt
  // whose stream falls silent for settings().stream_idle_timeout fails.
  void post(const std::string& path, std::string body, std::int64_t estimated_tokens, Done done,
            StreamReaders readers = {});
  // Runs `task` on the client's thread after `delay` (dropped if the client stops first).
  void after(std::chrono::milliseconds delay, std::function<void()> task);
  // The usage a response reported: metrics, estimated cost, and the correction
  // of the tokens bucket by (prompt + completion - estimated). Client thread only.
  void record_usage(std::int64_t prompt_tokens, std::int64_t completion_tokens,
                    std::int64_t estimated_tokens);
  // A streamed answer's time to its first token. Client thread only.
  void record_time_to_first_token(double seconds);

  const ClientSettings& settings() const { return settings_; }
  std::string url(const std::string& path) const { return settings_.base_url + path; }

 private:
  struct Call;
  struct Transfer;
  struct Loop;

  ClientSettings settings_;
  std::unique_ptr<Loop> loop_;
  std::thread thread_;
};

}  // namespace sage::rag::detail
