// The dashboard page in a real browser (headless Chromium) against a real
// cluster (a head and two workers) running a job with a slow operator and a
// skewed key_by: the page shows the nodes, the job, its operators with their
// parallelism, colours the slow one as the bottleneck and flags the skew. A
// screenshot is kept under the build tree (test-artifacts/dashboard.png).
#include <httplib.h>

#include <filesystem>
#include <regex>

#include "integration/cluster_fixture.hpp"
#include "support/headless_chromium.hpp"

namespace sage::testing {
namespace {

// How much of the page's (virtual) time a browser run lets pass: enough for
// a few refreshes after the first.
constexpr int kPageTimeMs = 4000;

class DashboardPageTest : public ClusterTest {
 protected:
  void SetUp() override {
    if (!chromium_installed()) {
      GTEST_SKIP() << kChromium
                   << " is not installed (Debian package chromium): the dashboard page is not "
                      "tested in a browser";
    }
    ClusterTest::SetUp();
  }

  std::string token() const {
    std::ifstream file(state_dir_ + "/token");
    std::string token;
    file >> token;
    return token;
  }

  nlohmann::json api(const std::string& path) {
    httplib::Client client(head_field("dashboard"));
    const auto response = client.Get(path, {{"Authorization", "Bearer " + token()}});
    if (!response || response->status != 200) return nullptr;
    return nlohmann::json::parse(response->body);
  }

  // The page's DOM after kPageTimeMs, from a fresh browser profile.
  std::string page_dom(const std::string& fragment) {
    const std::string profile = state_dir_ + "/chromium-" + std::to_string(++runs_);
    const ChromiumRun run =
        run_chromium(head_field("dashboard") + "/" + fragment, "--dump-dom", profile, kPageTimeMs);
    EXPECT_TRUE(run.finished) << "chromium did not end within its deadline";
    return run.output;
  }

  int runs_ = 0;
};

// The start tag of the first `element` with `attribute`="value", or "".
std::string tag_with(const std::string& dom, const std::string& element,
                     const std::string& attribute, const std::string& value) {
  std::smatch match;
  const std::regex tag("<" + element + " [^>]*" + attribute + "=\"" + value + "\"[^>]*>");
  return std::regex_search(dom, match, tag) ? match.str() : "";
}

TEST_F(DashboardPageTest, ShowsTheJobGraphNodesBottleneckAndSkewInABrowser) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  const std::string id = submit_endless("diagnosable");
  // The head sees both problems before the browser looks.
  nlohmann::json job;
  ASSERT_TRUE(eventually(
      [&] {
        job = api("/api/v1/jobs/" + id);
        if (job.is_null()) return false;
        bool bottleneck = false, skew = false;
        for (const auto& f : job.at("diagnosis")) {
          bottleneck = bottleneck || (f.at("kind") == "bottleneck" && f.at("operator") == "slow");
          skew = skew || (f.at("kind") == "skew" && f.at("operator") == "skewed");
        }
        return bottleneck && skew;
      },
      60s))
      << "the head did not find the bottleneck at 'slow' and the skew at 'skewed':\n"
      << job.dump(2);
  // `sage job status --format json` has the same findings (skew stays: it counts all records).
  const nlohmann::json status = job_json(id);
  ASSERT_TRUE(status.contains("diagnosis")) << status.dump(1);
  EXPECT_NE(status.at("diagnosis").dump().find("\"kind\":\"skew\""), std::string::npos)
      << status.dump(1);
  ASSERT_FALSE(job.at("processes").empty()) << job.dump(2);
  EXPECT_GT(job.at("processes")[0].at("resident_bytes").get<std::uint64_t>(), 0u)
      << "task processes report their resident memory";

  // The page with the token in the fragment, as `sage dashboard` prints it.
  const Outcome url = cli({"dashboard"});
  ASSERT_EQ(url.code, 0) << url.output;
  const std::string fragment = url.output.substr(url.output.find('#'));
  std::string dom;
  ASSERT_TRUE(eventually(
      [&] {
        dom = page_dom(fragment.substr(0, fragment.find('\n')));
        return dom.find("data-finding=\"skew\"") != std::string::npos &&
               tag_with(dom, "g", "data-operator", "slow").find("bottleneck") != std::string::npos;
      },
      240s))
      << "the page did not show the bottleneck and the skew:\n"
      << dom;

