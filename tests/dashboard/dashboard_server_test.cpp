#include "dashboard/dashboard_server.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "dashboard/api.hpp"
#include "dashboard/fixtures.hpp"
#include "sage/error.hpp"

namespace sage::dashboard {
namespace {

using nlohmann::json;

constexpr const char* kToken = "0123456789abcdef0123456789abcdef";

class FixedView final : public ClusterView {
 public:
  FixedView() {
    for (int j = 0; j < 3; ++j) {
      rpc::JobInfo job = testing::running_job(1000);
      job.set_job_id("job-" + std::to_string(j));
      for (int i = 0; i < 4; ++i) testing::add_instance(job, 1, "work", i, 10);
      jobs_.push_back(job);
    }
  }
  rpc::ClusterInfo cluster() const override {
    rpc::ClusterInfo info;
    info.add_nodes()->set_node_id("head");
    return info;
  }
  std::vector<rpc::JobInfo> job_summaries() const override {
    auto summaries = jobs_;
    for (auto& job : summaries) job.clear_instances();
    return summaries;
  }
  std::vector<rpc::JobInfo> jobs(std::int64_t) const override { return jobs_; }
  std::optional<rpc::JobInfo> job(const std::string& id) const override {
    for (const auto& job : jobs_) {
      if (job.job_id() == id) return job;
    }
    return std::nullopt;
  }
  // Job "job-0" wrote lines "line 0" to "line 249", the last one 5000 bytes long.
  std::optional<OutputTail> output(const std::string& id, std::int64_t from_line,
                                   std::int64_t max_lines) const override {
    if (!job(id)) return std::nullopt;
    OutputTail tail;
    tail.line_count = id == "job-0" ? 250 : 0;
    tail.first_line = std::max(from_line, tail.line_count - max_lines);
    for (std::int64_t i = tail.first_line; i < tail.line_count; ++i) {
      tail.lines.push_back(i == 249 ? std::string(5000, 'x') : "line " + std::to_string(i));
    }
    return tail;
  }

 private:
  std::vector<rpc::JobInfo> jobs_;
};

class DashboardServerTest : public ::testing::Test {
 protected:
  httplib::Result get(const std::string& path, const std::string& token = kToken) {
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    return client_.Get(path, headers);
  }

