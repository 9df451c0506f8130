#include "rag/openai_test_server.hpp"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "net/http_bind.hpp"
#include "sage/error.hpp"
#include "sage/rag/hash_embedder.hpp"

namespace sage::rag {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kCorpusHeading = "Relevant corpus for the current question:\n";
constexpr const char* kQuestionPrefix = "Question: ";
constexpr std::size_t kContextWords = 6;
constexpr std::size_t kFillerChunk = 64u << 10;
constexpr std::size_t kMaxRequestBytes = 64u << 20;

std::uint64_t fnv1a(const std::string& text) {
  std::uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

json error_body(const std::string& message, const std::string& type) {
  return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}};
}

// With a charset, httplib does not compress (it would spend more CPU on
// brotli than on the rest of the answer).
constexpr const char* kJson = "application/json; charset=utf-8";

void send_json(httplib::Response& response, int status, const json& body) {
  response.status = status;
  response.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
}

}  // namespace

struct OpenAITestServer::State {
  mutable std::mutex mutex;
  std::condition_variable stopped;  // the stop, for requests waiting out delays
  // More requests open, for requests held until enough are (hold_until_concurrent):
  // a condition of its own, so that arrivals do not wake every delayed request.
  std::condition_variable opened;
  bool stopping = false;
  int open = 0;
  int peak = 0;
  std::map<std::uint64_t, int> attempts;  // by body hash
  std::vector<OpenAITestLogEntry> log;

  // Waits until `until` or the stop; true if stopped.
  bool wait_until(Clock::time_point until) {
    std::unique_lock lock(mutex);
    return stopped.wait_until(lock, until, [&] { return stopping; });
  }
};

std::string OpenAITestServer::answer_for(const std::string& question, const std::string& context) {
  return "Answer to \"" + question + "\" from \"" + context + "\".";
}

std::int64_t OpenAITestServer::count_tokens(const std::string& text) {
  return static_cast<std::int64_t>(words_of(text).size());
}

OpenAITestServer::OpenAITestServer(OpenAITestServerOptions options)
    : options_(std::move(options)),
      state_(std::make_shared<State>()),
      server_(std::make_unique<httplib::Server>()) {
  const int threads = std::max(1, options_.threads);
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_keep_alive_max_count(1u << 20);
  // httplib writes a response's headers and body apart; without TCP_NODELAY the body waits
  // for the client's delayed ACK of the headers (~40 ms on Linux), which added 40 ms to every
  // 50 ms answer.
  server_->set_tcp_nodelay(true);
  server_->set_keep_alive_timeout(2);
  server_->set_payload_max_length(kMaxRequestBytes);
  install_routes();
  port_ = net::bind_http_server(*server_, options_.host, options_.port,
                                httplib::default_socket_options);
  if (port_ <= 0) {
    throw Error("OpenAI test server: cannot listen on " + options_.host + ":" +
                std::to_string(options_.port) + "; pick another port (0: a free one)");
  }
  listener_ = std::thread([this] { server_->listen_after_bind(); });
  while (!server_->is_running()) std::this_thread::yield();
}

OpenAITestServer::~OpenAITestServer() {
  {
    std::lock_guard lock(state_->mutex);
    state_->stopping = true;
  }
  state_->stopped.notify_all();
  state_->opened.notify_all();
  server_->stop();
  listener_.join();
}

std::string OpenAITestServer::base_url() const {
  return "http://" + options_.host + ":" + std::to_string(port_) + "/v1";
}

std::vector<OpenAITestLogEntry> OpenAITestServer::requests() const {
  std::lock_guard lock(state_->mutex);
  return state_->log;
}

int OpenAITestServer::peak_concurrent() const {
  std::lock_guard lock(state_->mutex);
  return state_->peak;
}

