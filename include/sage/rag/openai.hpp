// OpenAIGenerator (Prompt -> Answer over POST <base_url>/chat/completions) and
// OpenAIEmbedder (Chunk -> Embedded over POST <base_url>/embeddings, batched):
// asynchronous maps (sage::AsyncFunction) that keep many requests open per
// instance on one libcurl thread, with a concurrency cap, a requests/tokens per
// minute limiter, retries that honour Retry-After, per-request and total
// timeouts, a response size limit and metrics (docs/rag.md, "Generation").
// Every call completes exactly once: with its result, or failed with a one-line
// error naming the endpoint, the HTTP status and the server's message.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sage/async_function.hpp"
#include "sage/metrics.hpp"
#include "sage/rag/records.hpp"

namespace sage::rag {

namespace detail {
class OpenAIClient;
}

// What both operators share: the endpoint, the limits and the retries. The
// same fields appear in GeneratorConfig and OpenAIConfig so that both take
// flat designated initialisers (GeneratorConfig{.model = "gpt-4", ...}).
#define SAGE_RAG_OPENAI_CONNECTION_FIELDS                                                  \
  /* The model's name, sent as "model". */                                                 \
  std::string model;                                                                       \
  /* e.g. "http://127.0.0.1:8000/v1"; empty: $OPENAI_BASE_URL, else                        \
     https://api.openai.com/v1. */                                                         \
  std::string base_url;                                                                    \
  /* Sent as "Authorization: Bearer <key>", never logged; empty: $OPENAI_API_KEY (none if  \
     unset, for local servers). */                                                         \
  std::string api_key;                                                                     \
  /* Requests open at once per instance. */                                                \
  int max_in_flight = 32;                                                                  \
  /* Requests and (estimated) tokens per minute per instance; 0: unlimited. A token bucket \
     that holds one second's worth. */                                                     \
  double requests_per_minute = 0;                                                          \
  double tokens_per_minute = 0;                                                            \
  /* Retries of a request after 408, 409, 429, 5xx or a connection error / timeout. */     \
  int max_retries = 5;                                                                     \
  /* Backoff without Retry-After: initial * 2^retry, jittered down to half, capped. */     \
  std::chrono::milliseconds backoff_initial{500};                                          \
  std::chrono::milliseconds backoff_max{30000};                                            \
  /* One HTTP attempt, connection included. */                                             \
  std::chrono::milliseconds request_timeout{60000};                                        \
  /* A call, all its attempts and waits included. */                                       \
  std::chrono::milliseconds total_timeout{300000};                                         \
  /* A larger response body fails the call (it is not retried). */                         \
  std::size_t max_response_bytes = 16u << 20;                                              \
  /* Estimated cost metric, in the currency of the prices; 0: not estimated. */            \
  double price_per_1k_prompt_tokens = 0;                                                   \
  double price_per_1k_completion_tokens = 0;                                               \
  /* Results in input order (true) or as they complete. */                                 \
  bool ordered = true;

// What OpenAIGenerator does with a call that still fails after its retries.
enum class OnFailure {
  fail_job,    // the job fails with the call's one-line error (the default)
  emit_error,  // an Answer with an empty text and Answer::error set takes the record's place
};

struct GeneratorConfig {
  SAGE_RAG_OPENAI_CONNECTION_FIELDS
  // Sent when set.
  std::optional<int> max_tokens;
  std::optional<double> temperature;
  // Asks for the answer as server-sent events ("stream": true, with
  // "stream_options": {"include_usage": true}) and assembles it as it comes:
  // the same Answer, plus its time to the first token. request_timeout then
  // bounds the wait for the response to start, stream_idle_timeout each gap
  // between bytes of the stream, total_timeout the whole call.
  bool stream = false;
  std::chrono::milliseconds stream_idle_timeout{30000};
  OnFailure on_failure = OnFailure::fail_job;
};

struct OpenAIConfig {
  SAGE_RAG_OPENAI_CONNECTION_FIELDS
  // Chunks per /embeddings request.
  int batch_size = 64;
  // How long a partly filled batch waits for more chunks before it is sent.
  std::chrono::milliseconds linger{5};
  // Sent as "dimensions" when > 0 (models that can shorten their vectors).
  int dimensions = 0;
};

#undef SAGE_RAG_OPENAI_CONNECTION_FIELDS

// Prompt -> Answer. Answer::latency_s is the call's time from invoke() to its
// completion, retries included; the tokens are the server's "usage". Metrics
// (RuntimeContext::metrics()): counters openai_requests, openai_retries,
// openai_failures, openai_prompt_tokens, openai_completion_tokens,
// openai_error_answers (failed calls emitted as Answers with an error);
// histograms openai_request_latency_s (one HTTP attempt),
// openai_call_latency_s and openai_time_to_first_token_s; gauges
// openai_in_flight and openai_estimated_cost.
class OpenAIGenerator : public sage::AsyncFunction<Prompt, Answer> {
 public:
  // Throws sage::Error when the config is out of range.
  explicit OpenAIGenerator(GeneratorConfig config);
  ~OpenAIGenerator() override;

