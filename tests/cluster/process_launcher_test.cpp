// Task processes started as the worker starts them: real /bin/sh children,
// with their environment, descriptors, directory and process group checked.
#include "cluster/process_launcher.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

namespace sage::cluster {
namespace {

bool contains(const std::vector<std::string>& entries, const std::string& entry) {
  return std::find(entries.begin(), entries.end(), entry) != entries.end();
}

// Everything `fd` delivers until its writers are gone.
std::string read_all(int fd) {
  std::string text;
  char buffer[4096];
  for (ssize_t n; (n = read(fd, buffer, sizeof buffer)) > 0;) text.append(buffer, n);
  return text;
}

struct Pipe {
  UniqueFd read, write;
  Pipe() {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    read.reset(fds[0]);
    write.reset(fds[1]);
  }
};

// A launch of `sh -c script`, with pipes standing in for the data socket and the lease.
struct ShellLaunch {
  Pipe data, lease;
  TaskProcessLaunch launch;
  explicit ShellLaunch(const std::string& script) {
    launch.program = "/bin/sh";
    launch.args = {"-c", script};
    launch.assignment = "a55";
    launch.data_fd = data.write.get();
    launch.lease_fd = lease.write.get();
  }
};

TEST(ProcessLauncherTest, EnvironmentReplacesWhatOnlyTheWorkerMaySay) {
  TaskProcessLaunch launch;
  launch.assignment = "0abc";
  launch.gpu_indices = {0, 2};
  const char* inherited[] = {"PATH=/bin", "SAGE_TOKEN=secret", "SAGE_TLS_CA=/elsewhere.pem",
                             "HOME=/home/u", nullptr};
  const auto env = task_process_environment(launch, inherited);
  EXPECT_TRUE(contains(env, "PATH=/bin"));
  EXPECT_TRUE(contains(env, "HOME=/home/u"));
  EXPECT_FALSE(contains(env, "SAGE_TOKEN=secret"));
  EXPECT_FALSE(contains(env, "SAGE_TLS_CA=/elsewhere.pem"));
  EXPECT_TRUE(contains(env, "SAGE_TASK_ASSIGNMENT=0abc"));
  EXPECT_TRUE(contains(env, "SAGE_DATA_FD=3"));
  EXPECT_TRUE(contains(env, "SAGE_RESULT_FD=4"));
  EXPECT_TRUE(contains(env, "SAGE_LEASE_FD=5"));
  EXPECT_TRUE(contains(env, "CUDA_VISIBLE_DEVICES=0,2"));
  EXPECT_EQ(std::count_if(env.begin(), env.end(),
                          [](const std::string& e) { return e.rfind("SAGE_TLS_", 0) == 0; }),
            0);

  const char* none[] = {nullptr};
  launch.gpu_indices.clear();
  EXPECT_TRUE(contains(task_process_environment(launch, none), "CUDA_VISIBLE_DEVICES="));
}

TEST(ProcessLauncherTest, TheJobsEntriesReplaceTheWorkersButNeverWhatOnlyTheWorkerSays) {
  TaskProcessLaunch launch;
  launch.assignment = "0abc";
  launch.environment = {"PYTHONHASHSEED=0", "SAGE_TASK_ASSIGNMENT=forged",
                        "CUDA_VISIBLE_DEVICES=7"};
  const char* inherited[] = {"PATH=/bin", "PYTHONHASHSEED=random", nullptr};
  const auto env = task_process_environment(launch, inherited);
  EXPECT_TRUE(contains(env, "PYTHONHASHSEED=0"));
  EXPECT_FALSE(contains(env, "PYTHONHASHSEED=random"));
  EXPECT_TRUE(contains(env, "PATH=/bin"));
  EXPECT_TRUE(contains(env, "SAGE_TASK_ASSIGNMENT=0abc"));
  EXPECT_FALSE(contains(env, "SAGE_TASK_ASSIGNMENT=forged"));
  EXPECT_FALSE(contains(env, "CUDA_VISIBLE_DEVICES=7"));
}

// A Python job's collections directory is its own setting: the worker's passes on
// unless the job names one.
TEST(ProcessLauncherTest, TheCollectionsDirectoryIsTheJobsOrElseTheWorkers) {
  TaskProcessLaunch launch;
  const char* inherited[] = {"SAGE_COLLECTIONS_DIR=/shared/collections", nullptr};
  EXPECT_TRUE(contains(task_process_environment(launch, inherited),
                       "SAGE_COLLECTIONS_DIR=/shared/collections"));
  launch.environment = {"SAGE_COLLECTIONS_DIR=/home/me/.sage/collections"};
  const auto env = task_process_environment(launch, inherited);
  EXPECT_TRUE(contains(env, "SAGE_COLLECTIONS_DIR=/home/me/.sage/collections"));
  EXPECT_FALSE(contains(env, "SAGE_COLLECTIONS_DIR=/shared/collections"));
}

// A worker that Slurm (or another resource manager) gave GPUs 4, 5 and 6:
// the node's GPUs 0 and 2 are devices 4 and 6.
TEST(ProcessLauncherTest, GpusAreThoseOfTheWorkersOwnVisibleDevices) {
  TaskProcessLaunch launch;
  launch.gpu_indices = {0, 2};
  const char* allocated[] = {"CUDA_VISIBLE_DEVICES=4,5,6", nullptr};
  const auto env = task_process_environment(launch, allocated);
  EXPECT_TRUE(contains(env, "CUDA_VISIBLE_DEVICES=4,6"));
  EXPECT_FALSE(contains(env, "CUDA_VISIBLE_DEVICES=4,5,6"));
}

TEST(ProcessLauncherTest, EnvironmentCarriesTheNodesTlsFilesWhenTlsIsOn) {
  TaskProcessLaunch launch;
  launch.tls = {.cert = "/n/cert.pem", .key = "/n/key.pem", .ca = "/n/ca.pem"};
  const char* none[] = {nullptr};
  const auto env = task_process_environment(launch, none);
  EXPECT_TRUE(contains(env, "SAGE_TLS_CERT=/n/cert.pem"));
  EXPECT_TRUE(contains(env, "SAGE_TLS_KEY=/n/key.pem"));
  EXPECT_TRUE(contains(env, "SAGE_TLS_CA=/n/ca.pem"));

  launch.tls.ca.clear();  // off: a certificate alone is not passed on
  const auto off = task_process_environment(launch, none);
  EXPECT_FALSE(contains(off, "SAGE_TLS_CERT=/n/cert.pem"));
}

TEST(ProcessLauncherTest, OutputAndResultPipesAndInheritedDescriptorsArriveAtTheirNumbers) {
  ShellLaunch shell(
      "echo out; echo err >&2; echo result >&4; echo data >&3; echo lease >&5; "
      "echo \"$SAGE_TASK_ASSIGNMENT $SAGE_DATA_FD $SAGE_RESULT_FD $SAGE_LEASE_FD\"");
  LaunchedProcess process = launch_task_process(shell.launch);
  // The parent's copies go, so that each read below ends with the child.
  shell.data.write.reset();
  shell.lease.write.reset();
  EXPECT_EQ(read_all(process.output().get()), "out\nerr\na55 3 4 5\n");
  EXPECT_EQ(read_all(process.results().get()), "result\n");
  EXPECT_EQ(read_all(shell.data.read.get()), "data\n");
  EXPECT_EQ(read_all(shell.lease.read.get()), "lease\n");
  const int status = process.reap();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// Moves whatever is open at `fd` (inherited from the test runner) to another
// number, and back when it goes; `fd` is free meanwhile.
class VacatedDescriptor {
 public:
  explicit VacatedDescriptor(int fd) : fd_(fd), saved_(fcntl(fd, F_DUPFD_CLOEXEC, 100)) {
    if (saved_ >= 0) ::close(fd_);
  }
  ~VacatedDescriptor() {
    if (saved_ < 0) return;
    dup2(saved_, fd_);
    ::close(saved_);
  }
  VacatedDescriptor(const VacatedDescriptor&) = delete;
  VacatedDescriptor& operator=(const VacatedDescriptor&) = delete;

 private:
  int fd_, saved_;
};

// The lease's descriptor may be 3, the number the data socket goes to: each
// still reaches its own number.
TEST(ProcessLauncherTest, SourcesAtTheTargetNumbersAreNotOverwritten) {
  ShellLaunch shell("echo data >&3; echo lease >&5");
  // The pipes move out of the way, and the write ends into 5 and 3.
  for (UniqueFd* fd :
       {&shell.data.read, &shell.data.write, &shell.lease.read, &shell.lease.write}) {
    fd->reset(fcntl(fd->get(), F_DUPFD_CLOEXEC, 10));
  }
  // Whatever the test runner left at 3 and 5 steps aside meanwhile.
  const VacatedDescriptor vacated_3(3), vacated_5(5);
  UniqueFd lease_at_3(dup3(shell.lease.write.get(), 3, O_CLOEXEC));
  UniqueFd data_at_5(dup3(shell.data.write.get(), 5, O_CLOEXEC));
  ASSERT_EQ(lease_at_3.get(), 3);
  ASSERT_EQ(data_at_5.get(), 5);
  shell.launch.data_fd = 5;
  shell.launch.lease_fd = 3;
  LaunchedProcess process = launch_task_process(shell.launch);
  shell.data.write.reset();
  shell.lease.write.reset();
  lease_at_3.reset();
  data_at_5.reset();
  EXPECT_EQ(read_all(shell.data.read.get()), "data\n");
  EXPECT_EQ(read_all(shell.lease.read.get()), "lease\n");
  EXPECT_EQ(WEXITSTATUS(process.reap()), 0);
}

TEST(ProcessLauncherTest, RunsInItsWorkingDirectoryOrElseInTheRoot) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  ShellLaunch there("pwd");
  there.launch.working_directory = dir;
  LaunchedProcess in_dir = launch_task_process(there.launch);
  EXPECT_EQ(read_all(in_dir.output().get()), std::filesystem::canonical(dir).string() + "\n");
  in_dir.reap();

  ShellLaunch missing("pwd");
  missing.launch.working_directory = dir + "/no/such/directory";
  LaunchedProcess in_root = launch_task_process(missing.launch);
  EXPECT_EQ(read_all(in_root.output().get()), "/\n");
  in_root.reap();
}

TEST(ProcessLauncherTest, AProgramThatCannotBeExecutedEndsWithCode127) {
  ShellLaunch shell("");
  shell.launch.program = "/no/such/program";
  shell.launch.args.clear();
  LaunchedProcess process = launch_task_process(shell.launch);
  const int status = process.reap();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 127);
}

TEST(ProcessLauncherTest, LeadsItsOwnProcessGroupWhichKillGroupEnds) {
  // The shell and a child of its own, both in the task process's group.
  ShellLaunch shell("sleep 60 & echo $!; wait");
  LaunchedProcess process = launch_task_process(shell.launch);
  EXPECT_EQ(getpgid(process.pid()), process.pid());
  char buffer[32] = {};
  ASSERT_GT(read(process.output().get(), buffer, sizeof buffer - 1), 0);
  const pid_t sleeper = std::stoi(buffer);
  EXPECT_EQ(getpgid(sleeper), process.pid());
  EXPECT_FALSE(process.has_ended());

  process.kill_group();
  process.wait_until_ended();
  EXPECT_TRUE(process.has_ended());
  EXPECT_EQ(kill(process.pid(), 0), 0) << "ended, but not reaped yet";
  const int status = process.reap();
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  // The sleeper got SIGKILL too: the output pipe closes once it is gone.
  EXPECT_EQ(read_all(process.output().get()), "");
}

TEST(ProcessLauncherTest, ADroppedProcessIsKilledAndReaped) {
  pid_t pid = 0;
  {
    ShellLaunch shell("sleep 60");
    LaunchedProcess process = launch_task_process(shell.launch);
    pid = process.pid();
  }
  EXPECT_EQ(kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

}  // namespace
}  // namespace sage::cluster
