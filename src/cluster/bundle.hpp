// A job's directory as one file, for jobs whose program is interpreted (a
// Python script and the modules beside it): written by the submitter,
// uploaded and stored by content hash as any program is (program_store.hpp),
// and unpacked by workers into a directory named by that hash.
//
// The file is canonical, so its SHA-256 is the content hash over (relative
// path, mode, bytes) of every file: "SAGEBNDL", version and entry count
// (u32 each), then per entry in ascending byte order of path: path length
// (u32), path, mode (u32: a regular file, 0644 or 0755), size (u64), bytes;
// integers little-endian. Unpacking trusts nothing in it: no path from the
// network chooses where a file goes outside the target directory.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "sage/remote_environment.hpp"

namespace sage::cluster {

// By default those of a RemoteEnvironment's TaskProgram.
struct BundleLimits {
  std::uint64_t max_bytes = TaskProgram{}.max_bundle_bytes;  // the files' bytes together
  std::uint32_t max_files = TaskProgram{}.max_bundle_files;
  // For the error of a directory over the limits: how to raise them.
  std::string how_to_raise;
};

// Writes the regular files under `directory` to `bundle_path` (created or
// truncated), skipping __pycache__, .git and hidden directories and anything
// that is not a regular file (symbolic links included). Throws sage::Error
// naming the directory, the limit and the fix when it holds more than
// `limits` allow, or when a file cannot be read.
void write_bundle(const std::string& directory, const std::string& bundle_path,
                  const BundleLimits& limits);

// Creates `target` (which must not exist, its parent must) and unpacks the
// bundle into it. Refuses, with sage::Error naming the entry, an absolute
// path, an empty, "." or ".." component, a NUL, entries out of order or
// repeated, anything but a regular file of mode 0644 or 0755, a truncated
// file and more than `limits` allow. On error `target` may be left partly
// written: unpack into a fresh directory and rename it when done.
void unpack_bundle(const std::string& bundle_path, const std::string& target,
                   const BundleLimits& limits);

// A worker's unpacked bundles, each in a directory named by its hash under
// `directory` (created 0700 if missing). Unpacks into a temporary directory
// and renames it, so a directory named by a hash is always complete; nodes
// sharing a state directory share them.
class UnpackedBundles {
 public:
  explicit UnpackedBundles(std::string directory);

  // The directory of bundle `sha256`, stored in `bundle_file`, unpacked now
  // unless it was before. Throws sage::Error.
  std::string ensure(const std::string& sha256, const std::string& bundle_file,
                     const BundleLimits& limits) const;
  // Removes the unpacked bundles `keep` returns false for.
  void prune(const std::function<bool(const std::string& sha256)>& keep) const;

 private:
  std::string directory_;
};

}  // namespace sage::cluster