  // Starts the instance's HTTP thread.
  void open(RuntimeContext& context) override;
  // Ends it; calls still out fail ("closed before the call completed").
  void close() override;

  void invoke(const Prompt& prompt, AsyncResult<Answer> result) override;
  // The engine's backstop timeout (total_timeout + 30 s): fails the job, or
  // emits an error Answer with OnFailure::emit_error.
  void timeout(const Prompt& prompt, AsyncResult<Answer> result) override;
  AsyncOptions async_options() const override;

  const GeneratorConfig& config() const { return config_; }

 private:
  // Completes `result` for a call that failed with `error`: fails it, or
  // emits an error Answer, as on_failure says.
  void failed(Answer answer, const AsyncResult<Answer>& result, std::string error,
              long status) const;

  GeneratorConfig config_;
  std::unique_ptr<detail::OpenAIClient> client_;
  Counter* error_answers_ = nullptr;
};

// Chunk -> Embedded, several chunks per /embeddings request (batch_size, or
// fewer after `linger`); vectors come back in input order whatever the order of
// the response's "data". Same metrics as OpenAIGenerator.
class OpenAIEmbedder : public sage::AsyncFunction<Chunk, Embedded> {
 public:
  // How collections name this embedder in their manifest: "openai:<model>".
  static constexpr std::string_view kNamePrefix = "openai:";
  static std::string name_of(const std::string& model) { return std::string(kNamePrefix) + model; }

  // Throws sage::Error when the config is out of range.
  explicit OpenAIEmbedder(OpenAIConfig config);
  ~OpenAIEmbedder() override;

  void open(RuntimeContext& context) override;
  void close() override;

  void invoke(const Chunk& chunk, AsyncResult<Embedded> result) override;
  AsyncOptions async_options() const override;

  const OpenAIConfig& config() const { return config_; }

 private:
  struct Pending {
    Chunk chunk;
    AsyncResult<Embedded> result;
  };
  // Sends the batch being filled, if it is still batch number `batch`.
  void flush(std::uint64_t batch);
  void send(std::vector<Pending> batch);

  OpenAIConfig config_;
  std::unique_ptr<detail::OpenAIClient> client_;
  std::mutex mutex_;  // guards filling_ and batch_number_ (task thread and HTTP thread)
  std::vector<Pending> filling_;
  std::uint64_t batch_number_ = 0;
};

// Embeds queries the way OpenAIEmbedder embedded a collection, for a Retriever
// over that collection: one POST <base_url>/embeddings per embed() (all its
// texts in one request), which blocks until the vectors come, with the same
// retries, limits, timeouts and metrics as the operators.
class OpenAIQueryEmbedder {
 public:
  // Starts the HTTP thread; `metrics` (may be null) must outlive this. Throws
  // sage::Error when the config is out of range.
  OpenAIQueryEmbedder(OpenAIConfig config, Metrics* metrics);
  ~OpenAIQueryEmbedder();

  // The vectors of `texts`, in order. Throws sage::Error, one line naming the
  // endpoint and the status, when the call fails. Safe from many threads.
  std::vector<std::vector<float>> embed(const std::vector<std::string>& texts) const;

  // The config, with base_url as resolved (from $OPENAI_BASE_URL or the default).
  const OpenAIConfig& config() const { return config_; }

 private:
  OpenAIConfig config_;
  std::unique_ptr<detail::OpenAIClient> client_;
};

}  // namespace sage::rag
