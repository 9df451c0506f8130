#include "cluster/bundle.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "cluster/cluster_config.hpp"
#include "cluster/program_store.hpp"
#include "cluster/unique_fd.hpp"
#include "sage/error.hpp"

namespace sage::cluster {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kMagic = "SAGEBNDL";
constexpr std::uint32_t kVersion = 1;
constexpr std::uint32_t kRegular = S_IFREG | 0644, kExecutable = S_IFREG | 0755;
constexpr std::uint32_t kMaxPathBytes = 4096;
constexpr std::size_t kMaxNameBytes = 255;

std::string mib(std::uint64_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
}

// An entry's path as an error shows it: printable, and short.
std::string shown(std::string_view path) {
  std::string out;
  for (char c : path.substr(0, 200)) {
    out += (c >= 0x20 && c < 0x7f) ? std::string(1, c) : fmt::format("\\x{:02x}", c & 0xff);
  }
  return path.size() > 200 ? out + "..." : out;
}

bool skipped_directory(const std::string& name) {
  return name == "__pycache__" || name.starts_with(".");
}

struct Entry {
  std::string path;  // relative, '/'-separated
  fs::path file;
  std::uint32_t mode;
};

void append_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void append_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// The regular files under `root`, with their sizes counted against `limits`.
std::vector<Entry> collect(const fs::path& root, const BundleLimits& limits) {
  std::vector<Entry> entries;
  std::uint64_t bytes = 0;
  auto over = [&](const std::string& what) {
    return Error(fmt::format(
        "the script's directory {} holds more than a job bundle takes ({}; counted: regular "
        "files, without __pycache__, .git and hidden directories): put the script in a "
        "directory of its own with only the files it needs{}{}",
        root.string(), what, limits.how_to_raise.empty() ? "" : ", or ", limits.how_to_raise));
  };
  std::vector<std::pair<fs::path, std::string>> pending = {{root, ""}};
  while (!pending.empty()) {
    auto [dir, prefix] = std::move(pending.back());
    pending.pop_back();
    std::error_code error;
    for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
      const std::string name = it->path().filename().string();
      const fs::file_status status = it->symlink_status(error);
      if (error) break;
      const std::string path = prefix + name;
      if (fs::is_directory(status)) {
        if (!skipped_directory(name)) pending.emplace_back(it->path(), path + "/");
        continue;
      }
      if (!fs::is_regular_file(status)) continue;  // links, sockets, devices...
      const bool executable = (status.permissions() & fs::perms::owner_exec) != fs::perms::none;
      bytes += fs::file_size(it->path(), error);
      if (error) break;
      entries.push_back({path, it->path(), executable ? kExecutable : kRegular});
      if (entries.size() > limits.max_files) {
        throw over(fmt::format("more than {} files", limits.max_files));
      }
      if (bytes > limits.max_bytes) throw over(fmt::format("more than {}", mib(limits.max_bytes)));
    }
    if (error) throw Error("cannot read the directory " + dir.string() + ": " + error.message());
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.path < b.path; });
  return entries;
}

// Reads exactly `n` bytes; false at a short read.
bool read_exact(std::istream& in, char* data, std::size_t n) {
  in.read(data, static_cast<std::streamsize>(n));
  return static_cast<std::size_t>(in.gcount()) == n;
}

std::uint64_t read_uint(std::istream& in, int bytes, const std::string& what) {
  unsigned char buffer[8];
  if (!read_exact(in, reinterpret_cast<char*>(buffer), static_cast<std::size_t>(bytes))) {
    throw Error("the bundle is cut short in " + what);
  }
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | buffer[i];
  return v;
}

// The problem with an entry's path, if any.
std::string path_problem(std::string_view path) {
  if (path.empty()) return "an empty path";
  if (path.find('\0') != std::string_view::npos) return "a NUL in its path";
  if (path.front() == '/') return "an absolute path";
  std::size_t start = 0;
  while (true) {
    const std::size_t end = std::min(path.find('/', start), path.size());
    const std::string_view part = path.substr(start, end - start);
    if (part.empty()) return "an empty path component";
    if (part == "." || part == "..") return "a '" + std::string(part) + "' path component";
    if (part.size() > kMaxNameBytes) return "a path component longer than 255 bytes";
    if (end == path.size()) return "";
    start = end + 1;
  }
}

