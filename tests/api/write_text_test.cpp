// write_text: the sink class driven through its checkpoint hooks, with a
// crash (the object destroyed without close()) at every step of the two-phase
// commit, and whole jobs in a LocalEnvironment.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <sage/sage.hpp>

#include "support/temp_dir.hpp"

namespace sage {
namespace {

namespace fs = std::filesystem;
using detail::TextFileSink;
using testing::TempDir;
using Lines = std::vector<std::string>;

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

void write_file(const fs::path& path, const std::string& content) {
  std::ofstream(path) << content;
}

Lines lines_of(const fs::path& path) {
  std::ifstream in(path);
  Lines lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

Lines sorted(Lines lines) {
  std::sort(lines.begin(), lines.end());
  return lines;
}

// The directory as a reader sees it (committed files) and what it hides.
struct Listing {
  Lines visible;  // file names, sorted
  Lines hidden;

  explicit Listing(const fs::path& directory) {
    for (const auto& entry : fs::directory_iterator(directory)) {
      const std::string name = entry.path().filename().string();
      (name.starts_with('.') || name.starts_with('_') ? hidden : visible).push_back(name);
    }
    std::sort(visible.begin(), visible.end());
    std::sort(hidden.begin(), hidden.end());
  }
};

// Every line of the committed files, sorted.
Lines visible_lines(const fs::path& directory) {
  Lines all;
  for (const std::string& name : Listing(directory).visible) {
    for (std::string& line : lines_of(directory / name)) all.push_back(std::move(line));
  }
  return sorted(all);
}

// One parallel instance of write_text over strings, opened as the engine
// opens it. Destroying it without close() is a crash.
class Instance {
 public:
  Instance(const fs::path& directory, bool checkpointing, int index = 0, int parallelism = 2)
      : ctx_({.job_id = "job-test",
              .operator_name = "write_text",
              .parallel_index = index,
              .parallelism = parallelism},
             metrics_, nullptr),
        sink_(directory.string(), checkpointing) {
    sink_.open(ctx_);
  }

  void write(const Lines& records) {
    for (const std::string& record : records) sink_.sink(record);
  }
  // The save of the next checkpoint (1, 2, ... per instance).
  std::string save() {
    Writer out;
    sink_.save_state(out, ++checkpoint_);
    return out.take();
  }
  void restore(const std::string& state) {
    Reader in(state);
    sink_.restore_state(in);
  }
  void notify(std::uint64_t checkpoint) { sink_.notify_checkpoint_complete(checkpoint); }
  void close() { sink_.close(); }

 private:
  Metrics metrics_;
  RuntimeContext ctx_;
  TextFileSink<std::string> sink_;
  std::uint64_t checkpoint_ = 0;
};

TEST(WriteTextTest, WithoutCheckpointsCloseCommits) {
  TempDir dir;
  Instance sink(dir.path(), false);
  sink.write({"a", "b"});
  EXPECT_TRUE(Listing(dir.path()).visible.empty());
  EXPECT_EQ(Listing(dir.path()).hidden, Lines{".part-0-000000.inprogress"});
  sink.close();
  const Listing after(dir.path());
  EXPECT_EQ(after.visible, Lines{"part-0-000000"});
  EXPECT_TRUE(after.hidden.empty());
  EXPECT_EQ(lines_of(dir.file("part-0-000000")), (Lines{"a", "b"}));
}

TEST(WriteTextTest, NoRecordsMakeNoFiles) {
  TempDir dir;
  Instance unchecked(dir.path(), false);
  unchecked.close();
  Instance checked(dir.path(), true, 1);
  checked.save();
  checked.notify(1);
  checked.close();
  checked.save();
  checked.notify(2);
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(WriteTextTest, CreatesTheDirectory) {
  TempDir dir;
  const fs::path nested = fs::path(dir.path()) / "out" / "text";
  Instance sink(nested, false);
  sink.write({"x"});
  sink.close();
  EXPECT_EQ(visible_lines(nested), Lines{"x"});
}

TEST(WriteTextTest, DirectoryThatCannotBeCreatedIsAnErrorNamingItAndWhy) {
  TempDir dir;
  write_file(dir.file("blocker"), "a file, not a directory\n");
  const std::string wanted = dir.file("blocker") + "/out";
  try {
    Instance sink(wanted, false);
    ADD_FAILURE() << "open() did not throw";
  } catch (const Error& e) {
    expect_contains(e.what(), "'" + wanted + "'");
    expect_contains(e.what(), std::strerror(ENOTDIR));
  }
}

TEST(WriteTextTest, EachCheckpointEndsAFileAndTheNextRecordStartsOne) {
  TempDir dir;
  Instance sink(dir.path(), true);
  sink.write({"a"});
  sink.save();
  sink.save();  // nothing written since: no empty file
  sink.write({"b", "c"});
  sink.save();
  EXPECT_TRUE(Listing(dir.path()).visible.empty());
  sink.notify(3);
  const Listing after(dir.path());
  EXPECT_EQ(after.visible, (Lines{"part-0-000000", "part-0-000001"}));
  EXPECT_TRUE(after.hidden.empty());
  EXPECT_EQ(lines_of(dir.file("part-0-000000")), Lines{"a"});
  EXPECT_EQ(lines_of(dir.file("part-0-000001")), (Lines{"b", "c"}));
}

// On a cluster the barrier of checkpoint n+1 can reach a sink before the
// notification that n completed: that notification must not commit n+1's file.
TEST(WriteTextTest, ANotificationThatArrivesLateCommitsOnlyItsOwnCheckpointsFiles) {
  TempDir dir;
  Instance sink(dir.path(), true);
  sink.write({"a"});
  sink.save();  // checkpoint 1
  sink.write({"b"});
  sink.save();  // checkpoint 2, before 1's notification came
  sink.notify(1);
  EXPECT_EQ(Listing(dir.path()).visible, Lines{"part-0-000000"});
  EXPECT_EQ(Listing(dir.path()).hidden, Lines{".part-0-000001.inprogress"});
  sink.notify(2);
  EXPECT_EQ(visible_lines(dir.path()), (Lines{"a", "b"}));
}

TEST(WriteTextTest, NotificationCommitsOnlyWhatACheckpointRecorded) {
  TempDir dir;
  Instance sink(dir.path(), true);
  sink.write({"a"});
  sink.save();
  sink.write({"b"});  // after the checkpoint: not covered by its notification
  sink.notify(1);
  EXPECT_EQ(Listing(dir.path()).visible, Lines{"part-0-000000"});
  EXPECT_EQ(Listing(dir.path()).hidden, Lines{".part-0-000001.inprogress"});

  // With checkpoints, close() leaves the last file to the final checkpoint.
  sink.close();
  sink.notify(1);
  EXPECT_EQ(Listing(dir.path()).visible, Lines{"part-0-000000"});
  sink.save();
  sink.notify(2);
  const Listing after(dir.path());
  EXPECT_EQ(after.visible, (Lines{"part-0-000000", "part-0-000001"}));
  EXPECT_TRUE(after.hidden.empty());
  EXPECT_EQ(visible_lines(dir.path()), (Lines{"a", "b"}));
}

TEST(WriteTextTest, CrashAfterCheckpointBeforeNotification) {
  TempDir dir;
  std::string state;
  {
    Instance sink(dir.path(), true);
    sink.write({"a", "b"});
    state = sink.save();
    sink.write({"c"});
  }
  EXPECT_TRUE(Listing(dir.path()).visible.empty());
  EXPECT_EQ(Listing(dir.path()).hidden.size(), 2u);

  Instance restarted(dir.path(), true);
  // open() must leave the checkpoint's pending file for restore_state.
  EXPECT_EQ(Listing(dir.path()).hidden.size(), 2u);
  restarted.restore(state);
  const Listing restored(dir.path());
  EXPECT_EQ(restored.visible, Lines{"part-0-000000"});
  EXPECT_TRUE(restored.hidden.empty()) << "the file written after the checkpoint is left";
  EXPECT_EQ(lines_of(dir.file("part-0-000000")), (Lines{"a", "b"}));

  restarted.write({"c"});  // replayed
  restarted.close();
  restarted.save();
  restarted.notify(2);
  EXPECT_EQ(visible_lines(dir.path()), (Lines{"a", "b", "c"}));
  EXPECT_TRUE(Listing(dir.path()).hidden.empty());
}

TEST(WriteTextTest, CrashDuringCommit) {
  TempDir dir;
  std::string state;
  {
    Instance sink(dir.path(), true);
    sink.write({"a", "b"});
    sink.save();  // checkpoint 1: never notified
    sink.write({"c", "d"});
    state = sink.save();
    sink.write({"e"});
    // The second rename fails: the commit stops halfway, as in a crash.
    fs::create_directory(dir.file("part-0-000001"));
    try {
      sink.notify(2);
      ADD_FAILURE() << "the commit did not fail";
    } catch (const Error& e) {
      expect_contains(e.what(), "cannot commit '" + dir.file(".part-0-000001.inprogress") + "'");
    }
  }
  fs::remove(dir.file("part-0-000001"));
  EXPECT_EQ(Listing(dir.path()).visible, Lines{"part-0-000000"});
  EXPECT_EQ(Listing(dir.path()).hidden,
            (Lines{".part-0-000001.inprogress", ".part-0-000002.inprogress"}));

  Instance restarted(dir.path(), true);
  restarted.restore(state);
  const Listing restored(dir.path());
  EXPECT_EQ(restored.visible, (Lines{"part-0-000000", "part-0-000001"}));
  EXPECT_TRUE(restored.hidden.empty());
  restarted.write({"e"});
  restarted.close();
  restarted.save();
  restarted.notify(3);
  EXPECT_EQ(visible_lines(dir.path()), (Lines{"a", "b", "c", "d", "e"}));
}

TEST(WriteTextTest, CrashAfterNotificationAndRestoringTwice) {
  TempDir dir;
  std::string state;
  {
    Instance sink(dir.path(), true);
    sink.write({"a", "b"});
    state = sink.save();
    sink.notify(1);
    sink.write({"c"});
  }
  EXPECT_EQ(Listing(dir.path()).visible, Lines{"part-0-000000"});
  {
    Instance restarted(dir.path(), true);
    restarted.restore(state);  // already committed: nothing to do but tidy up
    EXPECT_TRUE(Listing(dir.path()).hidden.empty());
    restarted.write({"c"});
  }
  Instance again(dir.path(), true);
  again.restore(state);
  again.write({"c", "d"});
  again.close();
  again.save();
  again.notify(2);
  EXPECT_EQ(Listing(dir.path()).visible, (Lines{"part-0-000000", "part-0-000001"}));
  EXPECT_TRUE(Listing(dir.path()).hidden.empty());
  EXPECT_EQ(visible_lines(dir.path()), (Lines{"a", "b", "c", "d"}));
}

TEST(WriteTextTest, InstancesNeverTouchEachOthersFiles) {
  TempDir dir;
  Instance first(dir.path(), true, 0);
  std::string second_state;
  {
    Instance second(dir.path(), true, 1);
    first.write({"x1"});
    second.write({"y1"});
    first.save();
    second_state = second.save();
    first.write({"x2"});
    second.write({"y2"});
  }
  Instance second(dir.path(), true, 1);
  second.restore(second_state);
  EXPECT_EQ(Listing(dir.path()).visible, Lines{"part-1-000000"});
  EXPECT_EQ(Listing(dir.path()).hidden,
            (Lines{".part-0-000000.inprogress", ".part-0-000001.inprogress"}));
  second.write({"y2"});
  second.close();
  first.close();
  first.save();
  second.save();
  first.notify(2);
  second.notify(2);
  EXPECT_EQ(Listing(dir.path()).visible,
            (Lines{"part-0-000000", "part-0-000001", "part-1-000000", "part-1-000001"}));
  EXPECT_EQ(visible_lines(dir.path()), (Lines{"x1", "x2", "y1", "y2"}));
}

TEST(WriteTextTest, FreshStartKeepsCommittedFilesAndDropsStaleInProgressOnes) {
  TempDir dir;
  write_file(dir.file("part-0-000000"), "old 0\n");
  write_file(dir.file("part-0-000003"), "old 3\n");
  write_file(dir.file(".part-0-000009.inprogress"), "stale\n");
  write_file(dir.file(".part-1-000000.inprogress"), "another instance's\n");
  write_file(dir.file("notes.txt"), "not ours\n");

  Instance sink(dir.path(), false);
  EXPECT_TRUE(fs::exists(dir.file(".part-0-000009.inprogress"))) << "open() cannot know yet";
  sink.write({"new"});
  sink.close();
  const Listing after(dir.path());
  EXPECT_EQ(after.visible, (Lines{"notes.txt", "part-0-000000", "part-0-000003", "part-0-000004"}));
  EXPECT_EQ(after.hidden, Lines{".part-1-000000.inprogress"});
  EXPECT_EQ(lines_of(dir.file("part-0-000000")), Lines{"old 0"});
  EXPECT_EQ(lines_of(dir.file("part-0-000003")), Lines{"old 3"});
  EXPECT_EQ(lines_of(dir.file("part-0-000004")), Lines{"new"});
}

TEST(WriteTextTest, RestartNeverReusesACommittedNameEvenWhenTheFileWasTakenAway) {
  TempDir dir, consumed;
  std::string state;
  {
    Instance sink(dir.path(), true);
    sink.write({"a"});
    sink.save();
    sink.notify(1);
    state = sink.save();
  }
  fs::rename(dir.file("part-0-000000"), consumed.file("part-0-000000"));
  Instance restarted(dir.path(), true);
  restarted.restore(state);
  restarted.write({"b"});
  restarted.close();
  restarted.save();
  restarted.notify(3);
  EXPECT_EQ(Listing(dir.path()).visible, Lines{"part-0-000001"});
  EXPECT_EQ(lines_of(dir.file("part-0-000001")), Lines{"b"});
}

TEST(WriteTextTest, RestoreWithoutThePendingFileIsAnError) {
  TempDir dir;
  std::string state;
  {
    Instance sink(dir.path(), true);
    sink.write({"a"});
    state = sink.save();
  }
  fs::remove(dir.file(".part-0-000000.inprogress"));
  Instance restarted(dir.path(), true);
  try {
    restarted.restore(state);
    ADD_FAILURE() << "restore_state did not throw";
  } catch (const Error& e) {
    expect_contains(e.what(), dir.file(".part-0-000000.inprogress"));
    expect_contains(e.what(), "neither it nor");
  }
}

TEST(WriteTextTest, RestoreIntoAnotherInstanceIsRefused) {
  TempDir dir;
  Instance first(dir.path(), true, 0);
  first.write({"a"});
  const std::string state = first.save();
  Instance other(dir.path(), true, 1);
  try {
    other.restore(state);
    ADD_FAILURE() << "restore_state did not throw";
  } catch (const Error& e) {
    expect_contains(e.what(), "instance 0 was restored into instance 1");
  }
}

// Limits the size of files this process writes, as a full disk would.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    previous_handler_ = ::signal(SIGXFSZ, SIG_IGN);  // write() fails with EFBIG instead
    ::getrlimit(RLIMIT_FSIZE, &previous_);
    rlimit limited = previous_;
    limited.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &limited);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &previous_);
    ::signal(SIGXFSZ, previous_handler_);
  }

