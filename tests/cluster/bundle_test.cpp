// Job bundles: a directory packed canonically (the same files give the same
// bytes, hence the same hash), capped, and unpacked without letting any entry
// write outside its target directory.
#include "cluster/bundle.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cluster/program_store.hpp"
#include "sage/error.hpp"
#include "support/temp_dir.hpp"

namespace sage::cluster {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

void write_file(const std::string& path, const std::string& bytes, fs::perms perms = {}) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
  if (perms != fs::perms{}) fs::permissions(path, perms);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A script's directory with what a bundle keeps and what it skips.
void make_job_directory(const std::string& dir) {
  write_file(dir + "/job.py", "import helper\n");
  write_file(dir + "/helper.py", "X = 1\n");
  write_file(dir + "/run.sh", "#!/bin/sh\n", fs::perms::owner_all | fs::perms::group_read);
  write_file(dir + "/data/words.txt", "a b c\n");
  write_file(dir + "/__pycache__/helper.cpython-311.pyc", "compiled");
  write_file(dir + "/.git/HEAD", "ref: refs/heads/main\n");
  write_file(dir + "/.venv/lib/x.py", "");
  fs::create_symlink("/etc/passwd", dir + "/passwd_link");
  fs::create_symlink("data", dir + "/data_link");
}

TEST(BundleTest, PacksTheRegularFilesAndUnpacksThemWithTheirModes) {
  TempDir dir;
  make_job_directory(dir.file("job"));
  write_bundle(dir.file("job"), dir.file("bundle"), {});
  unpack_bundle(dir.file("bundle"), dir.file("out"), {});

  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir.file("out"))) {
    if (e.is_regular_file()) files.push_back(fs::relative(e.path(), dir.file("out")).string());
    EXPECT_FALSE(e.is_symlink()) << e.path();
  }
  std::sort(files.begin(), files.end());
  EXPECT_EQ(files, (std::vector<std::string>{"data/words.txt", "helper.py", "job.py", "run.sh"}));
  EXPECT_EQ(read_file(dir.file("out/job.py")), "import helper\n");
  EXPECT_EQ(read_file(dir.file("out/data/words.txt")), "a b c\n");
  EXPECT_NE(fs::status(dir.file("out/run.sh")).permissions() & fs::perms::owner_exec,
            fs::perms::none);
  EXPECT_EQ(fs::status(dir.file("out/helper.py")).permissions() & fs::perms::owner_exec,
            fs::perms::none);
}

TEST(BundleTest, TheSameFilesGiveTheSameHashAndAnyChangeAnother) {
  TempDir dir;
  make_job_directory(dir.file("a"));
  make_job_directory(dir.file("b"));
  write_bundle(dir.file("a"), dir.file("a.bundle"), {});
  write_bundle(dir.file("b"), dir.file("b.bundle"), {});
  const std::string hash = sha256_of_file(dir.file("a.bundle"));
  EXPECT_EQ(hash, sha256_of_file(dir.file("b.bundle")));

  // Skipped files do not count.
  write_file(dir.file("b/__pycache__/other.pyc"), "x");
  write_bundle(dir.file("b"), dir.file("b.bundle"), {});
  EXPECT_EQ(hash, sha256_of_file(dir.file("b.bundle")));

  // Bytes, a mode and a name each change it.
  write_file(dir.file("b/helper.py"), "X = 2\n");
  write_bundle(dir.file("b"), dir.file("b.bundle"), {});
  EXPECT_NE(hash, sha256_of_file(dir.file("b.bundle")));
  write_file(dir.file("b/helper.py"), "X = 1\n", fs::perms::owner_all);
  write_bundle(dir.file("b"), dir.file("b.bundle"), {});
  EXPECT_NE(hash, sha256_of_file(dir.file("b.bundle")));
  fs::permissions(dir.file("b/helper.py"), fs::perms::owner_read | fs::perms::owner_write);
  write_bundle(dir.file("b"), dir.file("b.bundle"), {});
  EXPECT_EQ(hash, sha256_of_file(dir.file("b.bundle")));
  fs::rename(dir.file("b/helper.py"), dir.file("b/helper2.py"));
  write_bundle(dir.file("b"), dir.file("b.bundle"), {});
  EXPECT_NE(hash, sha256_of_file(dir.file("b.bundle")));
}

