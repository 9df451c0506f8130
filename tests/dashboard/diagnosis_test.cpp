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

// Task process `index` of `job` on "head" with pid 100 + index.
rpc::ProcessStats& add_process(rpc::JobInfo& job, int index, std::uint64_t resident_bytes,
                               std::uint64_t limit_bytes) {
  auto* p = job.add_processes();
  p->set_process_index(index);
  p->set_node_id("head");
  p->set_pid(100 + index);
  p->set_resident_bytes(resident_bytes);
  p->set_memory_limit_bytes(limit_bytes);
  return *p;
}

TEST(Diagnosis, AProcessAtNinetyPercentOfItsMemoryLimitIsFlaggedWithItsOperator) {
  constexpr std::uint64_t kMiB = 1 << 20;
  rpc::JobInfo job = running_job(kStart);
  add_instance(job, 0, "source", 0, 400).set_process_id(100);
  for (int i = 0; i < 4; ++i) add_instance(job, 1, "work", i, 100).set_process_id(101);
  add_process(job, 0, 899 * kMiB, 1000 * kMiB).add_instances("source[0/1]");
  auto& work = add_process(job, 1, 900 * kMiB, 1000 * kMiB);
  for (int i = 0; i < 4; ++i) work.add_instances("work[" + std::to_string(i) + "/4]");
  add_process(job, 2, 5000 * kMiB, 0);  // no memory declared: no limit

  const auto findings = diagnose(job, kStart + 1000);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].kind, "memory");
  EXPECT_EQ(findings[0].operator_name, "work");
  EXPECT_EQ(findings[0].operator_id, 1);
  EXPECT_EQ(findings[0].process_index, 1);
  EXPECT_NE(findings[0].message.find("task process 1 on node 'head' (work[0/4], work[1/4], "
                                     "work[2/4], work[3/4]) uses 900 MiB, 90% of its 1000 MiB"),
            std::string::npos)
      << findings[0].message;
  EXPECT_NE(findings[0].message.find("resources.memory"), std::string::npos);
  EXPECT_EQ(findings_document(findings)[0].at("process"), 1);

  job.set_state(rpc::JobInfo::FINISHED);
  EXPECT_TRUE(diagnose(job, kStart + 1000).empty());
}

TEST(Diagnosis, AProcessOfSeveralOperatorsNearItsLimitNamesNoOneOperator) {
  rpc::JobInfo job = running_job(kStart);
  add_instance(job, 0, "source", 0, 400).set_process_id(100);
  add_instance(job, 1, "work", 0, 400).set_process_id(100);
  add_process(job, 0, 95, 100);
  const auto findings = diagnose(job, kStart + 1000);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].operator_id, -1);
  EXPECT_EQ(findings[0].operator_name, "");
}

}  // namespace
}  // namespace sage::dashboard
