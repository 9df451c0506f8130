// An empty file of this user's under the system's temporary directory ($TMPDIR,
// else /tmp), created with a unique name and removed with this object: for what a
// command hands to another step (a bundle to upload, a submitted job's id).
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "sage/error.hpp"

namespace sage::cluster {

class TemporaryFile {
 public:
  // `prefix` starts the file's name (e.g. "sage-bundle").
  explicit TemporaryFile(const std::string& prefix) {
    path_ = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    const int fd = mkostemp(path_.data(), O_CLOEXEC);
    if (fd < 0) throw Error("cannot create a file in " + path_ + ": " + std::strerror(errno));
    ::close(fd);
  }
  ~TemporaryFile() { ::unlink(path_.c_str()); }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace sage::cluster
