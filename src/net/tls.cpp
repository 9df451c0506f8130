#include "net/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "sage/error.hpp"

namespace sage::net {
namespace {

constexpr const char* kCertVariable = "SAGE_TLS_CERT";
constexpr const char* kKeyVariable = "SAGE_TLS_KEY";
constexpr const char* kCaVariable = "SAGE_TLS_CA";

// The variables of `files` that are set, with their values.
std::vector<std::pair<const char*, std::string>> set_variables(const TlsFiles& files) {
  std::vector<std::pair<const char*, std::string>> set;
  for (const auto& [name, value] :
       {std::pair{kCertVariable, files.cert}, std::pair{kKeyVariable, files.key},
        std::pair{kCaVariable, files.ca}}) {
    if (!value.empty()) set.emplace_back(name, value);
  }
  return set;
}

std::string variable(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

std::string openssl_error() {
  const unsigned long code = ERR_get_error();
  if (code == 0) return "unknown OpenSSL error";
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

}  // namespace

TlsFiles TlsFiles::from_environment() {
  return {variable(kCertVariable), variable(kKeyVariable), variable(kCaVariable)};
}

void TlsFiles::export_to_environment() const {
  if ((!cert.empty() || !key.empty()) && ca.empty()) {
    throw Error(
        "TLS needs --tls-ca (the CA that signed the nodes' certificates) with "
        "--tls-cert and --tls-key");
  }
  for (const auto& [name, value] : set_variables(*this)) setenv(name, value.c_str(), 1);
}

std::vector<std::string> TlsFiles::environment() const {
  std::vector<std::string> entries;
  if (!enabled()) return entries;
  for (const auto& [name, value] : set_variables(*this)) entries.push_back(name + ("=" + value));
  return entries;
}

namespace {

void require_certificate(const TlsFiles& files) {
  if (files.enabled() && (files.cert.empty() || files.key.empty())) {
    throw Error(
        "TLS is on (a CA is set) but this node has no certificate: pass --tls-cert and "
        "--tls-key (or set SAGE_TLS_CERT and SAGE_TLS_KEY)");
  }
}

}  // namespace

void TlsFiles::require_server() const {
  require_certificate(*this);
  if (!enabled()) return;
  // Built once here, so that a key that does not match its certificate, or a
  // CA file that holds no certificate, is reported with OpenSSL's reason
  // before gRPC, which would only say that it cannot listen.
  TlsContext::server(*this);
  TlsContext::client(*this);
}

std::string read_pem(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error("cannot read TLS file " + path + "; check the path and its permissions");
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

namespace {

// Both ends verify each other against the CA and present this node's
// certificate (a client without one is refused by servers).
SSL_CTX* make_context(const SSL_METHOD* method, const TlsFiles& files, int verify) {
  SSL_CTX* context = SSL_CTX_new(method);
  SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
  SSL_CTX_set_options(context, SSL_OP_IGNORE_UNEXPECTED_EOF);  // a closed socket ends a stream
  SSL_CTX_set_verify(context, verify, nullptr);
  if (SSL_CTX_load_verify_locations(context, files.ca.c_str(), nullptr) != 1) {
    const std::string error = openssl_error();
    SSL_CTX_free(context);
    throw Error("cannot use TLS CA " + files.ca + ": " + error);
  }
  if (files.cert.empty()) return context;
  if (SSL_CTX_use_certificate_chain_file(context, files.cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(context, files.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(context) != 1) {
    const std::string error = openssl_error();
    SSL_CTX_free(context);
    throw Error("cannot use TLS certificate " + files.cert + " with key " + files.key + ": " +
                error);
  }
  return context;
}

}  // namespace

std::shared_ptr<TlsContext> TlsContext::server(const TlsFiles& files) {
  require_certificate(files);
  SSL_CTX* context =
      make_context(TLS_server_method(), files, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
  SSL_CTX_set_num_tickets(context, 0);  // senders never read: nothing to hand them
  return std::shared_ptr<TlsContext>(new TlsContext(context, true));
}

std::shared_ptr<TlsContext> TlsContext::client(const TlsFiles& files) {
  return std::shared_ptr<TlsContext>(
      new TlsContext(make_context(TLS_client_method(), files, SSL_VERIFY_PEER), false));
}

TlsContext::~TlsContext() { SSL_CTX_free(context_); }

}  // namespace sage::net