  FixedView view_;
  DashboardServer server_{DashboardOptions{"127.0.0.1", 0, kToken}, view_};
  httplib::Client client_{"127.0.0.1", server_.port()};
};

TEST_F(DashboardServerTest, EveryPathButThePageNeedsTheToken) {
  for (const std::string path :
       {"/metrics", "/api/v1/cluster", "/api/v1/jobs", "/api/v1/jobs/job-1", "/api/v1/jobs/nope",
        "/api/v1/jobs/job-0/output", "/api/v1/else", "/anything", "/app.js/x"}) {
    for (const std::string& token :
         {std::string(), std::string("wrong"), kToken + std::string("x")}) {
      const auto response = get(path, token);
      ASSERT_TRUE(response) << path;
      EXPECT_EQ(response->status, 401) << path << " with token '" << token << "'";
      EXPECT_NE(json::parse(response->body).value("error", "").find("Authorization: Bearer"),
                std::string::npos)
          << response->body;
    }
    EXPECT_NE(get(path)->status, 401) << path;
  }
  for (const std::string path : {"/", "/app.js", "/app.css"}) {
    const auto file = get(path, "");
    ASSERT_TRUE(file) << path;
    EXPECT_EQ(file->status, 200) << path;
    EXPECT_FALSE(file->body.empty()) << path;
    EXPECT_NE(file->get_header_value("Content-Security-Policy").find("default-src 'none'"),
              std::string::npos)
        << path;
  }
}

TEST_F(DashboardServerTest, ThePageLoadsOnlyItsOwnFilesAndReadsTheTokenFromTheFragment) {
  const std::string html = get("/", "")->body;
  EXPECT_NE(html.find("<script src=\"app.js\""), std::string::npos) << html;
  EXPECT_EQ(html.find("http://"), std::string::npos) << "the page loads something from elsewhere";
  EXPECT_EQ(html.find("https://"), std::string::npos) << "the page loads something from elsewhere";
  const std::string script = get("/app.js", "")->body;
  EXPECT_NE(script.find("location.hash"), std::string::npos);
  EXPECT_NE(script.find("'Bearer '"), std::string::npos);
  EXPECT_EQ(get("/app.js", "")->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
}

TEST_F(DashboardServerTest, TheOutputIsTheLastLinesCutToTheirLimit) {
  const json tail = json::parse(get("/api/v1/jobs/job-0/output")->body);
  EXPECT_EQ(tail.at("line_count"), 250);
  EXPECT_EQ(tail.at("first_line"), 150);
  ASSERT_EQ(tail.at("lines").size(), 100u);
  EXPECT_EQ(tail.at("lines")[0], "line 150");
  EXPECT_EQ(tail.at("lines")[99].get<std::string>().size(), kMaxOutputLineBytes + 3)
      << "a long line is cut and ends in an ellipsis";

  const json since = json::parse(get("/api/v1/jobs/job-0/output?from=240&lines=5")->body);
  EXPECT_EQ(since.at("first_line"), 245);
  EXPECT_EQ(since.at("lines").size(), 5u);
  const json none_new = json::parse(get("/api/v1/jobs/job-0/output?from=250")->body);
  EXPECT_EQ(none_new.at("lines").size(), 0u);
  EXPECT_EQ(get("/api/v1/jobs/job-0/output?lines=1001")->status, 400);
  EXPECT_EQ(get("/api/v1/jobs/job-9/output")->status, 404);
}

TEST_F(DashboardServerTest, JobsArePagedAndAJobHasItsGraphAndInstancesOnlyOnRequest) {
  const json page = json::parse(get("/api/v1/jobs?offset=1&limit=1")->body);
  EXPECT_EQ(page.at("total"), 3);
  ASSERT_EQ(page.at("jobs").size(), 1u);
  EXPECT_EQ(page.at("jobs")[0].at("id"), "job-1");
  EXPECT_EQ(get("/api/v1/jobs?limit=100000")->status, 400);
  EXPECT_EQ(get("/api/v1/jobs?offset=-1")->status, 400);

  const json job = json::parse(get("/api/v1/jobs/job-2")->body);
  ASSERT_EQ(job.at("operators").size(), 2u);
  EXPECT_EQ(job.at("operators")[1].at("name"), "work");
  EXPECT_EQ(job.at("operators")[1].at("parallelism"), 4);
  EXPECT_EQ(job.at("operators")[1].at("records_in"), 40);
  EXPECT_EQ(job.at("edges")[0].at("partitioning"), "hash");
  EXPECT_FALSE(job.contains("instances"));
  const json detailed = json::parse(get("/api/v1/jobs/job-2?instances=1")->body);
  EXPECT_EQ(detailed.at("instances").size(), 4u);
}

TEST_F(DashboardServerTest, AnUnknownJobIs404Json) {
  for (const std::string path : {"/api/v1/jobs/job-9", "/api/v1/jobs/..%2F..%2Fetc%2Fpasswd"}) {
    const auto response = get(path);
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 404) << path;
    EXPECT_TRUE(json::parse(response->body).contains("error")) << response->body;
  }
}

TEST_F(DashboardServerTest, OnlyReadingIsAllowedAndParametersAreChecked) {
  const httplib::Headers with_token{{"Authorization", std::string("Bearer ") + kToken}};
  for (const auto& response : {client_.Post("/api/v1/jobs", with_token, "{}", "application/json"),
                               client_.Delete("/api/v1/jobs/job-1", with_token),
                               client_.Put("/metrics", with_token, "x", "text/plain")}) {
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 405) << response->body;
    EXPECT_EQ(response->get_header_value("Allow"), "GET, HEAD");
    EXPECT_NE(json::parse(response->body).value("error", "").find("the dashboard only reads"),
              std::string::npos)
        << response->body;
  }
  const auto stranger = client_.Delete("/api/v1/jobs/job-1");  // no token: 401 first
  ASSERT_TRUE(stranger);
  EXPECT_EQ(stranger->status, 401);
  for (const std::string path :
       {"/api/v1/jobs/job-1?instances=abc", "/api/v1/jobs/job-1?operator=x"}) {
    const auto response = get(path);
    ASSERT_TRUE(response) << path;
    EXPECT_EQ(response->status, 400) << path << ": " << response->body;
  }
}

// A plain TCP connection to the dashboard, for what no HTTP client sends.
class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  ~RawConnection() { close(fd_); }
  bool connected() const { return connected_; }
  bool send_text(const std::string& text) {
    return ::send(fd_, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size());
  }
  // Everything until the dashboard closes the connection.
  std::string read_all() {
    std::string all;
    char buffer[4096];
    for (ssize_t n; (n = recv(fd_, buffer, sizeof buffer, 0)) > 0;) all.append(buffer, n);
    return all;
  }

 private:
  int fd_;
  bool connected_ = false;
};