 private:
  rlimit previous_{};
  sighandler_t previous_handler_;
};

TEST(WriteTextTest, WriteErrorNamesTheFileAndTheReason) {
  TempDir dir;
  Instance sink(dir.path(), false);
  const FileSizeLimit limit(4096);
  try {
    for (int i = 0; i < 100'000; ++i) sink.write({"record " + std::to_string(i)});
    sink.close();
    ADD_FAILURE() << "writing past the limit did not throw";
  } catch (const Error& e) {
    expect_contains(e.what(), "cannot write '" + dir.file(".part-0-000000.inprogress") + "'");
    expect_contains(e.what(), std::strerror(EFBIG));
  }
  EXPECT_TRUE(Listing(dir.path()).visible.empty());
}

struct Point {
  int x = 0, y = 0;
  SAGE_FIELDS(x, y)
  friend std::ostream& operator<<(std::ostream& os, const Point& p) {
    return os << p.x << ',' << p.y;
  }
  friend bool operator==(const Point&, const Point&) = default;
};

// An operator<< that reports a failure through the stream.
struct Unprintable {
  friend std::ostream& operator<<(std::ostream& os, const Unprintable&) {
    os.setstate(std::ios::failbit);
    return os;
  }
};

TEST(WriteTextTest, AnOperatorThatFailsTheStreamIsAnError) {
  TempDir dir;
  Metrics metrics;
  RuntimeContext ctx({.operator_name = "write_text"}, metrics, nullptr);
  TextFileSink<Unprintable> sink(dir.path(), false);
  sink.open(ctx);
  try {
    sink.sink(Unprintable{});
    ADD_FAILURE() << "sink() did not throw";
  } catch (const Error& e) {
    expect_contains(e.what(), "operator<<");
  }
}

// Whole jobs, without checkpoints: close() commits.

TEST(WriteTextTest, ParallelJobWritesEveryRecordOnceAndLeavesNothingHidden) {
  TempDir dir;
  const fs::path out = fs::path(dir.path()) / "numbers";
  LocalEnvironment env("write-text");
  env.from_sequence(0, 3000).write_text(out.string(), {.parallelism = 3});
  env.execute();

  Lines expected;
  for (int i = 0; i < 3000; ++i) expected.push_back(std::to_string(i));
  const Listing listing(out);
  EXPECT_EQ(listing.visible, (Lines{"part-0-000000", "part-1-000000", "part-2-000000"}));
  EXPECT_TRUE(listing.hidden.empty());
  EXPECT_EQ(visible_lines(out), sorted(expected));
}

TEST(WriteTextTest, SecondJobIntoTheSameDirectoryAddsFiles) {
  TempDir dir;
  for (int run = 0; run < 2; ++run) {
    LocalEnvironment env("write-text-" + std::to_string(run));
    env.from_collection(Lines{"x", "y"}).write_text(dir.path(), {.parallelism = 2});
    env.execute();
  }
  const Listing listing(dir.path());
  EXPECT_EQ(listing.visible,
            (Lines{"part-0-000000", "part-0-000001", "part-1-000000", "part-1-000001"}));
  EXPECT_EQ(visible_lines(dir.path()), (Lines{"x", "x", "y", "y"}));
}

TEST(WriteTextTest, KeyedStreamOfUserStructsUsesItsOperator) {
  TempDir dir;
  std::vector<Point> points;
  Lines expected;
  for (int i = 0; i < 50; ++i) {
    points.push_back({i, i % 4});
    expected.push_back(std::to_string(i) + "," + std::to_string(i % 4));
  }
  LocalEnvironment env("write-text-keyed");
  env.from_collection(points)
      .key_by([](const Point& p) { return p.y; })
      .write_text(dir.path(), {.name = "points", .parallelism = 2});
  env.execute();
  EXPECT_EQ(visible_lines(dir.path()), sorted(expected));
  EXPECT_TRUE(Listing(dir.path()).hidden.empty());
}

TEST(WriteTextTest, JobFailsWithTheDirectoryItCannotCreate) {
  TempDir dir;
  write_file(dir.file("blocker"), "");
  const std::string wanted = dir.file("blocker") + "/out";
  LocalEnvironment env("write-text-fails");
  env.from_collection({1, 2}).write_text(wanted, {.name = "text"});
  try {
    env.execute();
    ADD_FAILURE() << "the job did not fail";
  } catch (const JobFailedError& e) {
    expect_contains(e.what(), "operator 'text'");
    expect_contains(e.what(), "cannot create the directory '" + wanted + "'");
  }
}

TEST(WriteTextTest, EmptyDirectoryIsRejectedWhenTheJobIsBuilt) {
  LocalEnvironment env("write-text-empty");
  EXPECT_THROW(env.from_collection({1}).write_text(""), InvalidPlanError);
}

}  // namespace
}  // namespace sage