void OpenAITestServer::install_routes() {
  const auto handle = [this](const httplib::Request& request, httplib::Response& response,
                             bool chat) {
    State& state = *state_;
    OpenAITestLogEntry logged{.path = request.path, .arrived = Clock::now()};
    {
      std::lock_guard lock(state.mutex);
      logged.open_at_start = ++state.open;
      state.peak = std::max(state.peak, state.open);
    }
    if (options_.hold_until_concurrent > 0) state.opened.notify_all();
    // A request enters the log once its fault is known (so a hung one shows
    // while it hangs), and is completed there when it is answered.
    std::optional<std::size_t> logged_at;
    const auto enter_log = [&] {
      std::lock_guard lock(state.mutex);
      logged_at = state.log.size();
      state.log.push_back(logged);
    };
    const auto finish = [&](int status) {
      logged.status = status;
      logged.answered = Clock::now();
      std::lock_guard lock(state.mutex);
      --state.open;
      if (logged_at) {
        state.log[*logged_at] = logged;
      } else {
        state.log.push_back(logged);
      }
    };

    if (!options_.api_key.empty() &&
        request.get_header_value("Authorization") != "Bearer " + options_.api_key) {
      send_json(response, 401,
                error_body("Incorrect API key provided. You can find your API key in your "
                           "account settings.",
                           "invalid_request_error"));
      return finish(401);
    }
    json body;
    try {
      body = json::parse(request.body);
      if (!body.is_object()) throw std::runtime_error("the body is not a JSON object");
    } catch (const std::exception& e) {
      send_json(response, 400,
                error_body(std::string("invalid JSON body: ") + e.what(), "invalid_request_error"));
      return finish(400);
    }

    // What the request asks, before any fault: the answer or the embeddings.
    std::string question, context, answer;
    std::vector<std::string> inputs;
    try {
      if (chat) {
        for (const json& message : body.at("messages")) {
          const std::string role = message.at("role").get<std::string>();
          const std::string content = message.at("content").get<std::string>();
          logged.prompt_tokens += count_tokens(content);
          if (role == "user") {
            question = content.starts_with(kQuestionPrefix)
                           ? content.substr(std::string(kQuestionPrefix).size())
                           : content;
          } else if (role == "system") {
            const auto corpus = content.find(kCorpusHeading);
            if (corpus != std::string::npos) {
              const std::string first = content.substr(corpus + std::string(kCorpusHeading).size());
              const auto words = words_of(first.substr(0, first.find('\n')));
              for (std::size_t i = 0; i < std::min(words.size(), kContextWords); ++i)
                context += (i == 0 ? "" : " ") + words[i];
            }
          }
        }
        answer = answer_for(question, context);
        logged.key = question;
        logged.completion_tokens = count_tokens(answer);
      } else {
        const json& input = body.at("input");
        if (input.is_string()) {
          inputs.push_back(input.get<std::string>());
        } else {
          for (const json& text : input) inputs.push_back(text.get<std::string>());
        }
        if (inputs.empty()) throw std::runtime_error("input is empty");
        logged.key = inputs.front();
        logged.batch = static_cast<int>(inputs.size());
        for (const std::string& text : inputs) logged.prompt_tokens += count_tokens(text);
      }
    } catch (const std::exception& e) {
      send_json(response, 400,
                error_body(std::string("invalid request: ") + e.what(), "invalid_request_error"));
      return finish(400);
    }

    const std::uint64_t body_hash = fnv1a(request.body);
    {
      std::lock_guard lock(state.mutex);
      logged.attempt = state.attempts[body_hash]++;
    }
    if (options_.script) {
      logged.fault = options_.script(OpenAITestRequest{request.path, logged.key, logged.attempt});
    } else {
      const std::uint64_t draw = splitmix(body_hash ^ splitmix(options_.seed) ^
                                          splitmix(static_cast<std::uint64_t>(logged.attempt)));
      const double u = static_cast<double>(draw >> 11) / 9007199254740992.0;
      double edge = options_.rate_429;
      if (u < edge) {
        logged.fault = OpenAITestFault::too_many_requests;
      } else if (u < (edge += options_.rate_500)) {
        logged.fault = OpenAITestFault::server_error;
      } else if (u < (edge += options_.rate_drop)) {
        logged.fault = OpenAITestFault::drop;
      } else if (u < (edge += options_.rate_hang)) {
        logged.fault = OpenAITestFault::hang;
      }
    }

    enter_log();

    if (options_.hold_until_concurrent > 0) {
      std::unique_lock lock(state.mutex);
      state.opened.wait_for(lock, options_.hold_limit, [&] {
        return state.stopping || state.peak >= options_.hold_until_concurrent;
      });
    }
    if (options_.latency.count() > 0 && state.wait_until(Clock::now() + options_.latency)) {
      send_json(response, 503, error_body("the test server is stopping", "server_error"));
      return finish(503);
    }

    const bool stream = chat && body.value("stream", false);
    const bool mid_stream = stream && logged.fault != OpenAITestFault::too_many_requests &&
                            logged.fault != OpenAITestFault::server_error;
    switch (mid_stream ? OpenAITestFault::none : logged.fault) {
      case OpenAITestFault::too_many_requests:
        if (options_.retry_after_s >= 0)
          response.set_header(
              "Retry-After",
              std::to_string(static_cast<long long>(std::ceil(options_.retry_after_s))));
        if (options_.retry_after_ms >= 0)
          response.set_header("retry-after-ms", std::to_string(options_.retry_after_ms));
        send_json(response, 429,
                  error_body("Rate limit reached for requests (scripted by the test server)",
                             "requests"));
        return finish(429);
      case OpenAITestFault::server_error:
      case OpenAITestFault::error_event:
        send_json(response, 500,
                  error_body("The server had an error while processing your request (scripted)",
                             "server_error"));
        return finish(500);
      case OpenAITestFault::drop: {
        auto half = std::make_shared<std::string>(R"({"id":"dropped","choices":[{"mess)");
        response.set_content_provider(half->size() * 2, kJson,
                                      [half](std::size_t, std::size_t, httplib::DataSink& sink) {
                                        sink.write(half->data(), half->size());
                                        return false;  // httplib closes the connection mid-body
                                      });
        return finish(0);
      }
      case OpenAITestFault::hang: {
        const bool stopped = state.wait_until(Clock::now() + options_.hang_limit);
        send_json(response, 504,
                  error_body(stopped ? "the test server stopped a hung response"
                                     : "a hung response ended after hang_limit",
                             "server_error"));
        return finish(0);
      }
      case OpenAITestFault::malformed:
        response.status = 200;
        response.set_content("{\"choices\": [ this is not JSON", kJson);
        return finish(200);
      case OpenAITestFault::huge: {
        const std::size_t bytes = options_.huge_bytes;
        response.set_content_provider(
            bytes, kJson, [](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
              static const std::string filler(kFillerChunk, ' ');
              (void)offset;
              return sink.write(filler.data(), std::min(length, filler.size()));
            });
        return finish(200);
      }
      case OpenAITestFault::none:
        break;
    }

    const std::string model = body.value("model", std::string("test-model"));
    if (!chat) {
      int dim = options_.embedding_dim;
      if (body.contains("dimensions")) dim = body["dimensions"].get<int>();
      if (dim < 64) {
        send_json(response, 400,
                  error_body("dimensions must be at least 64", "invalid_request_error"));
        return finish(400);
      }
      json data = json::array();
      for (std::size_t i = 0; i < inputs.size(); ++i) {
        data.push_back(
            {{"object", "embedding"}, {"index", i}, {"embedding", hash_embed(inputs[i], dim)}});
      }
      send_json(
          response, 200,
          {{"object", "list"},
           {"data", std::move(data)},
           {"model", model},
           {"usage",
            {{"prompt_tokens", logged.prompt_tokens}, {"total_tokens", logged.prompt_tokens}}}});
      return finish(200);
    }

    const json usage{{"prompt_tokens", logged.prompt_tokens},
                     {"completion_tokens", logged.completion_tokens},
                     {"total_tokens", logged.prompt_tokens + logged.completion_tokens}};
    const std::string id = "chatcmpl-" + std::to_string(body_hash);
    if (stream) {
      const bool include_usage =
          body.contains("stream_options") && body["stream_options"].value("include_usage", false);
      auto words = std::make_shared<std::vector<std::string>>(words_of(answer));
      const auto delay = options_.token_delay;
      auto shared_state = state_;
      const OpenAITestFault fault = logged.fault;
      const auto hang_limit = options_.hang_limit;
      const std::size_t huge_bytes = options_.huge_bytes;
      response.status = 200;
      response.set_chunked_content_provider(
          "text/event-stream", [words, delay, shared_state, include_usage, usage, id, model, fault,
                                hang_limit, huge_bytes](std::size_t, httplib::DataSink& sink) {
            const auto write = [&](const std::string& text) {
              return sink.write(text.data(), text.size());
            };
            const auto event = [&](const json& chunk) {
              return write("data: " + chunk.dump(-1, ' ', false, json::error_handler_t::replace) +
                           "\n\n");
            };
            const auto piece_event = [&](const std::string& piece) {
              return event({{"id", id},
                            {"object", "chat.completion.chunk"},
                            {"model", model},
                            {"choices", {{{"index", 0}, {"delta", {{"content", piece}}}}}}});
            };
            // The fault, after half the words; false: the stream ends here.
            const auto mid_stream_fault = [&] {
              switch (fault) {
                case OpenAITestFault::drop:
                  return false;  // httplib closes the connection without the last chunk
                case OpenAITestFault::hang:
                  shared_state->wait_until(Clock::now() + hang_limit);
                  return false;
                case OpenAITestFault::malformed:
                  return write("data: {\"choices\": [ this is not JSON\n\n");
                case OpenAITestFault::huge: {
                  const std::string filler(kFillerChunk, 'x');
                  for (std::size_t sent = 0; sent < huge_bytes; sent += filler.size())
                    if (!piece_event(filler)) return false;
                  return true;
                }
                default:
                  return true;
              }
            };
            for (std::size_t i = 0; i < words->size(); ++i) {
              if (i == words->size() / 2 && fault == OpenAITestFault::error_event) {
                event(error_body(
                    "The server had an error while processing your request (scripted, mid-stream)",
                    "server_error"));
                sink.done();
                return true;
              }
              if (i == words->size() / 2 && !mid_stream_fault()) return false;
              if (!piece_event((i == 0 ? "" : " ") + (*words)[i])) return false;
              if (delay.count() > 0 && shared_state->wait_until(Clock::now() + delay)) return false;
            }
            json last{{"id", id},
                      {"object", "chat.completion.chunk"},
                      {"model", model},
                      {"choices",
                       {{{"index", 0}, {"delta", json::object()}, {"finish_reason", "stop"}}}}};
            if (!event(last)) return false;
            if (include_usage && !event({{"id", id},
                                         {"object", "chat.completion.chunk"},
                                         {"choices", json::array()},
                                         {"usage", usage}}))
              return false;
            const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
            sink.done();
            return true;
          });
      return finish(200);
    }
    if (options_.token_delay.count() > 0 &&
        state.wait_until(Clock::now() + options_.token_delay * logged.completion_tokens)) {
      send_json(response, 503, error_body("the test server is stopping", "server_error"));
      return finish(503);
    }
    send_json(response, 200,
              {{"id", id},
               {"object", "chat.completion"},
               {"model", model},
               {"choices",
                {{{"index", 0},
                  {"message", {{"role", "assistant"}, {"content", answer}}},
                  {"finish_reason", "stop"}}}},
               {"usage", usage}});
    return finish(200);
  };

  server_->Post(R"((/v1)?/chat/completions)",
                [handle](const httplib::Request& request, httplib::Response& response) {
                  handle(request, response, true);
                });
  server_->Post(R"((/v1)?/embeddings)",
                [handle](const httplib::Request& request, httplib::Response& response) {
                  handle(request, response, false);
                });
}

}  // namespace sage::rag
