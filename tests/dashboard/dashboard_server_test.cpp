#include "dashboard/dashboard_server.hpp"

#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>

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
  std::vector<rpc::JobInfo> jobs() const override { return jobs_; }
  std::optional<rpc::JobInfo> job(const std::string& id) const override {
    for (const auto& job : jobs_) {
      if (job.job_id() == id) return job;
    }
    return std::nullopt;
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
        "/api/v1/else", "/anything"}) {
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
  const auto page = get("/", "");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
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

TEST_F(DashboardServerTest, ATakenPortIsOneLineNamingTheFlag) {
  try {
    DashboardServer second(DashboardOptions{"127.0.0.1", server_.port(), kToken}, view_);
    FAIL() << "a second server listens on the same port";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--dashboard-port"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sage::dashboard