// Opens (creating it if missing) directory `name` under `parent`, never
// through a symbolic link.
UniqueFd open_directory(int parent, const std::string& name, const std::string& entry) {
  if (::mkdirat(parent, name.c_str(), 0700) != 0 && errno != EEXIST) {
    throw Error("cannot create a directory for bundle entry '" + shown(entry) +
                "': " + std::strerror(errno));
  }
  UniqueFd fd(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    throw Error("bundle entry '" + shown(entry) + "' needs '" + shown(name) +
                "' as a directory: " + std::strerror(errno));
  }
  return fd;
}

void write_all(int fd, std::string_view data, const std::string& entry) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot write bundle entry '" + shown(entry) + "': " + std::strerror(errno));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

void write_bundle(const std::string& directory, const std::string& bundle_path,
                  const BundleLimits& limits) {
  const std::vector<Entry> entries = collect(fs::path(directory), limits);
  std::ofstream out(bundle_path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error("cannot write " + bundle_path + ": " + std::strerror(errno));
  std::string header(kMagic);
  append_u32(header, kVersion);
  append_u32(header, static_cast<std::uint32_t>(entries.size()));
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  std::uint64_t bytes = 0;
  for (const auto& entry : entries) {
    std::ifstream in(entry.file, std::ios::binary);
    if (!in.is_open()) {
      throw Error("cannot read " + entry.file.string() + ": " + std::strerror(errno) +
                  "; make it readable or move it out of the script's directory");
    }
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw Error("cannot read " + entry.file.string());
    bytes += data.size();  // it may have grown since it was counted
    if (bytes > limits.max_bytes) {
      throw Error(
          fmt::format("the script's directory {} grew over the job bundle's {} while it "
                      "was packed; run the job again once it no longer changes",
                      directory, mib(limits.max_bytes)));
    }
    std::string head;
    append_u32(head, static_cast<std::uint32_t>(entry.path.size()));
    head += entry.path;
    append_u32(head, entry.mode);
    append_u64(head, data.size());
    out.write(head.data(), static_cast<std::streamsize>(head.size()));
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
  }
  out.flush();
  if (!out) throw Error("cannot write " + bundle_path + ": " + std::strerror(errno));
}

void unpack_bundle(const std::string& bundle_path, const std::string& target,
                   const BundleLimits& limits) {
  std::ifstream in(bundle_path, std::ios::binary);
  if (!in) throw Error("cannot read the bundle " + bundle_path + ": " + std::strerror(errno));
  std::string magic(kMagic.size(), '\0');
  if (!read_exact(in, magic.data(), magic.size()) || magic != kMagic) {
    throw Error("the file is not a job bundle (no SAGEBNDL header)");
  }
  if (const auto version = read_uint(in, 4, "its header"); version != kVersion) {
    throw Error(
        fmt::format("the bundle has version {}; this node reads version {}", version, kVersion));
  }
  const auto count = read_uint(in, 4, "its header");
  if (count > limits.max_files) {
    throw Error(
        fmt::format("the bundle has {} files; a node unpacks at most {}", count, limits.max_files));
  }
  if (::mkdir(target.c_str(), 0700) != 0) {
    throw Error("cannot create " + target + ": " + std::strerror(errno));
  }
  UniqueFd root(::open(target.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root.valid()) throw Error("cannot open " + target + ": " + std::strerror(errno));
  std::uint64_t bytes = 0;
  std::string previous;
  std::vector<char> buffer(1 << 16);
  for (std::uint64_t i = 0; i < count; ++i) {
    const auto length = read_uint(in, 4, "an entry's path length");
    if (length == 0 || length > kMaxPathBytes) {
      throw Error(fmt::format("bundle entry {} has a path of {} bytes; paths have 1 to {}", i,
                              length, kMaxPathBytes));
    }
    std::string path(length, '\0');
    if (!read_exact(in, path.data(), path.size())) throw Error("the bundle is cut short in a path");
    if (const std::string problem = path_problem(path); !problem.empty()) {
      throw Error("bundle entry '" + shown(path) + "' has " + problem +
                  "; a bundle holds relative paths inside its directory only");
    }
    if (i > 0 && path <= previous) {
      throw Error("bundle entry '" + shown(path) +
                  "' is out of order or repeated; a bundle lists each path once, in order");
    }
    const auto mode = read_uint(in, 4, "an entry's mode");
    if (mode != kRegular && mode != kExecutable) {
      throw Error(
          fmt::format("bundle entry '{}' has mode {:o}: a bundle holds regular files "
                      "of mode 644 or 755 only (no links, devices or directories)",
                      shown(path), mode));
    }
    const auto size = read_uint(in, 8, "an entry's size");
    bytes += size;
    if (size > limits.max_bytes || bytes > limits.max_bytes) {
      throw Error(fmt::format("the bundle's files hold more than {}, the most a node unpacks",
                              mib(limits.max_bytes)));
    }
    // Its directories, each opened without following links, then the file.
    UniqueFd dir(::dup(root.get()));
    std::size_t start = 0;
    for (std::size_t slash; (slash = path.find('/', start)) != std::string::npos;
         start = slash + 1) {
      dir = open_directory(dir.get(), path.substr(start, slash - start), path);
    }
    const std::string name = path.substr(start);
    UniqueFd file(::openat(dir.get(), name.c_str(),
                           O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0777));
    if (!file.valid()) {
      throw Error("cannot create bundle entry '" + shown(path) + "': " + std::strerror(errno));
    }
    for (std::uint64_t left = size; left > 0;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, buffer.size()));
      if (!read_exact(in, buffer.data(), n)) {
        throw Error("the bundle is cut short in entry '" + shown(path) + "'");
      }
      write_all(file.get(), std::string_view(buffer.data(), n), path);
      left -= n;
    }
    previous = std::move(path);
  }
  if (in.peek() != std::char_traits<char>::eof()) {
    throw Error("the bundle has bytes after its last entry");
  }
}

