// The program store: programs only under their verified SHA-256, and a cache
// bounded to the most recently used.
#include "cluster/program_store.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "sage/error.hpp"
#include "support/temp_dir.hpp"

namespace sage::cluster {
namespace {

using testing::TempDir;

// Stores `bytes` through an upload, as the head and workers do.
std::string store(const ProgramStore& programs, const TempDir& dir, const std::string& bytes) {
  const std::string source = dir.file("source");
  std::ofstream(source) << bytes;
  const std::string sha256 = sha256_of_file(source);
  auto upload = programs.begin_upload(sha256);
  upload->append(bytes);
  upload->commit();
  return sha256;
}

TEST(ProgramStoreTest, KeepsProgramsOnlyUnderTheirVerifiedHash) {
  TempDir dir;
  ProgramStore programs(dir.file("programs"));
  const std::string sha256 = store(programs, dir, "#!/bin/sh\necho one\n");
  EXPECT_TRUE(programs.contains(sha256));
  EXPECT_EQ(programs.path_of(sha256), dir.file("programs") + "/" + sha256);

  // Bytes that do not hash to the announced value are refused and leave nothing.
  const std::string other(64, 'a');
  {
    auto upload = programs.begin_upload(other);
    upload->append("not those bytes");
    EXPECT_THROW(upload->commit(), Error);
  }
  EXPECT_FALSE(programs.contains(other));
  // A name from the network that is not a hash never becomes a path.
  EXPECT_THROW(programs.path_of("../../etc/passwd"), Error);
  EXPECT_FALSE(programs.contains("../token"));
}

TEST(ProgramStoreTest, PruneKeepsTheMostRecentlyUsedAndThoseInUse) {
  TempDir dir;
  ProgramStore programs(dir.file("programs"));
  std::vector<std::string> stored;
  for (int i = 0; i < 5; ++i) {
    stored.push_back(store(programs, dir, "#!/bin/sh\necho " + std::to_string(i) + "\n"));
    // Used i minutes ago (the last one most recently).
    const timespec times[2] = {{0, UTIME_OMIT}, {time(nullptr) - 60 * (5 - i), 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, programs.path_of(stored.back()).c_str(), times, 0), 0);
  }
  programs.touch(stored[0]);  // the oldest is used again
  std::ofstream(dir.file("programs") + "/notes.txt") << "not a program";

  // Keep 2: stored[0] (just used) and stored[4]; stored[1] is in use.
  EXPECT_EQ(programs.prune(2, {stored[1]}), 2u);
  EXPECT_TRUE(programs.contains(stored[0]));
  EXPECT_TRUE(programs.contains(stored[1]));
  EXPECT_FALSE(programs.contains(stored[2]));
  EXPECT_FALSE(programs.contains(stored[3]));
  EXPECT_TRUE(programs.contains(stored[4]));
  EXPECT_TRUE(std::filesystem::exists(dir.file("programs") + "/notes.txt"));
}

}  // namespace
}  // namespace sage::cluster
