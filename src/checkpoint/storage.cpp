#include "checkpoint/storage.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "sage/error.hpp"

namespace sage::checkpoint {
namespace fs = std::filesystem;
namespace {

constexpr std::string_view kMetadataName = "_metadata";
constexpr std::string_view kMetadataMagic = "sage-checkpoint-1\n";

std::string os_error(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) throw Error(os_error("cannot open", path));
  const int synced = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  errno = saved;
  if (synced != 0) throw Error(os_error("cannot fsync", path));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(os_error("cannot read", path));
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string task_file(const TaskKey& task) {
  return "task-" + std::to_string(task.chain) + "-" + std::to_string(task.instance);
}

// The id of a checkpoint directory's name, or 0 for other names.
std::uint64_t checkpoint_id_of(const std::string& name) {
  if (!name.starts_with("chk-") || name.size() == 4) return 0;
  std::uint64_t id = 0;
  for (char c : name.substr(4)) {
    if (c < '0' || c > '9' || id > (UINT64_MAX - 9) / 10) return 0;
    id = id * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return id;
}

}  // namespace

std::string default_state_dir() {
  if (const char* dir = std::getenv("SAGE_STATE_DIR"); dir != nullptr && *dir != '\0') return dir;
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::string(home) + "/.sage";
  }
  return "/tmp/sage-" + std::to_string(getuid());
}

std::string checkpoint_base(const std::string& configured, const std::string& state_dir) {
  return configured.empty() ? state_dir + "/checkpoints" : configured;
}

DurableFile::DurableFile(std::string path) : path_(std::move(path)) {
  const fs::path target(path_);
  const fs::path directory = target.parent_path();
  std::error_code ec;
  fs::create_directories(directory, ec);
  if (ec) throw Error("cannot create " + directory.string() + ": " + ec.message());
  // Unique, so that two writers of one path never share a temporary file.
  temporary_ = (directory / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  fd_ = ::mkostemp(temporary_.data(), O_CLOEXEC);
  if (fd_ < 0) throw Error(os_error("cannot create", temporary_));
}

DurableFile::~DurableFile() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(temporary_.c_str());
}

void DurableFile::append(std::string_view bytes) {
  std::size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(os_error("cannot write", temporary_));
    written += static_cast<std::size_t>(n);
  }
}

void DurableFile::commit() {
  if (::fsync(fd_) != 0) throw Error(os_error("cannot fsync", temporary_));
  if (::rename(temporary_.c_str(), path_.c_str()) != 0) {
    throw Error(os_error("cannot rename into", path_));
  }
  ::close(fd_);
  fd_ = -1;
  fsync_path(fs::path(path_).parent_path().string(), O_RDONLY | O_DIRECTORY);
}

void write_file_durably(const std::string& path, std::string_view bytes) {
  DurableFile file(path);
  file.append(bytes);
  file.commit();
}

std::string job_checkpoint_root(const std::string& base, const std::string& job_id) {
  const bool safe = job_id.starts_with("job-") && job_id.size() <= 64 &&
                    std::all_of(job_id.begin() + 4, job_id.end(), [](char c) {
                      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                    });
  if (!safe) throw Error("'" + job_id + "' is not a job id sage made; refusing it as a path");
  return (fs::path(base) / job_id).string();
}

DirectoryStorage::DirectoryStorage(std::string root) : root_(std::move(root)) {}

std::string DirectoryStorage::checkpoint_dir(std::uint64_t id) const {
  return (fs::path(root_) / ("chk-" + std::to_string(id))).string();
}

std::string DirectoryStorage::task_snapshot_path(std::uint64_t checkpoint,
                                                 const TaskKey& task) const {
  return (fs::path(checkpoint_dir(checkpoint)) / task_file(task)).string();
}

void DirectoryStorage::write_task_snapshot(std::uint64_t checkpoint, const TaskKey& task,
                                           std::string_view bytes) {
  write_file_durably(task_snapshot_path(checkpoint, task), bytes);
}

std::string DirectoryStorage::read_task_snapshot(std::uint64_t checkpoint,
                                                 const TaskKey& task) const {
  return read_file(task_snapshot_path(checkpoint, task));
}

void DirectoryStorage::write_metadata(const CheckpointMetadata& metadata) {
  Writer writer{std::string(kMetadataMagic)};
  writer.write(metadata);
  write_file_durably((fs::path(checkpoint_dir(metadata.id)) / kMetadataName).string(),
                     writer.buffer());
}

std::optional<CheckpointMetadata> DirectoryStorage::latest_complete() const {
  std::vector<std::uint64_t> ids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    if (const auto id = checkpoint_id_of(entry.path().filename().string())) ids.push_back(id);
  }
  std::sort(ids.rbegin(), ids.rend());
  for (const auto id : ids) {
    const std::string path = (fs::path(checkpoint_dir(id)) / kMetadataName).string();
    if (!fs::exists(path)) continue;
    try {
      const std::string bytes = read_file(path);
      if (!std::string_view(bytes).starts_with(kMetadataMagic)) {
        throw SerializationError("not sage checkpoint metadata");
      }
      Reader reader(std::string_view(bytes).substr(kMetadataMagic.size()));
      auto metadata = reader.read<CheckpointMetadata>();
      if (metadata.id == id) return metadata;
      spdlog::warn("checkpoint metadata {} names checkpoint {}; skipped", path, metadata.id);
    } catch (const Error& e) {
      spdlog::warn("checkpoint metadata {} is unreadable ({}); skipped", path, e.what());
    }
  }
  return std::nullopt;
}

void DirectoryStorage::discard(std::uint64_t id) {
  std::error_code ec;
  fs::remove_all(checkpoint_dir(id), ec);
  if (ec) spdlog::warn("cannot remove checkpoint {}: {}", checkpoint_dir(id), ec.message());
}

void DirectoryStorage::prune(int keep, std::uint64_t in_progress_from) {
  std::vector<std::uint64_t> complete, incomplete;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    const auto id = checkpoint_id_of(entry.path().filename().string());
    if (id == 0 || id >= in_progress_from) continue;
    (fs::exists(entry.path() / kMetadataName) ? complete : incomplete).push_back(id);
  }
  std::sort(complete.rbegin(), complete.rend());
  for (std::size_t i = static_cast<std::size_t>(keep); i < complete.size(); ++i) {
    discard(complete[i]);
  }
  for (const auto id : incomplete) discard(id);
}

}  // namespace sage::checkpoint
