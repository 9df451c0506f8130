#include "rag/openai_json.hpp"

#include <stdexcept>
#include <utility>

#include <nlohmann/json.hpp>

namespace sage::rag::detail {
namespace {

using json = nlohmann::json;

// Tokens are estimated at one per 4 bytes of text until the server reports usage.
constexpr std::int64_t kBytesPerToken = 4;

std::int64_t usage_of(const json& response, const char* field) {
  if (!response.contains("usage") || !response["usage"].is_object()) return 0;
  const json& usage = response["usage"];
  return usage.contains(field) && usage[field].is_number_integer()
             ? usage[field].get<std::int64_t>()
             : 0;
}

std::string dump(const json& body) {
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

RequestBody chat_request(const GeneratorConfig& config, const Prompt& prompt) {
  json messages = json::array();
  std::int64_t bytes = 0;
  for (const Message& message : prompt.messages) {
    messages.push_back({{"role", message.role}, {"content", message.content}});
    bytes += static_cast<std::int64_t>(message.content.size());
  }
  json body{{"model", config.model}, {"messages", std::move(messages)}};
  if (config.max_tokens) body["max_tokens"] = *config.max_tokens;
  if (config.temperature) body["temperature"] = *config.temperature;
  if (config.stream) {
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
  }
  return {dump(body), bytes / kBytesPerToken + config.max_tokens.value_or(0)};
}

void read_chat_response(const std::string& body, Answer& answer) {
  const json response = json::parse(body);
  const json& content = response.at("choices").at(0).at("message").at("content");
  answer.text = content.is_null() ? std::string() : content.get<std::string>();
  answer.prompt_tokens = usage_of(response, "prompt_tokens");
  answer.completion_tokens = usage_of(response, "completion_tokens");
}

void ChatStream::feed(std::string_view bytes) {
  if (done_) return;  // anything after [DONE] is not read
  pending_.append(bytes);
  std::size_t begin = 0;
  for (std::size_t end; (end = pending_.find('\n', begin)) != std::string::npos; begin = end + 1) {
    std::string_view next(pending_.data() + begin, end - begin);
    if (next.ends_with('\r')) next.remove_suffix(1);
    line(next);
    if (done_) break;
  }
  pending_.erase(0, begin);
}

void ChatStream::line(std::string_view line) {
  if (line.empty()) return event();
  if (line.front() == ':') return;  // a comment: a keep-alive
  const auto colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
  if (value.starts_with(' ')) value.remove_prefix(1);
  if (field == "data") {
    if (!data_.empty()) data_ += '\n';
    data_ += value;
  } else if (field == "event") {
    type_ = value;
  }  // id and retry are of no use here
}

void ChatStream::event() {
  std::string data = std::exchange(data_, {});
  const std::string type = std::exchange(type_, {});
  if (data.empty()) return;
  if (data == "[DONE]") {
    done_ = true;
    return;
  }
  json chunk;
  try {
    chunk = json::parse(data);
  } catch (const json::exception& e) {
    throw StreamFault("the stream sent an event that is not JSON (" + one_line(e.what(), 120) +
                          "): " + one_line(data, 120) +
                          "; check that base_url points at an OpenAI-compatible API",
                      false);
  }
  if (type == "error" || (chunk.is_object() && chunk.contains("error"))) {
    const json& error = chunk.is_object() && chunk.contains("error") ? chunk["error"] : chunk;
    long status = 0;
    std::string kind;
    if (error.is_object()) {
      if (error.contains("code") && error["code"].is_number_integer())
        status = error["code"].get<long>();
      if (error.contains("type") && error["type"].is_string())
        kind = error["type"].get<std::string>();
    }
    const bool retry = (status != 0 && retryable_status(status)) || kind == "server_error";
    throw StreamFault("the stream sent an error event: " + server_message(data), retry,
                      status >= 400 && status < 600 ? status : 0);
  }
  try {
    if (!chunk.is_object()) throw std::runtime_error("not a JSON object");
    if (chunk.contains("usage") && chunk["usage"].is_object()) {
      prompt_tokens_ = usage_of(chunk, "prompt_tokens");
      completion_tokens_ = usage_of(chunk, "completion_tokens");
    }
    if (!chunk.contains("choices") && chunk.contains("usage")) return;  // a usage chunk
    const json& choices = chunk.at("choices");
    if (!choices.is_array()) throw std::runtime_error("choices is not an array");
    for (const json& choice : choices) {
      if (choice.value("index", 0) != 0) continue;
      if (choice.contains("delta") && choice["delta"].is_object()) {
        const json& delta = choice["delta"];
        if (delta.contains("content") && delta["content"].is_string()) {
          const auto& piece = delta["content"].get_ref<const std::string&>();
          if (!piece.empty() && !first_token_) first_token_ = Clock::now();
          text_ += piece;
        }
      }
      if (choice.contains("finish_reason") && !choice["finish_reason"].is_null()) finished_ = true;
    }
  } catch (const std::exception& e) {
    throw StreamFault("the stream sent an event that is not a chat.completion.chunk (" +
                          one_line(e.what(), 120) + "): " + one_line(data, 120) +
                          "; check that base_url points at an OpenAI-compatible API",
                      false);
  }
}

void ChatStream::read_into(Answer& answer) const {
  answer.text = text_;
  answer.prompt_tokens = prompt_tokens_;
  answer.completion_tokens = completion_tokens_;
}

RequestBody embeddings_request(const OpenAIConfig& config, const std::vector<std::string>& texts) {
  std::int64_t bytes = 0;
  for (const std::string& text : texts) bytes += static_cast<std::int64_t>(text.size());
  json body{{"model", config.model}, {"input", texts}, {"encoding_format", "float"}};
  if (config.dimensions > 0) body["dimensions"] = config.dimensions;
  return {dump(body), bytes / kBytesPerToken};
}

std::vector<std::vector<float>> read_embeddings(const std::string& body, std::size_t count,
                                                int dimensions, std::int64_t& prompt_tokens) {
  const json response = json::parse(body);
  std::vector<std::vector<float>> vectors(count);
  const json& data = response.at("data");
  if (!data.is_array() || data.size() != count) {
    throw std::runtime_error("it has " + std::to_string(data.size()) + " embeddings for " +
                             std::to_string(count) + " inputs");
  }
  std::size_t dim = 0;
  for (std::size_t i = 0; i < data.size(); ++i) {
    const std::size_t index = data[i].contains("index") ? data[i]["index"].get<std::size_t>() : i;
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
  return vectors;
}

}  // namespace sage::rag::detail