TEST(BundleTest, ADirectoryOverTheLimitsIsRefusedWithTheFix) {
  TempDir dir;
  write_file(dir.file("job/job.py"), std::string(600, 'x'));
  write_file(dir.file("job/big.bin"), std::string(600, 'y'));
  try {
    write_bundle(dir.file("job"), dir.file("bundle"),
                 {.max_bytes = 1000, .max_files = 10, .how_to_raise = "raise max_bundle_size"});
    FAIL() << "a directory over the byte limit was packed";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("the script's directory " + dir.file("job") +
                           " holds more than a job bundle takes"),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("put the script in a directory of its own"), std::string::npos);
    EXPECT_NE(message.find("raise max_bundle_size"), std::string::npos);
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one line";
  }
  EXPECT_THROW(write_bundle(dir.file("job"), dir.file("bundle"), {.max_files = 1}), Error);
  EXPECT_NO_THROW(write_bundle(dir.file("job"), dir.file("bundle"), {.max_bytes = 1200}));
}

// A bundle written by hand, entry by entry, as an attacker could.
class Crafted {
 public:
  explicit Crafted(std::uint32_t count) {
    bytes_ = "SAGEBNDL";
    u32(1);
    u32(count);
  }
  Crafted& entry(const std::string& path, std::uint32_t mode, const std::string& data) {
    u32(static_cast<std::uint32_t>(path.size()));
    bytes_ += path;
    u32(mode);
    u64(data.size());
    bytes_ += data;
    return *this;
  }
  Crafted& raw(const std::string& bytes) {
    bytes_ += bytes;
    return *this;
  }
  std::string write(const TempDir& dir) const {
    const std::string path = dir.file("crafted");
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes_;
    return path;
  }

 private:
  void u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes_.push_back(static_cast<char>(v >> (8 * i)));
  }
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) bytes_.push_back(static_cast<char>(v >> (8 * i)));
  }
  std::string bytes_;
};

constexpr std::uint32_t kFile = S_IFREG | 0644;

// Unpacks `bundle` into dir/target/out and expects the error to say `expected`;
// nothing may appear outside dir/target/out.
void expect_refused(const TempDir& dir, const Crafted& bundle, const std::string& expected,
                    const BundleLimits& limits = {}) {
  const std::string path = bundle.write(dir);
  fs::remove_all(dir.file("target"));
  fs::create_directories(dir.file("target"));
  try {
    unpack_bundle(path, dir.file("target/out"), limits);
    FAIL() << "unpacked a bundle that should be refused (" << expected << ")";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
  }
  for (const auto& e : fs::directory_iterator(dir.file("target"))) {
    EXPECT_EQ(e.path().filename(), "out") << "written outside the target: " << e.path();
  }
  EXPECT_FALSE(fs::exists(dir.file("evil")));
}

TEST(BundleTest, UnpackingRefusesPathsThatLeaveTheDirectory) {
  TempDir dir;
  expect_refused(dir, Crafted(1).entry("../evil", kFile, "x"), "a '..' path component");
  expect_refused(dir, Crafted(1).entry("../../evil", kFile, "x"), "a '..' path component");
  expect_refused(dir, Crafted(2).entry("a", kFile, "x").entry("a/../../../evil", kFile, "x"),
                 "a '..' path component");
  expect_refused(dir, Crafted(1).entry(dir.file("evil"), kFile, "x"), "an absolute path");
  expect_refused(dir, Crafted(1).entry("a//b", kFile, "x"), "an empty path component");
  expect_refused(dir, Crafted(1).entry("a/", kFile, "x"), "an empty path component");
  expect_refused(dir, Crafted(1).entry("./a", kFile, "x"), "a '.' path component");
  expect_refused(dir, Crafted(1).entry(std::string("a\0b", 3), kFile, "x"), "a NUL");
  expect_refused(dir, Crafted(1).entry("", kFile, "x"), "has a path of 0 bytes");
}

