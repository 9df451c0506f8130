#include "sage/rag/openai.hpp"

#include <algorithm>
#include <future>
#include <stdexcept>
#include <utility>

#include "rag/openai_client.hpp"
#include "rag/openai_json.hpp"
#include "sage/error.hpp"

namespace sage::rag {
namespace {

// The engine's own per-call timeout is a backstop behind the client's
// total_timeout, which fails a call with a better message first.
constexpr std::chrono::milliseconds kEngineTimeoutMargin{30000};

std::string malformed(const detail::OpenAIClient& client, const std::string& path,
                      const std::string& why) {
  return client.settings().who + ": POST " + client.url(path) +
         " answered HTTP 200 with a body that is not an OpenAI response (" + detail::one_line(why) +
         "); check that base_url points at an OpenAI-compatible API";
}

template <class Config>
AsyncOptions options_of(const Config& config, std::size_t capacity) {
  return AsyncOptions{.capacity = capacity,
                      .ordered = config.ordered,
                      .timeout = config.total_timeout + kEngineTimeoutMargin};
}

constexpr const char* kChatPath = "/chat/completions";
constexpr const char* kEmbeddingsPath = "/embeddings";

}  // namespace

// --- OpenAIGenerator

OpenAIGenerator::OpenAIGenerator(GeneratorConfig config) : config_(std::move(config)) {
  (void)detail::client_settings("OpenAIGenerator", config_);
  if (config_.max_tokens && *config_.max_tokens < 1)
    throw Error("OpenAIGenerator: max_tokens must be at least 1 when set");
}

OpenAIGenerator::~OpenAIGenerator() { close(); }

void OpenAIGenerator::open(RuntimeContext& context) {
  client_ = std::make_unique<detail::OpenAIClient>(
      detail::client_settings("OpenAIGenerator", config_), &context.metrics());
  error_answers_ = &context.metrics().counter("openai_error_answers");
}

void OpenAIGenerator::close() { client_.reset(); }

AsyncOptions OpenAIGenerator::async_options() const {
  return options_of(config_, static_cast<std::size_t>(config_.max_in_flight));
}

void OpenAIGenerator::failed(Answer answer, const AsyncResult<Answer>& result, std::string error,
                             long status) const {
  if (config_.on_failure == OnFailure::fail_job) {
    result.fail(std::make_exception_ptr(Error(error)));
    return;
  }
  answer.text.clear();
  answer.error = std::move(error);
  answer.error_status = status;
  if (error_answers_ != nullptr) error_answers_->inc();
  result.complete(std::move(answer));
}

void OpenAIGenerator::timeout(const Prompt& prompt, AsyncResult<Answer> result) {
  failed(Answer{.query = prompt.query, .hits = prompt.hits}, result,
         "OpenAIGenerator: no answer within the engine's timeout (total_timeout + " +
             std::to_string(kEngineTimeoutMargin.count()) + " ms)",
         0);
}

void OpenAIGenerator::invoke(const Prompt& prompt, AsyncResult<Answer> result) {
  if (!client_) {
    result.fail("OpenAIGenerator: invoke() before open(); the engine opens operators first");
    return;
  }
  detail::RequestBody request = detail::chat_request(config_, prompt);
  const std::int64_t estimated = request.estimated_tokens;
  detail::OpenAIClient* client = client_.get();
  detail::StreamReaders readers;
  if (config_.stream) readers = [] { return std::make_unique<detail::ChatStream>(); };
  client_->post(
      kChatPath, std::move(request.json), estimated,
      [this, client, estimated, query = prompt.query, hits = prompt.hits,
       result](detail::PostOutcome outcome) {
        Answer answer{.query = query, .hits = hits, .latency_s = outcome.latency_s};
        if (!outcome.ok) {
          if (outcome.abandoned) {
            result.fail(std::make_exception_ptr(Error(outcome.error)));
          } else {
            failed(std::move(answer), result, std::move(outcome.error), outcome.status);
          }
          return;
        }
        answer.time_to_first_token_s = outcome.latency_s;
        try {
          if (outcome.stream) {
            const auto& stream = static_cast<const detail::ChatStream&>(*outcome.stream);
            stream.read_into(answer);
            if (const auto first = stream.first_token())
              answer.time_to_first_token_s = detail::seconds_between(outcome.started, *first);
          } else {
            detail::read_chat_response(outcome.body, answer);
          }
        } catch (const std::exception& e) {
          failed(std::move(answer), result, malformed(*client, kChatPath, e.what()),
                 outcome.status);
          return;
        }
        client->record_usage(answer.prompt_tokens, answer.completion_tokens, estimated);
        client->record_time_to_first_token(answer.time_to_first_token_s);
        result.complete(std::move(answer));
      },
      std::move(readers));
}

// --- OpenAIEmbedder

OpenAIEmbedder::OpenAIEmbedder(OpenAIConfig config) : config_(std::move(config)) {
  (void)detail::client_settings("OpenAIEmbedder", config_);
  if (config_.batch_size < 1)
    throw Error("OpenAIEmbedder: batch_size is " + std::to_string(config_.batch_size) +
                "; send at least 1 chunk per request");
  if (config_.linger.count() < 0) throw Error("OpenAIEmbedder: linger must be >= 0");
  if (config_.dimensions < 0)
    throw Error("OpenAIEmbedder: dimensions must be >= 0 (0: the model's)");
}

OpenAIEmbedder::~OpenAIEmbedder() { close(); }

void OpenAIEmbedder::open(RuntimeContext& context) {
  client_ = std::make_unique<detail::OpenAIClient>(
      detail::client_settings("OpenAIEmbedder", config_), &context.metrics());
}

void OpenAIEmbedder::close() {
  // Stopping the client first ends its timers, which touch filling_.
  client_.reset();
  std::vector<Pending> left;
  {
    std::lock_guard lock(mutex_);
    left.swap(filling_);
  }
  for (Pending& pending : left)
    pending.result.fail("OpenAIEmbedder: the operator closed before the call completed");
}

AsyncOptions OpenAIEmbedder::async_options() const {
  return options_of(config_, static_cast<std::size_t>(config_.batch_size) *
                                 static_cast<std::size_t>(config_.max_in_flight));
}

void OpenAIEmbedder::invoke(const Chunk& chunk, AsyncResult<Embedded> result) {
  if (!client_) {
    result.fail("OpenAIEmbedder: invoke() before open(); the engine opens operators first");
    return;
  }
  std::vector<Pending> full;
  std::optional<std::uint64_t> started;
  {
    std::lock_guard lock(mutex_);
    filling_.push_back(Pending{chunk, std::move(result)});
    if (filling_.size() >= static_cast<std::size_t>(config_.batch_size)) {
      full.swap(filling_);
      ++batch_number_;
    } else if (filling_.size() == 1) {
      started = batch_number_;
    }
  }
  if (!full.empty()) {
    send(std::move(full));
  } else if (started) {
    client_->after(config_.linger, [this, batch = *started] { flush(batch); });
  }
}

void OpenAIEmbedder::flush(std::uint64_t batch) {
  std::vector<Pending> full;
  {
    std::lock_guard lock(mutex_);
    if (batch != batch_number_ || filling_.empty()) return;
    full.swap(filling_);
    ++batch_number_;
  }
  send(std::move(full));
}

void OpenAIEmbedder::send(std::vector<Pending> batch) {
  std::vector<std::string> texts;
  for (const Pending& pending : batch) texts.push_back(pending.chunk.text);
  detail::RequestBody request = detail::embeddings_request(config_, texts);
  const std::int64_t estimated = request.estimated_tokens;

  auto shared = std::make_shared<std::vector<Pending>>(std::move(batch));
  detail::OpenAIClient* client = client_.get();
  const int dimensions = config_.dimensions;
  client_->post(kEmbeddingsPath, std::move(request.json), estimated,
                [client, estimated, dimensions, shared](detail::PostOutcome outcome) {
                  std::vector<Pending>& pending = *shared;
                  const auto fail_all = [&](const std::string& error) {
                    for (Pending& p : pending) p.result.fail(std::make_exception_ptr(Error(error)));
                  };
                  if (!outcome.ok) {
                    fail_all(outcome.error);
                    return;
                  }
                  std::vector<std::vector<float>> vectors;
                  std::int64_t prompt_tokens = 0;
                  try {
                    vectors = detail::read_embeddings(outcome.body, pending.size(), dimensions,
                                                      prompt_tokens);
                  } catch (const std::exception& e) {
                    fail_all(malformed(*client, kEmbeddingsPath, e.what()));
                    return;
                  }
                  client->record_usage(prompt_tokens, 0, estimated);
                  for (std::size_t i = 0; i < pending.size(); ++i) {
                    pending[i].result.complete(Embedded{.chunk = std::move(pending[i].chunk),
                                                        .vector = std::move(vectors[i])});
                  }
                });
}

// --- OpenAIQueryEmbedder

OpenAIQueryEmbedder::OpenAIQueryEmbedder(OpenAIConfig config, Metrics* metrics)
    : config_(std::move(config)),
      client_(std::make_unique<detail::OpenAIClient>(
          detail::client_settings("OpenAIQueryEmbedder", config_), metrics)) {
  if (config_.dimensions < 0)
    throw Error("OpenAIQueryEmbedder: dimensions must be >= 0 (0: the model's)");
  if (config_.batch_size < 1)
    throw Error("OpenAIQueryEmbedder: batch_size is " + std::to_string(config_.batch_size) +
                "; embed at least 1 query per request");
  config_.base_url = client_->settings().base_url;  // as resolved, for messages
}

OpenAIQueryEmbedder::~OpenAIQueryEmbedder() = default;

std::vector<std::vector<float>> OpenAIQueryEmbedder::embed(
    const std::vector<std::string>& texts) const {
  detail::RequestBody request = detail::embeddings_request(config_, texts);
  std::promise<detail::PostOutcome> promise;
  std::future<detail::PostOutcome> done = promise.get_future();
  client_->post(kEmbeddingsPath, std::move(request.json), request.estimated_tokens,
                [&promise](detail::PostOutcome outcome) { promise.set_value(std::move(outcome)); });
  detail::PostOutcome outcome = done.get();
  if (!outcome.ok) throw Error(outcome.error);
  std::int64_t prompt_tokens = 0;
  std::vector<std::vector<float>> vectors;
  try {
    vectors =
        detail::read_embeddings(outcome.body, texts.size(), config_.dimensions, prompt_tokens);
  } catch (const std::exception& e) {
    throw Error(malformed(*client_, kEmbeddingsPath, e.what()));
  }
  // record_usage runs on the client's thread: hand it over.
  client_->after(std::chrono::milliseconds(0),
                 [client = client_.get(), prompt_tokens, estimated = request.estimated_tokens] {
                   client->record_usage(prompt_tokens, 0, estimated);
                 });
  return vectors;
}

}  // namespace sage::rag
