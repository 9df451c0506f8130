// An OpenAI-compatible HTTP server on 127.0.0.1 for tests, benchmarks and the
// example (docs/rag.md, "The test server"): POST /v1/chat/completions answers
// deterministically from the request (the answer names the question and the
// start of the first retrieved text), with usage counted in words, as JSON or,
// with "stream": true, as server-sent events; POST /v1/embeddings returns
// sage's hash embeddings, so retrieval over them works. Faults are scripted:
// seeded rates of 429 (with Retry-After / retry-after-ms), 500, dropped
// connections and hung responses, or a function that picks the fault of each
// request, and mid-stream faults for streamed answers. It checks the API key if one is set, and
// records every request and the peak number of requests open at once. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace httplib {
class Server;
}

namespace sage::rag {

// A streamed answer ("stream": true) meets drop, hang, malformed, huge and
// error_event mid-stream, after half its words: the connection closes, the
// stream falls silent, an event is not JSON, events of filler follow until
// huge_bytes, an error event ends it.
enum class OpenAITestFault {
  none,
  too_many_requests,  // 429 with the Retry-After headers of the options
  server_error,       // 500
  drop,               // headers and half the body, then the connection closes
  hang,               // no response until the server stops (or hang_limit)
  malformed,          // 200 with a body that is not JSON
  huge,               // 200 with huge_bytes of body
  error_event,        // streamed: an OpenAI error event (type server_error); else a 500
};

// What a fault script sees of a request.
struct OpenAITestRequest {
  std::string path;  // "/v1/chat/completions" or "/v1/embeddings"
  std::string key;   // the question (chat) or the first input (embeddings)
  int attempt = 0;   // how many earlier requests had the same body
};

struct OpenAITestServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: a free port
  // Non-empty: requests must carry "Authorization: Bearer <api_key>", else 401.
  std::string api_key;
  // Fault rates, drawn per request from (seed, body, attempt): deterministic
  // whatever the order requests arrive in, and a retry draws again.
  std::uint64_t seed = 1;
  double rate_429 = 0;
  double rate_500 = 0;
  double rate_drop = 0;
  double rate_hang = 0;
  // Headers of a 429: Retry-After in seconds (< 0: none) and retry-after-ms (< 0: none).
  double retry_after_s = -1;
  int retry_after_ms = -1;
  // Picks the fault of each request instead of the rates when set.
  std::function<OpenAITestFault(const OpenAITestRequest&)> script;
  // Before every answer; streamed answers also wait token_delay between words,
  // other answers token_delay per word of the answer before they are sent.
  std::chrono::milliseconds latency{0};
  std::chrono::milliseconds token_delay{0};
  // A hung response gives up after this (the server's stop ends it earlier).
  std::chrono::milliseconds hang_limit{60000};
  // Requests wait (up to hold_limit) until this many are open at once; 0: no waiting.
  int hold_until_concurrent = 0;
  std::chrono::milliseconds hold_limit{10000};
  std::size_t huge_bytes = 50u << 20;
  int embedding_dim = 384;
  int threads = 256;  // connections served at once
};

// One request as the server saw it.
struct OpenAITestLogEntry {
  std::string path;
  std::string key;
  int attempt = 0;
  OpenAITestFault fault = OpenAITestFault::none;
  int status = 0;         // 0: dropped, hung, or not answered yet
  int batch = 0;          // inputs of an embeddings request
  int open_at_start = 0;  // requests open when it arrived, itself included
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::chrono::steady_clock::time_point arrived;
  std::chrono::steady_clock::time_point answered;
};

class OpenAITestServer {
 public:
  // Listens at once; throws sage::Error if it cannot.
  explicit OpenAITestServer(OpenAITestServerOptions options = {});
  // Releases hung requests and stops.
  ~OpenAITestServer();
  OpenAITestServer(const OpenAITestServer&) = delete;
  OpenAITestServer& operator=(const OpenAITestServer&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:<port>/v1"
  std::string base_url() const;

  std::vector<OpenAITestLogEntry> requests() const;
  int peak_concurrent() const;

  // The answer text the server gives to `question` when the first retrieved
  // text (in the system message) starts with `context`.
  static std::string answer_for(const std::string& question, const std::string& context);
  // Token counts as the server reports them: whitespace-separated words.
  static std::int64_t count_tokens(const std::string& text);

 private:
  struct State;
  void install_routes();

  OpenAITestServerOptions options_;
  std::shared_ptr<State> state_;
  std::unique_ptr<httplib::Server> server_;
  std::thread listener_;
  int port_ = 0;
};

}  // namespace sage::rag