UnpackedBundles::UnpackedBundles(std::string directory) : directory_(std::move(directory)) {
  make_private_dir(directory_);
}

std::string UnpackedBundles::ensure(const std::string& sha256, const std::string& bundle_file,
                                    const BundleLimits& limits) const {
  if (!ProgramStore::is_valid_hash(sha256)) {
    throw Error("'" + shown(sha256) + "' is not a bundle hash (64 hex digits)");
  }
  const std::string final_path = directory_ + "/" + sha256;
  std::error_code error;
  if (fs::is_directory(fs::symlink_status(final_path, error))) return final_path;
  const std::string temp = final_path + ".unpack-" + std::to_string(std::random_device()());
  try {
    unpack_bundle(bundle_file, temp, limits);
  } catch (...) {
    fs::remove_all(temp, error);
    throw;
  }
  if (::rename(temp.c_str(), final_path.c_str()) != 0) {
    const int why = errno;
    fs::remove_all(temp, error);
    // Another node of this state directory unpacked it first.
    if (why != EEXIST && why != ENOTEMPTY) {
      throw Error("cannot unpack the job bundle into " + final_path + ": " + std::strerror(why));
    }
  }
  return final_path;
}

void UnpackedBundles::prune(const std::function<bool(const std::string&)>& keep) const {
  std::error_code error;
  std::vector<fs::path> gone;
  for (const auto& entry : fs::directory_iterator(directory_, error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() == 64 && name.find('.') == std::string::npos && !keep(name)) {
      gone.push_back(entry.path());
    }
  }
  for (const auto& path : gone) fs::remove_all(path, error);
}

}  // namespace sage::cluster