// cpp-httplib alone buffers a request line until it ends, however long: the
// front door answers 431 once the head passes 16 KiB, without the token.
TEST_F(DashboardServerTest, AnEndlessRequestHeadIsCutAt16KiB) {
  RawConnection stranger(server_.port());
  ASSERT_TRUE(stranger.connected());
  ASSERT_TRUE(stranger.send_text("GET /" + std::string(20 << 10, 'a')));
  const std::string answer = stranger.read_all();
  EXPECT_EQ(answer.find("HTTP/1.1 431 "), 0u) << answer.substr(0, 200);
  EXPECT_NE(answer.find("the request's head is over 16 KiB"), std::string::npos) << answer;

  RawConnection chunked(server_.port());
  ASSERT_TRUE(
      chunked.send_text("POST /api/v1/jobs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"));
  EXPECT_EQ(chunked.read_all().find("HTTP/1.1 411 "), 0u);
  RawConnection huge(server_.port());
  ASSERT_TRUE(huge.send_text("POST /api/v1/jobs HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n"));
  EXPECT_EQ(huge.read_all().find("HTTP/1.1 413 "), 0u);
}

// Connections that never finish their request head do not hold the requests
// of others: cpp-httplib's 4 threads would each wait out its read timeout.
TEST_F(DashboardServerTest, SlowStrangersDoNotHoldUpOthers) {
  std::vector<std::unique_ptr<RawConnection>> slow;
  for (int i = 0; i < 12; ++i) {
    slow.push_back(std::make_unique<RawConnection>(server_.port()));
    ASSERT_TRUE(slow.back()->send_text("GET /api/v1/cluster HTTP/1.1\r\nHost: x\r\n"));
  }
  client_.set_read_timeout(3, 0);  // far below cpp-httplib's own 5 s read timeout
  const auto response = get("/api/v1/cluster");
  ASSERT_TRUE(response) << httplib::to_string(response.error());
  EXPECT_EQ(response->status, 200) << response->body;
}

TEST_F(DashboardServerTest, ATakenPortIsOneLineNamingTheFlag) {
  try {
    DashboardServer second(DashboardOptions{"127.0.0.1", server_.port(), kToken}, view_);
    FAIL() << "a second server listens on the same port";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--dashboard-port"), std::string::npos) << e.what();
  }
}

// One running job of 1000 instances (4 operators of 250) on 2 processes.
class WideView final : public ClusterView {
 public:
  rpc::ClusterInfo cluster() const override {
    rpc::ClusterInfo info;
    for (int n = 0; n < 2; ++n) info.add_nodes()->set_node_id("node-" + std::to_string(n));
    *info.add_running_jobs() = job_summaries()[0];
    return info;
  }
  std::vector<rpc::JobInfo> job_summaries() const override {
    rpc::JobInfo summary = job_;
    summary.clear_instances();
    summary.clear_processes();
    return {summary};
  }
  std::vector<rpc::JobInfo> jobs(std::int64_t) const override { return {job_}; }
  std::optional<rpc::JobInfo> job(const std::string&) const override { return job_; }
  std::optional<OutputTail> output(const std::string&, std::int64_t, std::int64_t) const override {
    return OutputTail{};
  }

 private:
  rpc::JobInfo job_ = testing::wide_job(4, 250, 2, 1'000'000);
};

// What one refresh of the page costs is bounded by the job's operators, not
// its instances; the instances come only when asked, one operator at a time.
TEST(DashboardCost, ARefreshOfAThousandInstanceJobIsUnder200KilobytesWithoutCompression) {
  WideView view;
  DashboardServer server(DashboardOptions{"127.0.0.1", 0, kToken}, view);
  httplib::Client client("127.0.0.1", server.port());
  std::size_t refresh_bytes = 0;
  for (const std::string path : {"/api/v1/cluster", "/api/v1/jobs?limit=50",
                                 "/api/v1/jobs/job-wide", "/api/v1/jobs/job-wide/output?from=0"}) {
    const auto response = client.Get(path, {{"Authorization", std::string("Bearer ") + kToken}});
    ASSERT_TRUE(response) << path;
    ASSERT_EQ(response->status, 200) << path;
    refresh_bytes += response->body.size();
  }
  EXPECT_LT(refresh_bytes, 200'000u);
  EXPECT_LT(refresh_bytes, 20'000u) << "the job's document grew with its instances";

  const auto one = client.Get("/api/v1/jobs/job-wide?instances=1&operator=2",
                              {{"Authorization", std::string("Bearer ") + kToken}});
  ASSERT_TRUE(one);
  const json detailed = json::parse(one->body);
  ASSERT_EQ(detailed.at("instances").size(), 250u);
  for (const auto& s : detailed.at("instances")) EXPECT_EQ(s.at("operator"), "op2");
  EXPECT_EQ(client
                .Get("/api/v1/jobs/job-wide?instances=1&operator=x",
                     {{"Authorization", std::string("Bearer ") + kToken}})
                ->status,
            400);
}

}  // namespace
}  // namespace sage::dashboard
