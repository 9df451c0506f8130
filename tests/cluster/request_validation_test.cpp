#include "cluster/request_validation.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace sage::cluster {
namespace {

constexpr int kLimit = 100;  // instances per job in these tests

rpc::SubmitRequest good_submit() {
  rpc::SubmitRequest request;
  request.set_name("word count");
  request.set_program_sha256(std::string(64, 'a'));
  request.add_args("--input");
  request.add_args("data.txt");
  request.set_working_directory("/home/user");
  request.set_fingerprint("0123456789abcdef");
  for (int c = 0; c < 2; ++c) {
    auto* chain = request.add_chains();
    chain->set_parallelism(4);
    chain->mutable_resources()->set_num_cpus(1.5);
    chain->mutable_resources()->set_num_gpus(1);
    chain->mutable_resources()->set_memory_bytes(std::uint64_t{1} << 30);
    chain->add_operators("map");
    chain->add_operator_ids(c);
  }
  auto* edge = request.add_edges();
  edge->set_from_operator(0);
  edge->set_to_operator(1);
  edge->set_partitioning("hash");
  return request;
}

rpc::JoinRequest good_join() {
  rpc::JoinRequest request;
  request.set_node_id("worker-1.rack_2");
  request.set_host("10.0.0.7");
  request.mutable_resources()->set_num_cpus(16);
  request.mutable_resources()->set_num_gpus(8);
  request.mutable_resources()->set_memory_bytes(std::uint64_t{64} << 30);
  return request;
}

// A change to a sound request, and what the refusal must say (empty: none).
template <class Request>
struct Case {
  std::string name;
  std::function<void(Request&)> change;
  std::string refusal;
};

template <class Request>
void expect_cases(const Request& good, const std::vector<Case<Request>>& cases,
                  const std::function<std::optional<std::string>(const Request&)>& check) {
  ASSERT_EQ(check(good), std::nullopt) << "the sound request is refused";
  for (const auto& c : cases) {
    Request request = good;
    c.change(request);
    const auto problem = check(request);
    if (c.refusal.empty()) {
      EXPECT_EQ(problem, std::nullopt) << c.name;
    } else if (!problem) {
      ADD_FAILURE() << c.name << ": accepted, expected \"" << c.refusal << "\"";
    } else {
      EXPECT_NE(problem->find(c.refusal), std::string::npos)
          << c.name << ": \"" << *problem << "\" does not say \"" << c.refusal << "\"";
    }
  }
}

TEST(RequestValidationTest, SubmitJobFields) {
  using C = Case<rpc::SubmitRequest>;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<C> cases = {
      {"edge from an unknown operator", [](auto& r) { r.mutable_edges(0)->set_from_operator(2); },
       "edges[0].from_operator is 2"},
      {"edge to a negative operator", [](auto& r) { r.mutable_edges(0)->set_to_operator(-1); },
       "edges[0].to_operator is -1"},
      {"unknown partitioning", [](auto& r) { r.mutable_edges(0)->set_partitioning("zigzag"); },
       "edges[0].partitioning 'zigzag'"},
      {"operator ids that do not match", [](auto& r) { r.mutable_chains(0)->add_operator_ids(1); },
       "chains[0].operator_ids has 2 entries"},
      {"processes per node over the limit", [](auto& r) { r.set_processes_per_node(65); },
       "processes_per_node is 65; it must be 0 to 64 (0 means 1)"},
      {"processes per node at the limit", [](auto& r) { r.set_processes_per_node(64); }, ""},
      {"negative processes per node", [](auto& r) { r.set_processes_per_node(-1); },
       "processes_per_node is -1"},
      {"parallelism 0", [](auto& r) { r.mutable_chains(1)->set_parallelism(0); },
       "chains[1].parallelism is 0; it must be 1 to 100"},
      {"parallelism -1", [](auto& r) { r.mutable_chains(0)->set_parallelism(-1); },
       "chains[0].parallelism is -1; it must be 1 to 100"},
      {"parallelism 2^31-1",
       [](auto& r) { r.mutable_chains(0)->set_parallelism(std::numeric_limits<int>::max()); },
       "chains[0].parallelism is 2147483647; it must be 1 to 100"},
      {"parallelism at the limit, in all over it",
       [](auto& r) { r.mutable_chains(0)->set_parallelism(kLimit); },
       "the job has 104 instances in all"},
      {"instances exactly at the limit",
       [](auto& r) { r.mutable_chains(0)->set_parallelism(kLimit - 4); }, ""},
      {"no chains", [](auto& r) { r.clear_chains(); }, "chains is empty"},
      {"a bundle that is no hash", [](auto& r) { r.set_bundle_sha256("../x"); },
       "bundle_sha256 '../x' is not a SHA-256"},
      {"a bundle", [](auto& r) { r.set_bundle_sha256(std::string(64, 'e')); }, ""},
      {"PYTHONHASHSEED", [](auto& r) { r.add_environment("PYTHONHASHSEED=0"); }, ""},
      {"an environment entry without =", [](auto& r) { r.add_environment("PYTHONHASHSEED"); },
       "environment[0] has no '='; it must be NAME=value"},
      {"an environment name with a space", [](auto& r) { r.add_environment("A B=secret"); },
       "environment[0] names 'A B', which is not a variable name"},
      {"a SAGE_ variable", [](auto& r) { r.add_environment("SAGE_TASK_ASSIGNMENT=00"); },
       "environment[0] sets SAGE_TASK_ASSIGNMENT, which only the worker sets"},
      {"the job's own collections directory",
       [](auto& r) { r.add_environment("SAGE_COLLECTIONS_DIR=/data/collections"); }, ""},
      {"CUDA_VISIBLE_DEVICES", [](auto& r) { r.add_environment("CUDA_VISIBLE_DEVICES=0"); },
       "which only the worker sets"},
      {"65 environment entries",
       [](auto& r) {
         for (int i = 0; i < 65; ++i) r.add_environment("A=1");
       },
       "environment has 65 entries; it must have at most 64"},
      {"negative CPUs", [](auto& r) { r.mutable_chains(1)->mutable_resources()->set_num_cpus(-1); },
       "chains[1].resources.num_cpus is -1; it must be a number from 0 to 1e+06"},
      {"NaN CPUs", [&](auto& r) { r.mutable_chains(0)->mutable_resources()->set_num_cpus(nan); },
       "chains[0].resources.num_cpus is nan"},
      {"infinite CPUs",
       [&](auto& r) { r.mutable_chains(0)->mutable_resources()->set_num_cpus(inf); },
       "chains[0].resources.num_cpus is inf"},
      {"zero CPUs", [](auto& r) { r.mutable_chains(0)->mutable_resources()->set_num_cpus(0); }, ""},
      {"negative GPUs", [](auto& r) { r.mutable_chains(0)->mutable_resources()->set_num_gpus(-1); },
       "chains[0].resources.num_gpus is -1; it must be 0 to 1024"},
      {"memory beyond 64 TiB",
       [](auto& r) {
         r.mutable_chains(0)->mutable_resources()->set_memory_bytes(
             std::numeric_limits<std::uint64_t>::max());
       },
       "chains[0].resources.memory_bytes is 18446744073709551615"},
      {"a chain without operators", [](auto& r) { r.mutable_chains(1)->clear_operators(); },
       "chains[1].operators is empty"},
      {"a long operator name",
       [](auto& r) { r.mutable_chains(1)->set_operators(0, std::string(2000, 'o')); },
       "chains[1].operators[0] has 2000 bytes; it must have at most 1024"},
      {"a long job name", [](auto& r) { r.set_name(std::string(5000, 'n')); },
       "name has 5000 bytes"},
      {"a hash that is not one", [](auto& r) { r.set_program_sha256("../../etc/passwd"); },
       "program_sha256 '../../etc/passwd' is not a SHA-256"},
      {"an upper-case hash", [](auto& r) { r.set_program_sha256(std::string(64, 'A')); },
       "program_sha256"},
      {"a fingerprint that is not one", [](auto& r) { r.set_fingerprint("xyz"); },
       "fingerprint 'xyz' is not a plan fingerprint"},
      {"a job name with a newline", [](auto& r) { r.set_name("fragile\njob-0 FINISHED"); },
       "name has the control character 0x0a at byte 7; a name is shown in tables and logs"},
      {"an operator name with an escape sequence",
       [](auto& r) { r.mutable_chains(0)->set_operators(0, "\x1b[31mred"); },
       "chains[0].operators[0] has the control character 0x1b at byte 0"},
      {"a name in another script", [](auto& r) { r.set_name("счётчик слов"); }, ""},
      {"an argument with a NUL", [](auto& r) { r.set_args(1, std::string("a\0b", 3)); },
       "args[1] contains a NUL byte"},
      {"arguments over 1 MiB",
       [](auto& r) {
         for (int i = 0; i < 3; ++i) r.add_args(std::string(400'000, 'x'));
       },
       "args has 1200015 bytes; it must have at most 1048576"},
      {"too many arguments",
       [](auto& r) {
         for (int i = 0; i < 10'001; ++i) r.add_args("x");
       },
       "args has 10003 arguments"},
      {"a long working directory",
       [](auto& r) { r.set_working_directory("/" + std::string(5000, 'd')); },
       "working_directory has 5001 bytes"},
  };
  expect_cases<rpc::SubmitRequest>(
      good_submit(), cases, [](const rpc::SubmitRequest& r) { return problem_in(r, kLimit); });
}

TEST(RequestValidationTest, JoinFields) {
  using C = Case<rpc::JoinRequest>;
  const std::vector<C> cases = {
      {"no node id", [](auto& r) { r.clear_node_id(); }, "node_id is empty"},
      {"a node id with a space", [](auto& r) { r.set_node_id("my node"); },
       "node_id 'my node' has a character other than letters, digits"},
      {"a node id with a slash", [](auto& r) { r.set_node_id("../w"); }, "node_id '../w'"},
      {"a long node id", [](auto& r) { r.set_node_id(std::string(200, 'w')); },
       "node_id has 200 bytes; it must have at most 128"},
      {"no host", [](auto& r) { r.clear_host(); }, "host is empty"},
      {"a host with a newline", [](auto& r) { r.set_host("10.0.0.1\nx"); },
       "has a space or control character"},
      {"a long host", [](auto& r) { r.set_host(std::string(300, 'h')); }, "host has 300 bytes"},
      {"an IPv6 host", [](auto& r) { r.set_host("fe80::1"); }, ""},
      {"GPUs -1", [](auto& r) { r.mutable_resources()->set_num_gpus(-1); },
       "resources.num_gpus is -1; it must be 0 to 1024"},
      {"a million GPUs", [](auto& r) { r.mutable_resources()->set_num_gpus(1'000'000); },
       "resources.num_gpus is 1000000"},
      {"CPUs -2", [](auto& r) { r.mutable_resources()->set_num_cpus(-2); },
       "resources.num_cpus is -2"},
      {"NaN CPUs",
       [](auto& r) {
         r.mutable_resources()->set_num_cpus(std::numeric_limits<double>::quiet_NaN());
       },
       "resources.num_cpus is nan"},
      {"no CPUs (a node that runs no work)",
       [](auto& r) { r.mutable_resources()->set_num_cpus(0); }, ""},
  };
  expect_cases<rpc::JoinRequest>(good_join(), cases,
                                 [](const rpc::JoinRequest& r) { return problem_in(r); });
}

TEST(RequestValidationTest, ReportsAndReferences) {
  rpc::PreparedReport prepared;
  prepared.set_node_id("w1");
  prepared.set_job_id("job-1");
  prepared.set_process_index(0);
  prepared.set_data_address("10.0.0.1:4000");
  expect_cases<rpc::PreparedReport>(
      prepared,
      {
          {"no job id", [](auto& r) { r.clear_job_id(); }, "job_id is empty"},
          {"a negative process", [](auto& r) { r.set_process_index(-3); },
           "process_index is -3; it must be 0 or more"},
          {"an address without a port", [](auto& r) { r.set_data_address("10.0.0.1"); },
           "data_address '10.0.0.1' is not host:port"},
          {"no address with an error",
           [](auto& r) {
             r.clear_data_address();
             r.set_error("no free port");
           },
           ""},
          {"a bad node id", [](auto& r) { r.set_node_id("w 1"); }, "node_id 'w 1'"},
      },
      [](const rpc::PreparedReport& r) { return problem_in(r); });

  rpc::OutputReport output;
  output.set_job_id("job-1");
  output.add_lines("hello");
  expect_cases<rpc::OutputReport>(
      output,
      {
          {"a line over the limit", [](auto& r) { r.add_lines(std::string(1 << 20, 'x')); },
           "lines[1] has 1048576 bytes"},
          {"a negative process", [](auto& r) { r.set_process_index(-1); }, "process_index is -1"},
      },
      [](const rpc::OutputReport& r) { return problem_in(r); });

  rpc::WatchRequest watch;
  watch.set_job_id("job-1");
  expect_cases<rpc::WatchRequest>(
      watch,
      {
          {"from line -1", [](auto& r) { r.set_from_line(-1); },
           "from_line is -1; it must be 0 or more"},
          {"a long job id", [](auto& r) { r.set_job_id(std::string(1000, 'j')); },
           "job_id has 1000 bytes"},
      },
      [](const rpc::WatchRequest& r) { return problem_in(r); });

  rpc::ExitReport exit;
  exit.set_job_id("job-1");
  exit.set_error(std::string(1 << 20, 'e'));  // cut later, never refused
  EXPECT_EQ(problem_in(exit), std::nullopt);
  exit.set_process_index(-1);
  EXPECT_NE(problem_in(exit), std::nullopt);

  rpc::ProgramRef program;
  program.set_sha256("abc");
  EXPECT_NE(problem_in(program), std::nullopt);
  rpc::NodeRef node;
  EXPECT_NE(problem_in(node), std::nullopt);
  rpc::JobRef job;
  EXPECT_NE(problem_in(job), std::nullopt);
}

TEST(RequestValidationTest, NoRefusalOfAnEnvironmentEntryRepeatsItsValue) {
  const std::string secret = "sk-not-to-be-printed";
  for (const std::string& entry :
       {secret, "OPENAI_API_KEY " + secret, "1KEY=" + secret, "SAGE_TOKEN=" + secret,
        "KEY=" + secret + std::string(5000, 'x')}) {
    rpc::SubmitRequest request = good_submit();
    request.add_environment(entry);
    const auto problem = problem_in(request, kLimit);
    ASSERT_NE(problem, std::nullopt) << "accepted: " << entry.substr(0, 40);
    EXPECT_EQ(problem->find(secret), std::string::npos) << *problem;
  }
}

TEST(RequestValidationTest, CutTextKeepsWholeCharacters) {
  EXPECT_EQ(cut_text("short", 10), "short");
  const std::string cut = cut_text(
      "ab\xc3\xa9"
      "cd",
      3);  // é is 2 bytes at 2..3
  EXPECT_EQ(cut, "ab... (4 more bytes cut)");
}

}  // namespace
}  // namespace sage::cluster
