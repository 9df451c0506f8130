// The dashboard's cost at scale (issue 13), on a throwaway local cluster (a
// head and two workers) running a job of 1000 instances (4 chained operators
// of 250, spread over the two workers' task processes):
//   bytes   what one refresh of the page moves: its 4 API calls (cluster, jobs,
//           the job, its new output), headers and bodies, gzip-compressed as
//           browsers ask; target < 200 KB; baseline: the same refresh on the
//           same head before the job was submitted
//   render  navigation to the first refresh drawn in full in headless Chromium
//           (the page's own real-time figure, read over the DevTools protocol),
//           in a second tab of a browser that has the page open (and, for
//           reference, in its first tab: a cold browser); target < 1 s;
//           baseline: the same page before the job was submitted
//   memory  the head's resident memory after a warm-up of 1000 refreshes and
//           after 10 000 more (the API calls of a refresh, back to back);
//           target: flat
// This program is also the job: `--job wide` submits it (and prints its id),
// and its task processes re-run it so.
//
//   build/bench/dashboard_bench [--refreshes N] [--json FILE]
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sage/sage.hpp>

#include "local_cluster.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using sage::bench::json_field;
using sage::bench::LocalCluster;
using sage::bench::run_command;

constexpr int kParallelism = 250;  // per operator; 4 operators
constexpr const char* kChromium = "/usr/bin/chromium";

// ---- the job -----------------------------------------------------------------

int run_job() {
  sage::RemoteEnvironment env("dashboard-wide");
  env.from_source(
         [n = 0LL]() mutable -> std::optional<long long> {
           std::this_thread::sleep_for(std::chrono::milliseconds(100));
           return ++n;
         },
         {.name = "source", .parallelism = kParallelism})
      .map([](long long x) { return x + 1; }, {.name = "add", .parallelism = kParallelism})
      .filter([](long long x) { return x % 2 == 0; }, {.name = "even", .parallelism = kParallelism})
      .sink([](long long) {}, {.name = "sink", .parallelism = kParallelism});
  std::printf("submitted %s\n", env.submit(false).c_str());
  return 0;
}

// ---- the head's API, as the page calls it --------------------------------------

class Api {
 public:
  // A connection per request: httplib 0.11's client stalled for its read
  // timeout on kept-alive connections here.
  Api(const std::string& url, std::string token) : client_(url), token_(std::move(token)) {}

  // GET `path` as Chromium asks over HTTP (gzip or deflate). Returns the bytes
  // of the response as sent: status line, headers and the body's
  // Content-Length (compressed); `body` gets the body decompressed.
  std::size_t get(const std::string& path, std::string* body = nullptr) {
    const auto response = client_.Get(
        path, {{"Authorization", "Bearer " + token_}, {"Accept-Encoding", "gzip, deflate"}});
    if (!response || response->status != 200) {
      throw std::runtime_error(
          "GET " + path + " failed: " +
          (response ? std::to_string(response->status) : httplib::to_string(response.error())));
    }
    std::size_t bytes = std::string("HTTP/1.1 200 OK\r\n\r\n").size();
    for (const auto& [name, value] : response->headers) bytes += name.size() + value.size() + 4;
    const std::string length = response->get_header_value("Content-Length");
    bytes += length.empty() ? response->body.size() : std::stoull(length);
    if (body != nullptr) *body = response->body;
    return bytes;
  }

  json json_of(const std::string& path) {
    std::string body;
    get(path, &body);
    return json::parse(body);
  }

  // One refresh of the page with job `job_id` selected ("": none); returns
  // its bytes. `next_line` is the page's position in the job's output.
  std::size_t refresh(const std::string& job_id, std::int64_t* next_line) {
    std::size_t bytes = get("/api/v1/cluster") + get("/api/v1/jobs?limit=50");
    if (job_id.empty()) return bytes;
    bytes += get("/api/v1/jobs/" + job_id);
    std::string body;
    bytes += get("/api/v1/jobs/" + job_id + "/output?from=" + std::to_string(*next_line), &body);
    const json tail = json::parse(body);
    *next_line = tail.at("first_line").get<std::int64_t>() +
                 static_cast<std::int64_t>(tail.at("lines").size());
    return bytes;
  }