TEST(BundleTest, UnpackingRefusesLinksDevicesAndOddModes) {
  TempDir dir;
  expect_refused(dir, Crafted(1).entry("link", S_IFLNK | 0777, "/etc/passwd"),
                 "regular files of mode 644 or 755 only");
  expect_refused(dir, Crafted(1).entry("dev", S_IFCHR | 0666, ""), "regular files");
  expect_refused(dir, Crafted(1).entry("dir", S_IFDIR | 0755, ""), "regular files");
  expect_refused(dir, Crafted(1).entry("setuid", S_IFREG | 04755, "x"), "mode 104755");
  expect_refused(dir, Crafted(1).entry("writable", S_IFREG | 0666, "x"), "mode 100666");
}

TEST(BundleTest, UnpackingRefusesRepeatsDisorderTruncationAndExcess) {
  TempDir dir;
  expect_refused(dir, Crafted(2).entry("a", kFile, "1").entry("a", kFile, "2"),
                 "out of order or repeated");
  expect_refused(dir, Crafted(2).entry("b", kFile, "1").entry("a", kFile, "2"),
                 "out of order or repeated");
  // A file where a directory is needed, and the other way round.
  expect_refused(dir, Crafted(2).entry("a", kFile, "1").entry("a/b", kFile, "2"),
                 "needs 'a' as a directory");
  expect_refused(dir, Crafted(2).entry("a", kFile, "1"), "cut short");
  expect_refused(dir, Crafted(1).entry("a", kFile, "1").raw("more"), "bytes after its last entry");
  expect_refused(dir,
                 Crafted(3).entry("a", kFile, "1").entry("b", kFile, "2").entry("c", kFile, "3"),
                 "the bundle has 3 files; a node unpacks at most 2", {.max_files = 2});
  expect_refused(dir, Crafted(2).entry("a", kFile, "123").entry("b", kFile, "456"), "more than",
                 {.max_bytes = 5});
  expect_refused(dir, Crafted(0).raw("garbage"), "bytes after its last entry");
}

TEST(BundleTest, UnpackedBundlesAreKeptByHashAndPruned) {
  TempDir dir;
  make_job_directory(dir.file("job"));
  write_bundle(dir.file("job"), dir.file("bundle"), {});
  const std::string hash = sha256_of_file(dir.file("bundle"));
  UnpackedBundles bundles(dir.file("bundles"));
  const std::string unpacked = bundles.ensure(hash, dir.file("bundle"), {});
  EXPECT_EQ(unpacked, dir.file("bundles") + "/" + hash);
  EXPECT_EQ(read_file(unpacked + "/helper.py"), "X = 1\n");
  // Unpacked once: a second call finds it (the bundle file is not read again).
  fs::remove(dir.file("bundle"));
  EXPECT_EQ(bundles.ensure(hash, dir.file("bundle"), {}), unpacked);
  // Not a hash: refused before any path is made of it.
  EXPECT_THROW(bundles.ensure("../x", dir.file("bundle"), {}), Error);
  // A failed unpack leaves nothing behind.
  const std::string other(64, 'b');
  EXPECT_THROW(bundles.ensure(other, dir.file("missing"), {}), Error);
  bundles.prune([&](const std::string& h) { return h == hash; });
  EXPECT_TRUE(fs::exists(unpacked));
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.file("bundles"))) ++entries;
  EXPECT_EQ(entries, 1u);
  bundles.prune([](const std::string&) { return false; });
  EXPECT_FALSE(fs::exists(unpacked));
}

}  // namespace
}  // namespace sage::cluster
