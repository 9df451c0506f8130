#include "cluster/program_store.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "cluster/cluster_config.hpp"
#include "sage/error.hpp"

namespace sage::cluster {

struct ProgramStore::Upload::Hasher {
  Hasher() : context(EVP_MD_CTX_new()) { EVP_DigestInit_ex(context, EVP_sha256(), nullptr); }
  ~Hasher() { EVP_MD_CTX_free(context); }
  void update(std::string_view data) { EVP_DigestUpdate(context, data.data(), data.size()); }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(context, digest, &length);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < length; ++i) {
      out.push_back(kHex[digest[i] >> 4]);
      out.push_back(kHex[digest[i] & 15]);
    }
    return out;
  }
  EVP_MD_CTX* context;
};

std::string sha256_of_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot read " + path + ": " + std::strerror(errno));
  ProgramStore::Upload::Hasher hasher;
  char buffer[1 << 16];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0) {
    hasher.update(std::string_view(buffer, static_cast<std::size_t>(n)));
  }
  ::close(fd);
  if (n < 0) throw Error("cannot read " + path);
  return hasher.hex();
}

ProgramStore::ProgramStore(std::string directory) : directory_(std::move(directory)) {
  make_private_dir(directory_);
}

bool ProgramStore::is_valid_hash(std::string_view sha256) {
  if (sha256.size() != 64) return false;
  for (char c : sha256) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string ProgramStore::path_of(const std::string& sha256) const {
  if (!is_valid_hash(sha256)) {
    throw Error("'" + sha256.substr(0, 80) + "' is not a program hash (64 hex digits)");
  }
  return directory_ + "/" + sha256;
}

bool ProgramStore::contains(const std::string& sha256) const {
  return is_valid_hash(sha256) && ::access(path_of(sha256).c_str(), X_OK) == 0;
}

void ProgramStore::touch(const std::string& sha256) const {
  if (contains(sha256)) ::utimensat(AT_FDCWD, path_of(sha256).c_str(), nullptr, 0);
}

std::size_t ProgramStore::prune(std::size_t keep, const std::set<std::string>& in_use) const {
  namespace fs = std::filesystem;
  std::vector<std::pair<fs::file_time_type, fs::path>> stored;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(directory_, error)) {
    const std::string name = entry.path().filename().string();
    if (!is_valid_hash(name)) continue;  // uploads in progress, anything else
    stored.emplace_back(entry.last_write_time(error), entry.path());
  }
  std::sort(stored.begin(), stored.end(), [](const auto& a, const auto& b) { return a > b; });
  std::size_t removed = 0;
  for (std::size_t i = keep; i < stored.size(); ++i) {
    if (in_use.count(stored[i].second.filename().string()) > 0) continue;
    if (fs::remove(stored[i].second, error)) ++removed;
  }
  return removed;
}

std::unique_ptr<ProgramStore::Upload> ProgramStore::begin_upload(const std::string& sha256) const {
  return std::unique_ptr<Upload>(new Upload(*this, sha256));
}

ProgramStore::Upload::Upload(const ProgramStore& store, std::string sha256)
    : store_(store), sha256_(std::move(sha256)), hasher_(std::make_unique<Hasher>()) {
  const std::string final_path = store_.path_of(sha256_);  // validates the hash
  temp_path_ = final_path + ".upload-" + std::to_string(std::random_device()());
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd_ < 0) throw Error("cannot store program in " + temp_path_ + ": " + std::strerror(errno));
}

ProgramStore::Upload::~Upload() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(temp_path_.c_str());
  }
}

void ProgramStore::Upload::append(std::string_view data) {
  hasher_->update(data);
  while (!data.empty()) {
    const ssize_t n = ::write(fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot store program: " + std::string(std::strerror(errno)));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

void ProgramStore::Upload::commit() {
  const std::string actual = hasher_->hex();
  if (actual != sha256_) {
    throw Error("uploaded program hashes to " + actual + ", not the announced " + sha256_);
  }
  fchmod(fd_, 0700);
  ::close(fd_);
  fd_ = -1;
  if (::rename(temp_path_.c_str(), store_.path_of(sha256_).c_str()) != 0) {
    ::unlink(temp_path_.c_str());
    throw Error("cannot store program: " + std::string(std::strerror(errno)));
  }
}

}  // namespace sage::cluster