 private:
  httplib::Client client_;
  std::string token_;
};

// ---- Chromium over the DevTools protocol ----------------------------------------

// Headless Chromium driven over --remote-debugging-pipe: it reads commands on
// fd 3 and writes replies and events on fd 4, each a JSON text ended by NUL.
class Browser {
 public:
  explicit Browser(const std::string& profile_dir) {
    int to[2], from[2];
    if (pipe(to) != 0 || pipe(from) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      // Out of the way of 3 and 4 first, then there.
      const int in = fcntl(to[0], F_DUPFD, 10), out = fcntl(from[1], F_DUPFD, 10);
      dup2(in, 3);
      dup2(out, 4);
      const int null = ::open("/dev/null", O_WRONLY);
      dup2(null, STDOUT_FILENO);
      dup2(null, STDERR_FILENO);
      for (int fd : {to[0], to[1], from[0], from[1], in, out, null}) {
        if (fd > 4) close(fd);
      }
      const std::string profile = "--user-data-dir=" + profile_dir;
      std::vector<const char*> argv = {
          kChromium,        "--headless",           "--disable-gpu",
          "--no-first-run", "--disable-extensions", "--remote-debugging-pipe",
          profile.c_str()};
      if (geteuid() == 0) argv.push_back("--no-sandbox");  // its sandbox refuses root
      argv.push_back(nullptr);
      execv(kChromium, const_cast<char* const*>(argv.data()));
      _exit(127);
    }
    close(to[0]);
    close(from[1]);
    write_fd_ = to[1];
    read_fd_ = from[0];
  }
  ~Browser() {
    close(write_fd_);
    close(read_fd_);
    kill(-pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

  json call(const std::string& method, const json& params, const std::string& session = "") {
    const int id = ++next_id_;
    json message = {{"id", id}, {"method", method}, {"params", params}};
    if (!session.empty()) message["sessionId"] = session;
    std::string text = message.dump();
    text.push_back('\0');
    for (std::size_t sent = 0; sent < text.size();) {
      const ssize_t n = write(write_fd_, text.data() + sent, text.size() - sent);
      if (n <= 0) throw std::runtime_error("chromium closed its DevTools pipe");
      sent += static_cast<std::size_t>(n);
    }
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    for (;;) {
      const auto end = buffer_.find('\0');
      if (end == std::string::npos) {
        read_more(deadline);
        continue;
      }
      const json reply = json::parse(buffer_.substr(0, end));
      buffer_.erase(0, end + 1);
      if (reply.value("id", 0) != id) continue;  // an event, or another reply
      if (reply.contains("error")) throw std::runtime_error(method + ": " + reply["error"].dump());
      return reply.at("result");
    }
  }

  // Opens `url` in a new tab; returns the session that talks to it.
  std::string open(const std::string& url) {
    const std::string target = call("Target.createTarget", {{"url", url}}).at("targetId");
    return call("Target.attachToTarget", {{"targetId", target}, {"flatten", true}}).at("sessionId");
  }

  // The value of `expression` in the tab, once it is not "" (within 60 s).
  std::string wait_for(const std::string& session, const std::string& expression) {
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < deadline) {
      const json result =
          call("Runtime.evaluate", {{"expression", expression}, {"returnByValue", true}}, session);
      const json& value = result.at("result");
      if (value.contains("value") && value.at("value").is_string() &&
          !value.at("value").get<std::string>().empty()) {
        return value.at("value");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw std::runtime_error("the page never gave " + expression);
  }

 private:
  void read_more(Clock::time_point deadline) {
    pollfd p{read_fd_, POLLIN, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) {
      throw std::runtime_error("chromium did not answer over its DevTools pipe");
    }
    char chunk[65536];
    const ssize_t n = read(read_fd_, chunk, sizeof chunk);
    if (n <= 0) throw std::runtime_error("chromium closed its DevTools pipe");
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }

  pid_t pid_ = -1;
  int write_fd_ = -1, read_fd_ = -1;
  int next_id_ = 0;
  std::string buffer_;
};

struct Render {
  double first_ms = 0;    // navigation to the first refresh drawn in full
  double script_ms = 0;   // navigation to the page's script starting
  double cold_ms = 0;     // first_ms of the browser's first tab (cold caches)
  double refresh_ms = 0;  // a later refresh: fetches and drawing
  double draw_ms = 0;     // its drawing alone
  int operators = 0;      // operators drawn
};

// The page's own timings (data- attributes of <body>): in a first tab after 3
// refreshes, then in a second tab of the same (now warm) browser.
Render render(const std::string& url, const std::string& profile_dir) {
  Browser browser(profile_dir);
  const auto figure = [&](const std::string& tab, const std::string& name) {
    return std::stod(
        browser.wait_for(tab, "(document.body && document.body.dataset." + name + ") || ''"));
  };
  Render r;
  const std::string cold = browser.open(url);
  r.cold_ms = figure(cold, "firstRenderMs");
  browser.wait_for(cold, "Number((document.body.dataset.refreshes) || 0) >= 3 ? 'yes' : ''");
  r.refresh_ms = figure(cold, "refreshMs");
  r.draw_ms = figure(cold, "drawMs");
  const std::string warm = browser.open(url);
  r.first_ms = figure(warm, "firstRenderMs");
  r.script_ms = figure(warm, "scriptMs");
  r.operators = std::stoi(
      browser.wait_for(warm, "String(document.querySelectorAll('#graph g.operator').length)"));
  return r;
}

std::uint64_t resident_bytes(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  throw std::runtime_error("no VmRSS for process " + std::to_string(pid));
}

struct Row {
  std::string figure;
  std::string unit;
  double sage = 0;
  double baseline = 0;
  std::string baseline_is;
  std::string target;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "--job") return run_job();
  int refreshes = 10'000;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--refreshes" && i + 1 < argc) {
      refreshes = std::stoi(argv[++i]);
    } else if (arg == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--refreshes N] [--json FILE]\n", argv[0]);
      return 2;
    }
  }
  if (access(kChromium, X_OK) != 0) {
    std::fprintf(stderr, "dashboard_bench: %s is not installed (Debian package chromium)\n",
                 kChromium);
    return 1;
  }
  const std::string self = std::filesystem::canonical("/proc/self/exe");
  const LocalCluster cluster;
  const std::string state = cluster.state_dir();
  std::string token;
  std::ifstream(state + "/token") >> token;
  const std::string dashboard = json_field(state + "/head.json", "dashboard");
  const int head_pid = std::stoi(run_command("cat " + state + "/head.pid"));
  Api api(dashboard, token);
  std::vector<Row> rows;

  // Baselines: the idle cluster.
  std::int64_t next_line = 0;
  const double idle_bytes = static_cast<double>(api.refresh("", &next_line));
  const Render idle = render(dashboard + "/#token=" + token, state + "/chromium-idle");

  // The job of 1000 instances, all reporting.
  const std::string submitted = run_command(std::string(SAGE_CLI_BINARY) + " --state-dir " + state +
                                            " job submit " + self + " --job wide");
  std::smatch match;
  if (!std::regex_search(submitted, match, std::regex(R"(submitted (job-\w+))"))) {
    std::fprintf(stderr, "dashboard_bench: the job was not submitted:\n%s", submitted.c_str());
    return 1;
  }
  const std::string job_id = match[1];
  const auto deadline = Clock::now() + std::chrono::minutes(3);
  for (;;) {
    const json job = api.json_of("/api/v1/jobs/" + job_id);
    int running = 0;
    for (const auto& o : job.at("operators")) running += o.at("running_instances").get<int>();
    if (job.at("state") == "RUNNING" && running == 4 * kParallelism) break;
    if (Clock::now() > deadline || job.at("state") == "FAILED") {
      std::fprintf(stderr, "dashboard_bench: the job's 1000 instances did not all run:\n%s\n",
                   job.dump(1).c_str());
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }

  next_line = 0;
  const double first_bytes = static_cast<double>(api.refresh(job_id, &next_line));
  const double steady_bytes = static_cast<double>(api.refresh(job_id, &next_line));
  const Render wide =
      render(dashboard + "/#token=" + token + "&job=" + job_id, state + "/chromium-wide");
  if (wide.operators != 4) {
    std::fprintf(stderr, "dashboard_bench: the page drew %d operators, not 4\n", wide.operators);
    return 1;
  }

  // Memory over many refreshes.
  const int warm_up = std::min(1000, refreshes);
  for (int i = 0; i < warm_up; ++i) api.refresh(job_id, &next_line);
  const double warm_rss = static_cast<double>(resident_bytes(head_pid));
  const auto start = Clock::now();
  for (int i = 0; i < refreshes; ++i) api.refresh(job_id, &next_line);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double after_rss = static_cast<double>(resident_bytes(head_pid));
  run_command(std::string(SAGE_CLI_BINARY) + " --state-dir " + state + " job stop " + job_id);

  rows.push_back({"refresh bytes, 1000 instances (first)", "KB", first_bytes / 1e3,
                  idle_bytes / 1e3, "refresh of the idle cluster", "< 200 KB"});
  rows.push_back({"refresh bytes, 1000 instances (steady)", "KB", steady_bytes / 1e3,
                  idle_bytes / 1e3, "refresh of the idle cluster", "< 200 KB"});
  rows.push_back({"page render, 1000 instances", "ms", wide.first_ms, idle.first_ms,
                  "page of the idle cluster", "< 1000 ms"});
  rows.push_back({"  of which: until its script starts", "ms", wide.script_ms, idle.script_ms,
                  "page of the idle cluster", "-"});
  rows.push_back({"page render, cold browser (first tab)", "ms", wide.cold_ms, idle.cold_ms,
                  "page of the idle cluster", "-"});
  rows.push_back({"later refresh (fetch + draw)", "ms", wide.refresh_ms, idle.refresh_ms,
                  "page of the idle cluster", "< 1000 ms"});
  rows.push_back({"later refresh (draw only)", "ms", wide.draw_ms, idle.draw_ms,
                  "page of the idle cluster", "-"});
  rows.push_back({"head RSS after " + std::to_string(refreshes) + " refreshes", "MiB",
                  after_rss / (1 << 20), warm_rss / (1 << 20),
                  "head RSS after " + std::to_string(warm_up) + " warm-up refreshes", "flat"});
  rows.push_back({"refreshes per second (API only)", "1/s", refreshes / seconds, 0, "-", "-"});

  std::printf("%-42s %-4s %12s %12s %8s  %-10s %s\n", "figure", "unit", "sage", "baseline", "ratio",
              "target", "baseline is");
  for (const auto& r : rows) {
    std::printf("%-42s %-4s %12.4g %12.4g %8.3f  %-10s %s\n", r.figure.c_str(), r.unit.c_str(),
                r.sage, r.baseline, r.baseline > 0 ? r.sage / r.baseline : 0.0, r.target.c_str(),
                r.baseline_is.c_str());
  }
  std::printf(
      "job: 4 chained operators x %d instances on 2 workers; refresh = GET /api/v1/cluster, "
      "/api/v1/jobs?limit=50, /api/v1/jobs/<id>, /api/v1/jobs/<id>/output?from=N with "
      "Accept-Encoding: gzip, deflate (headers + bodies as sent)\n",
      kParallelism);
  if (!json_path.empty()) {
    json figures = json::array();
    for (const auto& r : rows) {
      figures.push_back({{"figure", r.figure},
                         {"unit", r.unit},
                         {"sage", r.sage},
                         {"baseline", r.baseline},
                         {"baseline_is", r.baseline_is},
                         {"target", r.target}});
    }
    std::ofstream(json_path) << json{{"bench", "dashboard_bench"}, {"figures", figures}}.dump(1)
                             << "\n";
  }
  return 0;
}
