#include "rag/openai_client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <exception>
#include <map>
#include <optional>
#include <random>
#include <utility>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "sage/error.hpp"
#include "sage/rag/openai.hpp"

namespace sage::rag::detail {
namespace {

// How long curl_multi_poll waits at most when nothing is due: new requests wake it anyway.
constexpr std::chrono::milliseconds kIdlePoll{1000};

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

}  // namespace

// One post(): its request and what its attempts found so far.
struct OpenAIClient::Call {
  std::string url;
  std::string body;
  std::int64_t estimated_tokens = 0;
  OpenAIClient::Done done;
  StreamReaders readers;  // set: the response may be streamed
  Clock::time_point started;
  Clock::time_point deadline;
  Clock::time_point attempt_started;
  int retries = 0;
};

// One HTTP attempt of a call, owned by the loop while curl runs it.
struct OpenAIClient::Transfer {
  Call call;
  CURL* easy = nullptr;  // back to the loop's spares when the attempt ends
  std::string response;
  std::size_t max_bytes = 0;
  std::size_t received = 0;  // body bytes, streamed or not
  bool too_large = false;
  // A streamed call: the body so far went to `reader` (when the response is
  // an event stream), and the attempt fails when it is silent too long.
  bool body_started = false;
  bool headers_started = false;
  Clock::time_point last_activity;
  std::unique_ptr<StreamReader> reader;
  std::optional<StreamFault> stream_fault;
  bool idle = false;                 // ended by the loop for its silence
  bool retry_after_ms_seen = false;  // retry-after-ms wins over Retry-After
  bool deadline_bounded = false;     // the attempt's timeout is the call's remaining time
  std::optional<Clock::duration> retry_after;
  char error[CURL_ERROR_SIZE] = {};

  ~Transfer() {
    if (easy != nullptr) curl_easy_cleanup(easy);
  }
  static std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user);
  static std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user);
};

