#include "dashboard/diagnosis.hpp"

#include <gtest/gtest.h>

#include "dashboard/fixtures.hpp"

namespace sage::dashboard {
namespace {

using testing::add_instance;
using testing::running_job;

constexpr std::int64_t kStart = 1'000'000;

TEST(Diagnosis, AnEvenJobHasNoFindings) {
  rpc::JobInfo job = running_job(kStart);
  add_instance(job, 0, "source", 0, 400);
  for (int i = 0; i < 4; ++i) add_instance(job, 1, "work", i, 100);
  EXPECT_TRUE(diagnose(job, kStart + 1000).empty());
}

TEST(Diagnosis, TheBusiestInstanceAboveTwiceTheMeanIsSkewWithTheKeyByHint) {
  rpc::JobInfo job = running_job(kStart);
  add_instance(job, 0, "source", 0, 1000);
  add_instance(job, 1, "work", 0, 700);
  for (int i = 1; i < 4; ++i) add_instance(job, 1, "work", i, 100);
  const auto findings = diagnose(job, kStart + 1000);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, "skew");
  EXPECT_EQ(findings[0].operator_name, "work");
  EXPECT_EQ(findings[0].operator_id, 1);
  EXPECT_NE(findings[0].message.find("instance 0 received 700 records, 2.8x the mean"),
            std::string::npos)
      << findings[0].message;
  EXPECT_NE(findings[0].message.find("key_by"), std::string::npos) << findings[0].message;
}

TEST(Diagnosis, ExactlyTwiceTheMeanOrTooFewRecordsIsNotSkew) {
  rpc::JobInfo twice = running_job(kStart);
  add_instance(twice, 1, "work", 0, 200);  // mean 100 over 4 instances
  add_instance(twice, 1, "work", 1, 200);
  for (int i = 2; i < 4; ++i) add_instance(twice, 1, "work", i, 0);
  EXPECT_TRUE(diagnose(twice, kStart).empty());

  rpc::JobInfo few = running_job(kStart);
  add_instance(few, 1, "work", 0, 90);  // 90 records in all: too few to judge
  for (int i = 1; i < 4; ++i) add_instance(few, 1, "work", i, 0);
  EXPECT_TRUE(diagnose(few, kStart).empty());
}

TEST(Diagnosis, ACalmOperatorWhoseUpstreamIsBackpressuredIsTheBottleneck) {
  rpc::JobInfo job = running_job(kStart);
  add_instance(job, 0, "source", 0, 400, /*backpressure=*/0.9);
  for (int i = 0; i < 4; ++i) add_instance(job, 1, "work", i, 100, 0.0);
  const auto findings = diagnose(job, kStart + 1000);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, "bottleneck");
  EXPECT_EQ(findings[0].operator_name, "work");
  EXPECT_NE(findings[0].message.find("'source' upstream waits 90%"), std::string::npos)
      << findings[0].message;
}

TEST(Diagnosis, BackpressureThatGoesOnDownstreamIsNotThisOperatorsBottleneck) {
  rpc::JobInfo job = running_job(kStart);
  add_instance(job, 0, "source", 0, 400, 0.9);
  for (int i = 0; i < 4; ++i) add_instance(job, 1, "work", i, 100, 0.6);
  EXPECT_TRUE(diagnose(job, kStart).empty());
}

TEST(Diagnosis, ARunningJobWithoutProgressForAWhileIsStuck) {
  rpc::JobInfo job = running_job(kStart);
  add_instance(job, 0, "source", 0, 400);
  const std::int64_t stuck_at = kStart + std::chrono::milliseconds(kStuckAfter).count();
  EXPECT_TRUE(diagnose(job, stuck_at - 1).empty());
  const auto findings = diagnose(job, stuck_at);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, "stuck");
  EXPECT_EQ(findings[0].operator_id, -1);
  EXPECT_NE(findings[0].message.find("sage job logs job-1"), std::string::npos);

  job.set_state(rpc::JobInfo::FINISHED);  // an ended job is not stuck, nor a bottleneck
  EXPECT_TRUE(diagnose(job, stuck_at).empty());
}

}  // namespace
}  // namespace sage::dashboard
