// Programs uploaded to a node, stored under the SHA-256 of their bytes and
// nowhere else: a name from the network never becomes a path unless it is
// exactly 64 hex digits. A bounded cache: the head and workers prune the
// least recently used. Thread-safe.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <string_view>

namespace sage::cluster {

// SHA-256 of a file's bytes, as 64 lowercase hex digits. Throws sage::Error.
std::string sha256_of_file(const std::string& path);

class ProgramStore {
 public:
  explicit ProgramStore(std::string directory);  // created (0700) if missing

  static bool is_valid_hash(std::string_view sha256);
  bool contains(const std::string& sha256) const;
  // The executable stored for `sha256`. Throws sage::Error for an invalid hash.
  std::string path_of(const std::string& sha256) const;
  // Marks a stored program as used now: prune() keeps the most recently used.
  void touch(const std::string& sha256) const;
  // Removes the stored programs beyond the `keep` most recently used, except
  // those in `in_use`. Returns how many it removed.
  std::size_t prune(std::size_t keep, const std::set<std::string>& in_use) const;

  // Receives one program in chunks; commit() checks the hash and makes it
  // visible (executable by the owner). Abandoned uploads leave no file.
  class Upload {
   public:
    ~Upload();
    void append(std::string_view data);
    // Throws sage::Error when the bytes do not hash to the announced value.
    void commit();

    struct Hasher;  // SHA-256 over the bytes seen so far

   private:
    friend class ProgramStore;
    Upload(const ProgramStore& store, std::string sha256);
    const ProgramStore& store_;
    std::string sha256_;
    std::string temp_path_;
    int fd_ = -1;
    std::unique_ptr<Hasher> hasher_;
  };
  std::unique_ptr<Upload> begin_upload(const std::string& sha256) const;

 private:
  std::string directory_;
};

}  // namespace sage::cluster