// Everything the client's thread owns, and the hand-over queue from other threads.
struct OpenAIClient::Loop {
  Loop(const ClientSettings& settings, Metrics* metrics)
      : settings(settings),
        requests(settings.requests_per_minute),
        tokens(settings.tokens_per_minute),
        random(std::random_device{}()) {
    static const CurlGlobal global;
    multi = curl_multi_init();
    if (multi == nullptr) throw Error(settings.who + ": curl_multi_init failed");
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      static_cast<long>(settings.max_in_flight));
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, static_cast<long>(settings.max_in_flight));
    for (auto [list, accept] : {std::pair{&headers, "Accept: application/json"},
                                std::pair{&stream_headers, "Accept: text/event-stream"}}) {
      *list = curl_slist_append(*list, "Content-Type: application/json");
      *list = curl_slist_append(*list, accept);
      *list = curl_slist_append(*list, "Expect:");  // no 100-continue round trip
      if (!settings.api_key.empty())
        *list = curl_slist_append(*list, ("Authorization: Bearer " + settings.api_key).c_str());
    }
    if (metrics != nullptr) {
      m.requests = &metrics->counter("openai_requests");
      m.retries = &metrics->counter("openai_retries");
      m.failures = &metrics->counter("openai_failures");
      m.prompt_tokens = &metrics->counter("openai_prompt_tokens");
      m.completion_tokens = &metrics->counter("openai_completion_tokens");
      m.request_latency = &metrics->histogram("openai_request_latency_s");
      m.call_latency = &metrics->histogram("openai_call_latency_s");
      m.time_to_first_token = &metrics->histogram("openai_time_to_first_token_s");
      m.in_flight = &metrics->gauge("openai_in_flight");
      m.cost = &metrics->gauge("openai_estimated_cost");
    }
  }
  ~Loop() {
    active.clear();  // easy handles first: they must leave the multi handle before it goes
    for (CURL* easy : spares) curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    curl_slist_free_all(stream_headers);
    curl_multi_cleanup(multi);
  }

  void run() {
    while (true) {
      {
        std::lock_guard lock(mutex);
        for (auto& call : submitted) ready.push_back(std::move(call));
        submitted.clear();
        for (auto& timer : new_timers) timers.insert(std::move(timer));
        new_timers.clear();
        if (stopping) break;
      }
      auto now = Clock::now();
      run_timers(now);
      release_due_retries(now);
      start_ready(now);
      int running = 0;
      curl_multi_perform(multi, &running);
      finish_done();
      const Clock::time_point silent_until = end_silent(Clock::now());
      start_ready(Clock::now());
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::min(next_due(Clock::now()), silent_until) - Clock::now());
      curl_multi_poll(
          multi, nullptr, 0,
          static_cast<int>(std::clamp<std::int64_t>(wait.count(), 0, kIdlePoll.count())), nullptr);
    }
    abandon();
  }

  void wake() { curl_multi_wakeup(multi); }

  // --- scheduling

  void run_timers(Clock::time_point now) {
    while (!timers.empty() && timers.begin()->first <= now) {
      auto task = std::move(timers.begin()->second);
      timers.erase(timers.begin());
      guarded([&] { task(); });
    }
  }

  void release_due_retries(Clock::time_point now) {
    // Retries go before new calls: they have waited longest.
    std::vector<Call> due;
    while (!waiting.empty() && waiting.begin()->first <= now) {
      due.push_back(std::move(waiting.begin()->second));
      waiting.erase(waiting.begin());
    }
    for (auto it = due.rbegin(); it != due.rend(); ++it) ready.push_front(std::move(*it));
  }

  void start_ready(Clock::time_point now) {
    while (!ready.empty() && active.size() < static_cast<std::size_t>(settings.max_in_flight)) {
      Call& call = ready.front();
      if (now >= call.deadline) {
        Call expired = std::move(call);
        ready.pop_front();
        fail(std::move(expired), 0,
             "gave up after the total timeout of " +
                 std::to_string(settings.total_timeout.count()) + " ms");
        continue;
      }
      const auto pace = std::max(requests.wait(now, 1),
                                 tokens.wait(now, static_cast<double>(call.estimated_tokens)));
      if (pace > Clock::duration::zero()) {
        paced_until = now + pace;
        return;
      }
      requests.take(1);
      tokens.take(static_cast<double>(call.estimated_tokens));
      Call next = std::move(call);
      ready.pop_front();
      start(std::move(next), now);
    }
  }

  Clock::time_point next_due(Clock::time_point now) const {
    Clock::time_point due = now + kIdlePoll;
    if (!timers.empty()) due = std::min(due, timers.begin()->first);
    if (!waiting.empty()) due = std::min(due, waiting.begin()->first);
    if (!ready.empty() && active.size() < static_cast<std::size_t>(settings.max_in_flight))
      due = std::min(due, std::max(paced_until, now));
    return due;
  }

  // --- transfers

  void start(Call call, Clock::time_point now) {
    auto transfer = std::make_unique<Transfer>();
    Transfer& t = *transfer;
    t.call = std::move(call);
    t.call.attempt_started = now;
    t.max_bytes = settings.max_response_bytes;
    t.last_activity = now;
    const auto remaining = t.call.deadline - now;
    auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(remaining);
    // A streamed attempt may last as long as its call: the loop ends it when it falls silent.
    const auto attempt_limit = t.call.readers ? timeout : settings.request_timeout;
    t.deadline_bounded = timeout < attempt_limit || t.call.readers;
    timeout = std::max(std::chrono::milliseconds(1), std::min(timeout, attempt_limit));

    if (!spares.empty()) {
      t.easy = spares.back();
      spares.pop_back();
    } else {
      t.easy = curl_easy_init();
    }
    if (t.easy == nullptr) {
      fail(std::move(t.call), 0, "curl_easy_init failed");
      return;
    }
    curl_easy_setopt(t.easy, CURLOPT_URL, t.call.url.c_str());
    curl_easy_setopt(t.easy, CURLOPT_POST, 1L);
    curl_easy_setopt(t.easy, CURLOPT_POSTFIELDS, t.call.body.data());
    curl_easy_setopt(t.easy, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(t.call.body.size()));
    curl_easy_setopt(t.easy, CURLOPT_HTTPHEADER, t.call.readers ? stream_headers : headers);
    curl_easy_setopt(t.easy, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(t.easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(t.easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t.easy, CURLOPT_TCP_KEEPALIVE, 1L);
    // gzip saves bandwidth on large embeddings at little CPU; brotli costs more than it saves.
    curl_easy_setopt(t.easy, CURLOPT_ACCEPT_ENCODING, "gzip");
    curl_easy_setopt(t.easy, CURLOPT_MAXFILESIZE_LARGE,
                     static_cast<curl_off_t>(settings.max_response_bytes));
    curl_easy_setopt(t.easy, CURLOPT_WRITEFUNCTION, Transfer::on_body);
    curl_easy_setopt(t.easy, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(t.easy, CURLOPT_HEADERFUNCTION, Transfer::on_header);
    curl_easy_setopt(t.easy, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(t.easy, CURLOPT_ERRORBUFFER, t.error);
    curl_easy_setopt(t.easy, CURLOPT_PRIVATE, &t);
    // Many requests wait for one connection each rather than queueing behind another's response.
    curl_easy_setopt(t.easy, CURLOPT_PIPEWAIT, 0L);
    if (curl_multi_add_handle(multi, t.easy) != CURLM_OK) {
      fail(std::move(t.call), 0, "curl_multi_add_handle failed");
      return;
    }
    if (m.requests) m.requests->inc();
    if (t.call.readers) ++streaming;
    active.emplace(t.easy, std::move(transfer));
    if (m.in_flight) m.in_flight->set(static_cast<double>(active.size()));
  }

  void finish_done() {
    int left = 0;
    while (CURLMsg* message = curl_multi_info_read(multi, &left)) {
      if (message->msg != CURLMSG_DONE) continue;
      auto found = active.find(message->easy_handle);
      if (found != active.end()) end(found, message->data.result);
    }
  }

  void end(std::map<CURL*, std::unique_ptr<Transfer>>::iterator found, CURLcode code) {
    std::unique_ptr<Transfer> transfer = std::move(found->second);
    active.erase(found);
    if (transfer->call.readers) --streaming;
    curl_multi_remove_handle(multi, transfer->easy);
    if (m.in_flight) m.in_flight->set(static_cast<double>(active.size()));
    finish(*transfer, code);
    // Kept for the next attempt: curl_easy_reset clears the options, not the
    // connection cache (the multi handle's) nor the easy handle's buffers. A
    // connection ended mid-response is not reused (curl closes it on removal).
    curl_easy_reset(transfer->easy);
    spares.push_back(std::exchange(transfer->easy, nullptr));
  }

  // Streamed attempts: ends those silent for too long (request_timeout until
  // the response starts, stream_idle_timeout between its bytes after), and
  // returns when the next one would be.
  Clock::time_point end_silent(Clock::time_point now) {
    Clock::time_point next = now + kIdlePoll;
    if (streaming == 0) return next;
    for (auto it = active.begin(); it != active.end();) {
      const Transfer& t = *it->second;
      const auto current = it++;
      if (!t.call.readers) continue;
      const Clock::time_point due =
          t.last_activity + (t.headers_started ? Clock::duration(settings.stream_idle_timeout)
                                               : Clock::duration(settings.request_timeout));
      if (due > now) {
        next = std::min(next, due);
        continue;
      }
      current->second->idle = true;
      end(current, CURLE_OPERATION_TIMEDOUT);
    }
    return next;
  }

  void finish(Transfer& t, CURLcode code) {
    const auto now = Clock::now();
    if (m.request_latency) m.request_latency->record(seconds_between(t.call.attempt_started, now));
    long status = 0;
    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
    if (t.too_large || code == CURLE_FILESIZE_EXCEEDED) {
      fail(std::move(t.call), status,
           "the response is larger than max_response_bytes (" +
               std::to_string(settings.max_response_bytes) +
               " bytes); raise it if the endpoint's answers are that large");
      return;
    }
    const bool ended_early = code == CURLE_OK && t.reader && !t.reader->complete();
    // A stream that said it was finished is whole, whatever happened to the connection after.
    const bool streamed_whole = t.reader && t.reader->complete() && !t.stream_fault;
    if (streamed_whole || (code == CURLE_OK && status >= 200 && status < 300 && !ended_early)) {
      succeed(std::move(t.call), status, std::move(t.response), std::move(t.reader));
      return;
    }
    std::string why;
    bool retry = false;
    if (t.stream_fault) {
      why = t.stream_fault->what();
      retry = t.stream_fault->retryable;
      if (t.stream_fault->status != 0) status = t.stream_fault->status;
    } else if (t.idle) {
      why = t.headers_started ? "the stream sent nothing for stream_idle_timeout (" +
                                    std::to_string(settings.stream_idle_timeout.count()) +
                                    " ms) after " + std::to_string(t.received) + " bytes"
                              : "no response within request_timeout (" +
                                    std::to_string(settings.request_timeout.count()) + " ms)";
      retry = true;
      status = 0;
    } else if (ended_early) {
      why = "the stream ended after " + std::to_string(t.received) +
            " bytes without finishing (no finish_reason, no data: [DONE])";
      retry = true;
    } else if (code == CURLE_OK) {
      why = "HTTP " + std::to_string(status) + ": " + server_message(t.response);
      retry = retryable_status(status);
    } else {
      why = std::string(curl_easy_strerror(code)) +
            (t.error[0] != '\0' ? " (" + one_line(t.error) + ")" : "");
      if (code == CURLE_OPERATION_TIMEDOUT && !t.deadline_bounded) {
        why = "no response within request_timeout (" +
              std::to_string(settings.request_timeout.count()) + " ms): " + why;
      }
      if (t.reader) why += " after " + std::to_string(t.received) + " bytes of the stream";
      retry = retryable_transport(code);
      status = 0;
    }
    if (!retry) {
      fail(std::move(t.call), status, why);
      return;
    }
    if (t.call.retries >= settings.max_retries) {
      fail(std::move(t.call), status,
           why + " (after " + std::to_string(t.call.retries) + " retries; max_retries is " +
               std::to_string(settings.max_retries) + ")");
      return;
    }
    const Clock::duration delay =
        t.retry_after ? *t.retry_after : backoff(settings, t.call.retries, random);
    if (now + delay >= t.call.deadline) {
      fail(std::move(t.call), status,
           why + " (after " + std::to_string(t.call.retries) +
               " retries; the next would pass the total timeout of " +
               std::to_string(settings.total_timeout.count()) + " ms)");
      return;
    }
    ++t.call.retries;
    if (m.retries) m.retries->inc();
    spdlog::debug("{}: {} ({}), retry {} in {:.3f} s", settings.who, t.call.url, why,
                  t.call.retries, std::chrono::duration<double>(delay).count());
    waiting.emplace(now + delay, std::move(t.call));
  }

  void succeed(Call call, long status, std::string body, std::unique_ptr<StreamReader> stream) {
    PostOutcome outcome{.ok = true,
                        .status = status,
                        .body = std::move(body),
                        .stream = std::move(stream),
                        .retries = call.retries,
                        .started = call.started,
                        .latency_s = seconds_between(call.started, Clock::now())};
    deliver(call, std::move(outcome));
  }

  void fail(Call call, long status, const std::string& why, bool abandoned = false) {
    if (m.failures) m.failures->inc();
    PostOutcome outcome{.ok = false,
                        .status = status,
                        .error = settings.who + ": POST " + call.url + " failed: " + why,
                        .abandoned = abandoned,
                        .retries = call.retries,
                        .started = call.started,
                        .latency_s = seconds_between(call.started, Clock::now())};
    deliver(call, std::move(outcome));
  }

  void deliver(Call& call, PostOutcome outcome) {
    if (m.call_latency) m.call_latency->record(outcome.latency_s);
    guarded([&] { call.done(std::move(outcome)); });
  }

  template <class F>
  void guarded(F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      spdlog::error("{}: a completion callback threw: {}", settings.who, e.what());
    } catch (...) {
      spdlog::error("{}: a completion callback threw", settings.who);
    }
  }

  // On stop: every call still out completes with an error.
  void abandon() {
    const std::string why = "the operator closed before the call completed";
    std::vector<Call> calls;
    for (auto& [easy, transfer] : active) {
      curl_multi_remove_handle(multi, easy);
      calls.push_back(std::move(transfer->call));
    }
    active.clear();
    for (auto& [due, call] : waiting) calls.push_back(std::move(call));
    waiting.clear();
    for (auto& call : ready) calls.push_back(std::move(call));
    ready.clear();
    {
      std::lock_guard lock(mutex);
      for (auto& call : submitted) calls.push_back(std::move(call));
      submitted.clear();
    }
    for (auto& call : calls) fail(std::move(call), 0, why, true);
  }

  const ClientSettings& settings;
  CURLM* multi = nullptr;
  curl_slist* headers = nullptr;         // the same for every request
  curl_slist* stream_headers = nullptr;  // the same, accepting an event stream
  std::vector<CURL*> spares;             // easy handles of ended attempts, for the next ones
  struct {
    Counter* requests = nullptr;
    Counter* retries = nullptr;
    Counter* failures = nullptr;
    Counter* prompt_tokens = nullptr;
    Counter* completion_tokens = nullptr;
    Histogram* request_latency = nullptr;
    Histogram* call_latency = nullptr;
    Histogram* time_to_first_token = nullptr;
    Gauge* in_flight = nullptr;
    Gauge* cost = nullptr;
  } m;
  double cost = 0;

  // Handed over from other threads under `mutex`.
  std::mutex mutex;
  std::vector<Call> submitted;
  std::vector<std::pair<Clock::time_point, std::function<void()>>> new_timers;
  bool stopping = false;

  // The client thread's own.
  std::deque<Call> ready;
  std::multimap<Clock::time_point, Call> waiting;  // retries, by when they are due
  std::multimap<Clock::time_point, std::function<void()>> timers;
  std::map<CURL*, std::unique_ptr<Transfer>> active;
  std::size_t streaming = 0;  // streamed calls among `active`
  TokenBucket requests;
  TokenBucket tokens;
  Clock::time_point paced_until{};
  std::mt19937_64 random;
};

std::size_t OpenAIClient::Transfer::on_body(char* data, std::size_t size, std::size_t count,
                                            void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const std::size_t bytes = size * count;
  t.last_activity = Clock::now();
  if (!t.body_started) {
    t.body_started = true;
    if (t.call.readers) {
      long status = 0;
      const char* type = nullptr;
      curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
      curl_easy_getinfo(t.easy, CURLINFO_CONTENT_TYPE, &type);
      // An error, or a server that answers whole despite "stream": the body as usual.
      if (status >= 200 && status < 300 && type != nullptr &&
          std::string_view(type).starts_with("text/event-stream"))
        t.reader = t.call.readers();
    }
  }
  // CURLOPT_MAXFILESIZE_LARGE refuses a long Content-Length up front; a body
  // without one (chunked, every stream) is cut here.
  if (t.received + bytes > t.max_bytes) {
    t.too_large = true;
    return 0;
  }
  t.received += bytes;
  if (!t.reader) {
    t.response.append(data, bytes);
    return bytes;
  }
  try {
    t.reader->feed(std::string_view(data, bytes));
  } catch (const StreamFault& fault) {
    t.stream_fault = fault;
    return 0;
  } catch (const std::exception& e) {
    t.stream_fault = StreamFault(one_line(e.what()), false);
    return 0;
  }
  return bytes;
}

std::size_t OpenAIClient::Transfer::on_header(char* data, std::size_t size, std::size_t count,
                                              void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const std::size_t bytes = size * count;
  t.headers_started = true;
  t.last_activity = Clock::now();
  if (const auto header = retry_after_header(std::string(data, bytes))) {
    if (header->in_ms) {
      t.retry_after = header->delay;
      t.retry_after_ms_seen = true;
    } else if (!t.retry_after_ms_seen) {
      t.retry_after = header->delay;
    }
  }
  return bytes;
}

OpenAIClient::OpenAIClient(ClientSettings settings, Metrics* metrics)
    : settings_(std::move(settings)), loop_(std::make_unique<Loop>(settings_, metrics)) {
  thread_ = std::thread([this] { loop_->run(); });
}

OpenAIClient::~OpenAIClient() {
  {
    std::lock_guard lock(loop_->mutex);
    loop_->stopping = true;
  }
  loop_->wake();
  thread_.join();
}

void OpenAIClient::post(const std::string& path, std::string body, std::int64_t estimated_tokens,
                        Done done, StreamReaders readers) {
  const auto now = Clock::now();
  Call call{.url = url(path),
            .body = std::move(body),
            .estimated_tokens = estimated_tokens,
            .done = std::move(done),
            .readers = std::move(readers),
            .started = now,
            .deadline = now + settings_.total_timeout};
  {
    std::lock_guard lock(loop_->mutex);
    loop_->submitted.push_back(std::move(call));
  }
  loop_->wake();
}

void OpenAIClient::after(std::chrono::milliseconds delay, std::function<void()> task) {
  {
    std::lock_guard lock(loop_->mutex);
    loop_->new_timers.emplace_back(Clock::now() + delay, std::move(task));
  }
  loop_->wake();
}

void OpenAIClient::record_usage(std::int64_t prompt_tokens, std::int64_t completion_tokens,
                                std::int64_t estimated_tokens) {
  Loop& loop = *loop_;
  loop.tokens.adjust(static_cast<double>(estimated_tokens - prompt_tokens - completion_tokens));
  if (loop.m.prompt_tokens) loop.m.prompt_tokens->inc(prompt_tokens);
  if (loop.m.completion_tokens) loop.m.completion_tokens->inc(completion_tokens);
  loop.cost +=
      static_cast<double>(prompt_tokens) / 1000.0 * settings_.price_per_1k_prompt_tokens +
      static_cast<double>(completion_tokens) / 1000.0 * settings_.price_per_1k_completion_tokens;
  if (loop.m.cost) loop.m.cost->set(loop.cost);
}

void OpenAIClient::record_time_to_first_token(double seconds) {
  if (loop_->m.time_to_first_token) loop_->m.time_to_first_token->record(seconds);
}

}  // namespace sage::rag::detail
