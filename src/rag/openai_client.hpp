// The HTTP side of OpenAIGenerator and OpenAIEmbedder: POST requests to an
// OpenAI-compatible endpoint on libcurl's multi interface, many at once on one
// background thread per client (curl_multi_poll, woken for new requests), over
// kept-alive connections. It caps requests in flight, paces them with token
// buckets (requests and tokens per minute), retries 408/409/429/5xx and
// connection errors after Retry-After / retry-after-ms or a jittered
// exponential backoff, bounds each attempt and each call in time, refuses
// oversized bodies, and records metrics. post() may be called from any thread;
// every callback runs on the client's thread, exactly once per post().
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "rag/openai_policy.hpp"
#include "sage/metrics.hpp"

namespace sage::rag::detail {

// The outcome of one post(): the 2xx body, or a one-line error.
struct PostOutcome {
  bool ok = false;
  long status = 0;    // the last HTTP status; 0 when none came
  std::string body;   // when ok
  std::string error;  // when !ok: "<who>: POST <url> failed ...: <why>"
  int retries = 0;
  double latency_s = 0;  // from post() to the outcome
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
  // the tokens-per-minute bucket before the request goes out.
  void post(const std::string& path, std::string body, std::int64_t estimated_tokens, Done done);
  // Runs `task` on the client's thread after `delay` (dropped if the client stops first).
  void after(std::chrono::milliseconds delay, std::function<void()> task);
  // The usage a response reported: metrics, estimated cost, and the correction
  // of the tokens bucket by (prompt + completion - estimated). Client thread only.
  void record_usage(std::int64_t prompt_tokens, std::int64_t completion_tokens,
                    std::int64_t estimated_tokens);

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
