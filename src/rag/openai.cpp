#include "sage/rag/openai.hpp"

#include <algorithm>
#include <utility>

#include <nlohmann/json.hpp>

#include "rag/openai_client.hpp"
#include "sage/error.hpp"

namespace sage::rag {
namespace {

using json = nlohmann::json;

// The engine's own per-call timeout is a backstop behind the client's
// total_timeout, which fails a call with a better message first.
constexpr std::chrono::milliseconds kEngineTimeoutMargin{30000};
// Tokens are estimated at one per 4 bytes of text until the server reports usage.
constexpr std::int64_t kBytesPerToken = 4;

std::int64_t usage_of(const json& response, const char* field) {
  if (!response.contains("usage") || !response["usage"].is_object()) return 0;
  const json& usage = response["usage"];
  return usage.contains(field) && usage[field].is_number_integer()
             ? usage[field].get<std::int64_t>()
             : 0;
}

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
}

void OpenAIGenerator::close() { client_.reset(); }

AsyncOptions OpenAIGenerator::async_options() const {
  return options_of(config_, static_cast<std::size_t>(config_.max_in_flight));
}

void OpenAIGenerator::invoke(const Prompt& prompt, AsyncResult<Answer> result) {
  if (!client_) {
    result.fail("OpenAIGenerator: invoke() before open(); the engine opens operators first");
    return;
  }
  json messages = json::array();
  std::int64_t bytes = 0;
  for (const Message& message : prompt.messages) {
    messages.push_back({{"role", message.role}, {"content", message.content}});
    bytes += static_cast<std::int64_t>(message.content.size());
  }
  json body{{"model", config_.model}, {"messages", std::move(messages)}};
  if (config_.max_tokens) body["max_tokens"] = *config_.max_tokens;
  if (config_.temperature) body["temperature"] = *config_.temperature;
  const std::int64_t estimated = bytes / kBytesPerToken + config_.max_tokens.value_or(0);

  detail::OpenAIClient* client = client_.get();
  client_->post(
      kChatPath, body.dump(-1, ' ', false, json::error_handler_t::replace), estimated,
      [client, estimated, query = prompt.query, hits = prompt.hits,
       result](detail::PostOutcome outcome) {
        if (!outcome.ok) {
          result.fail(std::make_exception_ptr(Error(outcome.error)));
          return;
        }
        Answer answer{.query = query, .hits = hits, .latency_s = outcome.latency_s};
        try {
          const json response = json::parse(outcome.body);
          const json& content = response.at("choices").at(0).at("message").at("content");
          answer.text = content.is_null() ? std::string() : content.get<std::string>();
          answer.prompt_tokens = usage_of(response, "prompt_tokens");
          answer.completion_tokens = usage_of(response, "completion_tokens");
        } catch (const json::exception& e) {
          result.fail(std::make_exception_ptr(Error(malformed(*client, kChatPath, e.what()))));
          return;
        }
        client->record_usage(answer.prompt_tokens, answer.completion_tokens, estimated);
        result.complete(std::move(answer));
      });
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
  json input = json::array();
  std::int64_t bytes = 0;
  for (const Pending& pending : batch) {
    input.push_back(pending.chunk.text);
    bytes += static_cast<std::int64_t>(pending.chunk.text.size());
  }
  json body{{"model", config_.model}, {"input", std::move(input)}, {"encoding_format", "float"}};
  if (config_.dimensions > 0) body["dimensions"] = config_.dimensions;
  const std::int64_t estimated = bytes / kBytesPerToken;

  auto shared = std::make_shared<std::vector<Pending>>(std::move(batch));
  detail::OpenAIClient* client = client_.get();
  const int dimensions = config_.dimensions;
  client_->post(kEmbeddingsPath, body.dump(-1, ' ', false, json::error_handler_t::replace),
                estimated, [client, estimated, dimensions, shared](detail::PostOutcome outcome) {
                  std::vector<Pending>& pending = *shared;
                  const auto fail_all = [&](const std::string& error) {
                    for (Pending& p : pending) p.result.fail(std::make_exception_ptr(Error(error)));
                  };
                  if (!outcome.ok) {
                    fail_all(outcome.error);
                    return;
                  }
                  std::vector<std::vector<float>> vectors(pending.size());
                  std::int64_t prompt_tokens = 0;
                  try {
                    const json response = json::parse(outcome.body);
                    const json& data = response.at("data");
                    if (!data.is_array() || data.size() != pending.size()) {
                      throw std::runtime_error("it has " + std::to_string(data.size()) +
                                               " embeddings for " + std::to_string(pending.size()) +
                                               " inputs");
                    }
                    std::size_t dim = 0;
                    for (std::size_t i = 0; i < data.size(); ++i) {
                      const std::size_t index =
                          data[i].contains("index") ? data[i]["index"].get<std::size_t>() : i;
                      if (index >= vectors.size() || !vectors[index].empty())
                        throw std::runtime_error("embedding index " + std::to_string(index) +
                                                 " is out of range or repeated");
                      vectors[index] = data[i].at("embedding").get<std::vector<float>>();
                      if (vectors[index].empty()) throw std::runtime_error("an embedding is empty");
                      if (dim == 0) dim = vectors[index].size();
                      if (vectors[index].size() != dim ||
                          (dimensions > 0 && dim != static_cast<std::size_t>(dimensions)))
                        throw std::runtime_error("the embeddings' dimensions differ");
                    }
                    prompt_tokens = usage_of(response, "prompt_tokens");
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

}  // namespace sage::rag