  for (const std::string node : {"head", "w1", "w2"}) {
    EXPECT_NE(tag_with(dom, "tr", "data-node", node), "")
        << "node " << node << " is not on the page";
  }
  const std::string row = tag_with(dom, "tr", "data-job", id);
  EXPECT_NE(row.find("data-state=\"RUNNING\""), std::string::npos) << row;
  for (const auto& [name, parallelism] : {std::pair{"endless", 1}, std::pair{"slow", 2},
                                          std::pair{"skewed", 3}, std::pair{"discard", 3}}) {
    const std::string box = tag_with(dom, "g", "data-operator", name);
    EXPECT_NE(box.find("data-parallelism=\"" + std::to_string(parallelism) + "\""),
              std::string::npos)
        << name << ": " << box;
  }
  const std::string slow = tag_with(dom, "g", "data-operator", "slow");
  EXPECT_NE(slow.find("data-status=\"bottleneck\""), std::string::npos) << slow;
  EXPECT_NE(slow.find("class=\"operator bottleneck"), std::string::npos)
      << "the bottleneck is drawn as one: " << slow;
  EXPECT_NE(tag_with(dom, "g", "data-operator", "endless").find("data-status=\"backpressured\""),
            std::string::npos)
      << tag_with(dom, "g", "data-operator", "endless");
  EXPECT_NE(tag_with(dom, "g", "data-operator", "skewed").find("data-findings=\"skew\""),
            std::string::npos)
      << tag_with(dom, "g", "data-operator", "skewed");
  const std::string skew = tag_with(dom, "li", "data-finding", "skew");
  EXPECT_NE(skew.find("data-operator=\"skewed\""), std::string::npos) << skew;
  EXPECT_NE(dom.find("key_by"), std::string::npos) << "the skew finding says what to do";
  EXPECT_NE(tag_with(dom, "g", "data-edge", "0-1").find("data-partitioning=\"rebalance\""),
            std::string::npos);
  EXPECT_NE(dom.find("discard: 5000 records"), std::string::npos)
      << "the job's output is on the page";

  // A screenshot for people (and the docs), under the build tree.
  std::filesystem::create_directories(SAGE_TEST_ARTIFACTS_DIR);
  const std::string png = std::string(SAGE_TEST_ARTIFACTS_DIR) + "/dashboard.png";
  std::filesystem::remove(png);
  const ChromiumRun shot =
      run_chromium(head_field("dashboard") + "/" + fragment.substr(0, fragment.find('\n')),
                   "--screenshot=" + png + " --window-size=1400,1700",
                   state_dir_ + "/chromium-shot", kPageTimeMs);
  EXPECT_TRUE(shot.finished);
  ASSERT_TRUE(std::filesystem::exists(png)) << shot.output;
  EXPECT_GT(std::filesystem::file_size(png), 20'000u) << "an empty screenshot?";
  std::cout << "screenshot of the dashboard: " << png << std::endl;
  EXPECT_EQ(cli({"job", "stop", id}).code, 0);
}

TEST_F(DashboardPageTest, WithoutTheTokenThePageSaysHowToOpenItAndShowsNoData) {
  ASSERT_NO_FATAL_FAILURE(start_head());
  const std::string id = submit_endless("unbounded");
  for (const char* fragment : {"", "#token=not-the-token"}) {
    const std::string dom = page_dom(fragment);
    EXPECT_NE(dom.find("sage dashboard"), std::string::npos) << "fragment '" << fragment << "':\n"
                                                             << dom;
    EXPECT_EQ(dom.find(id), std::string::npos) << "the page shows a job without the token";
    EXPECT_EQ(tag_with(dom, "tr", "data-node", "head"), "")
        << "the page shows nodes without the token";
  }
  EXPECT_EQ(cli({"job", "stop", id}).code, 0);
}

}  // namespace
}  // namespace sage::testing
