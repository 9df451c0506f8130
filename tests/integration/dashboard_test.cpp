// The head's dashboard against a real cluster: the token guards every API
// path, /metrics carries a cluster job's own metrics in a form promtool
// accepts, and /api/v1 shows a running job's graph.
#include <httplib.h>

#include <regex>

#include "integration/cluster_fixture.hpp"
#include "support/test_certificates.hpp"

namespace sage::testing {
namespace {

class DashboardTest : public ClusterTest {
 protected:
  std::string token() const {
    std::ifstream file(state_dir_ + "/token");
    std::string token;
    file >> token;
    return token;
  }

  httplib::Result get(const std::string& path, const std::string& token) {
    httplib::Client client(head_field("dashboard"));
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    return client.Get(path, headers);
  }

  // The body of a GET with the token; "" after a failed test assertion.
  std::string fetch(const std::string& path) {
    const auto response = get(path, token());
    EXPECT_TRUE(response) << path;
    if (!response) return "";
    EXPECT_EQ(response->status, 200) << path << ": " << response->body;
    return response->body;
  }
};

TEST_F(DashboardTest, ServesMetricsAndTheJobGraphToHoldersOfTheTokenOnly) {
  ASSERT_NO_FATAL_FAILURE(start_head());
  const Outcome measured = cli({"job", "submit", SAGE_CLUSTER_JOB_BINARY, "metrics"});
  ASSERT_EQ(measured.code, 0) << measured.output;
  std::smatch match;
  ASSERT_TRUE(std::regex_search(measured.output, match, std::regex(R"(job (job-\w+): seen 100)")))
      << measured.output;
  const std::string measured_id = match[1];
  const std::string running_id = submit_endless("unbounded");

  for (const std::string& path :
       {std::string("/metrics"), std::string("/api/v1/cluster"), std::string("/api/v1/jobs"),
        "/api/v1/jobs/" + running_id, "/api/v1/jobs/" + measured_id,
        std::string("/api/v1/jobs/job-unknown")}) {
    for (const std::string& token : {std::string(), std::string("not-the-token")}) {
      const auto response = get(path, token);
      ASSERT_TRUE(response) << path;
      EXPECT_EQ(response->status, 401) << path << " answered without the token";
    }
  }

  // The user metrics of the job that finished, per instance of "measured".
  const std::string metrics = fetch("/metrics");
  const std::regex seen("sage_user_seen_total\\{job=\"" + measured_id +
                        "\",operator=\"measured\",instance=\"[01]\",node=\"head\"\\} \\d+");
  EXPECT_TRUE(std::regex_search(metrics, seen)) << metrics;
  EXPECT_NE(metrics.find("sage_user_value_count{job=\"" + measured_id), std::string::npos);
  EXPECT_NE(metrics.find("sage_node_cpus_free{node=\"head\"}"), std::string::npos);
  if (shell("command -v promtool").code != 0) {
    GTEST_SKIP() << "promtool is not installed (Debian package prometheus): /metrics is not "
                    "checked with `promtool check metrics`";
  }
  const std::string file = state_dir_ + "/metrics.txt";
  std::ofstream(file) << metrics;
  const Outcome check = shell("promtool check metrics < " + file);
  EXPECT_EQ(check.code, 0) << check.output;
}

TEST_F(DashboardTest, TheApiShowsARunningJobWithItsOperatorsAndParallelism) {
  ASSERT_NO_FATAL_FAILURE(start_head());
  const std::string id = submit_endless("unbounded");
  nlohmann::json job;
  ASSERT_TRUE(eventually(
      [&] {
        job = nlohmann::json::parse(fetch("/api/v1/jobs/" + id));
        return job.at("state") == "RUNNING" && job.at("operators").size() == 3 &&
               job.at("operators")[1].at("records_in").get<std::uint64_t>() > 0;
      },
      30s))
      << job.dump(2);
  const auto& operators = job.at("operators");
  EXPECT_EQ(operators[0].at("name"), "endless");
  EXPECT_EQ(operators[0].at("parallelism"), 1);
  EXPECT_EQ(operators[1].at("name"), "announce");
  EXPECT_EQ(operators[1].at("parallelism"), 3);
  EXPECT_EQ(operators[2].at("name"), "discard");
  EXPECT_EQ(operators[2].at("parallelism"), 3);
  ASSERT_EQ(job.at("edges").size(), 2u) << job.dump(2);
  EXPECT_EQ(job.at("edges")[0].at("partitioning"), "rebalance");
  EXPECT_EQ(job.at("edges")[1].at("partitioning"), "forward");
  EXPECT_FALSE(job.contains("instances"));
  EXPECT_EQ(
      nlohmann::json::parse(fetch("/api/v1/jobs/" + id + "?instances=1")).at("instances").size(),
      7u);

  const auto cluster = nlohmann::json::parse(fetch("/api/v1/cluster"));
  EXPECT_EQ(cluster.at("nodes")[0].at("id"), "head");
  EXPECT_EQ(cluster.at("jobs")[0].at("id"), id);
  const auto jobs = nlohmann::json::parse(fetch("/api/v1/jobs?limit=1"));
  EXPECT_EQ(jobs.at("total"), 1);
  EXPECT_EQ(jobs.at("jobs")[0].at("id"), id);

  const Outcome unknown = [&] {
    const auto response = get("/api/v1/jobs/job-unknown", token());
    return Outcome{response ? response->status : -1, response ? response->body : ""};
  }();
  EXPECT_EQ(unknown.code, 404);
  EXPECT_NE(unknown.output.find("no job 'job-unknown'"), std::string::npos) << unknown.output;

  const Outcome url = cli({"dashboard"});
  EXPECT_EQ(url.code, 0);
  EXPECT_EQ(url.output, head_field("dashboard") + "/#token=" + token() + "\n");
  EXPECT_EQ(cli({"job", "stop", id}).code, 0);
}

TEST_F(DashboardTest, ATaskProcessNearItsMemoryLimitIsFlaggedAndItsMemoryIsAMetric) {
  ASSERT_NO_FATAL_FAILURE(start_head());
  const std::string id = submit_endless("near-memory-limit");
  nlohmann::json job;
  ASSERT_TRUE(eventually(
      [&] {
        job = nlohmann::json::parse(fetch("/api/v1/jobs/" + id));
        for (const auto& f : job.at("diagnosis")) {
          if (f.at("kind") == "memory") return true;
        }
        return false;
      },
      60s))
      << "no memory finding for a process at about 95% of its limit:\n"
      << job.dump(2);
  ASSERT_EQ(job.at("processes").size(), 1u) << job.dump(2);
  const auto& process = job.at("processes")[0];
  EXPECT_EQ(process.at("memory_limit_bytes"), 256u << 20);
  EXPECT_GE(process.at("resident_bytes").get<std::uint64_t>(), 228u << 20);
  const std::string status = cli({"job", "status", id}).output;
  EXPECT_NE(status.find("memory:"), std::string::npos) << status;
  EXPECT_NE(status.find("hoard[0/1]"), std::string::npos) << status;
  EXPECT_NE(status.find("of its 256 MiB limit"), std::string::npos) << status;
  const std::string metrics = fetch("/metrics");
  EXPECT_TRUE(std::regex_search(metrics, std::regex("sage_process_resident_memory_bytes\\{job=\"" +
                                                    id + "\",process=\"0\",node=\"head\"\\} \\d+")))
      << metrics;
  EXPECT_NE(metrics.find("sage_process_memory_limit_bytes{job=\"" + id +
                         "\",process=\"0\",node=\"head\"} 268435456"),
            std::string::npos);
  EXPECT_EQ(cli({"job", "stop", id}).code, 0);
}

TEST_F(DashboardTest, WithTlsItIsHttpsWithTheHeadsCertificate) {
  const std::string tls_dir = state_dir_ + "/tls";
  std::filesystem::create_directory(tls_dir);
  const net::TlsFiles tls = write_test_certificates(tls_dir);
  ASSERT_NO_FATAL_FAILURE(
      start_head({"--tls-cert", tls.cert, "--tls-key", tls.key, "--tls-ca", tls.ca}));
  const std::string url = head_field("dashboard");
  ASSERT_TRUE(url.starts_with("https://")) << url;

  httplib::Client client(url);
  client.set_ca_cert_path(tls.ca.c_str());
  client.enable_server_certificate_verification(true);
  const auto with_token = client.Get("/api/v1/cluster", {{"Authorization", "Bearer " + token()}});
  ASSERT_TRUE(with_token) << httplib::to_string(with_token.error());
  EXPECT_EQ(with_token->status, 200) << with_token->body;
  const auto without = client.Get("/api/v1/cluster");
  ASSERT_TRUE(without);
  EXPECT_EQ(without->status, 401);

  httplib::Client plain("http://" + url.substr(std::string("https://").size()));
  EXPECT_FALSE(plain.Get("/api/v1/cluster", {{"Authorization", "Bearer " + token()}}))
      << "the dashboard of a TLS cluster answered plain HTTP";
}

}  // namespace
}  // namespace sage::testing
