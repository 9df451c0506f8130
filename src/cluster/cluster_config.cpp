#include "cluster/cluster_config.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "net/rpc.hpp"
#include "sage/error.hpp"

namespace sage::cluster {

std::string token_path(const std::string& state_dir) { return state_dir + "/token"; }

std::string head_info_path(const std::string& state_dir) { return state_dir + "/head.json"; }

std::string head_info_field(const std::string& state_dir, const std::string& name) {
  std::ifstream file(head_info_path(state_dir));
  if (!file) return "";  // no head was started here
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  google::protobuf::Struct info;
  if (!google::protobuf::util::JsonStringToMessage(text, &info).ok()) {
    throw Error(head_info_path(state_dir) +
                " is not the JSON a head writes (damaged, or edited by hand); start the head "
                "again (sage cluster stop, then sage cluster start --head) or pass the address "
                "(--address, SAGE_ADDRESS)");
  }
  const auto field = info.fields().find(name);
  return field == info.fields().end() ? "" : field->second.string_value();
}

std::string local_jobmanager_address(const std::string& state_dir) {
  return head_info_field(state_dir, "jobmanager");
}

std::string new_token() {
  std::random_device random;
  std::string token;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) token.push_back(kHex[random() & 15]);
  return token;
}

void make_private_dir(const std::string& path) {
  std::error_code error;
  std::filesystem::create_directories(path, error);
  if (error) throw Error("cannot create directory " + path + ": " + error.message());
  chmod(path.c_str(), 0700);
}

void write_token(const std::string& path, const std::string& token) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw Error("cannot write token file " + path + ": " + std::strerror(errno));
  fchmod(fd, 0600);
  const std::string line = token + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!ok) throw Error("cannot write token file " + path);
}

std::string find_token(const std::string& state_dir) {
  if (const char* token = std::getenv("SAGE_TOKEN"); token != nullptr && *token != '\0') {
    net::check_token_text(token, "SAGE_TOKEN");
    return token;
  }
  std::ifstream file(token_path(state_dir));
  std::string token;
  if (file >> token && !token.empty()) {
    net::check_token_text(token, "the token file " + token_path(state_dir));
    return token;
  }
  throw Error("no cluster token: SAGE_TOKEN is not set and " + token_path(state_dir) +
              " does not exist; copy the token file of the head (or its value into SAGE_TOKEN)");
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace sage::cluster
