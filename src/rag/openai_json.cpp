#include "rag/openai_json.hpp"

#include <stdexcept>

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
  return {dump(body), bytes / kBytesPerToken + config.max_tokens.value_or(0)};
}

void read_chat_response(const std::string& body, Answer& answer) {
  const json response = json::parse(body);
  const json& content = response.at("choices").at(0).at("message").at("content");
  answer.text = content.is_null() ? std::string() : content.get<std::string>();
  answer.prompt_tokens = usage_of(response, "prompt_tokens");
  answer.completion_tokens = usage_of(response, "completion_tokens");
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
